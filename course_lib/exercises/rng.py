"""PyTorch's global random state during a graded call: fixed per call, the same everywhere.

A sampling exercise hands the learner a ``torch.Generator`` (a :class:`~.core.GeneratorSeed` in the case).
A learner who forgets to pass ``generator=generator`` draws from PyTorch's *global* random state instead.
If that state were whatever the notebook (or the grader's worker) happened to leave behind, such an answer
could only fail; it could never be *named*, and the inline check and the grader would see different draws.

So every call of a learner's function, of the reference and of each known mistake runs with the global
CPU generator seeded by :func:`global_seed` of the call, inside a fork of the global state::

    with seeded_global_rng(global_seed(args, kwargs, position)):
        output = fn(*args, **kwargs)

* the seed depends on the call only: the first ``GeneratorSeed`` in its arguments and the call's
  ``position`` in the exercise's plan (:meth:`Exercise.plan` lists the cases first, so a case's position is
  its index). The known mistake "ignores the generator" (the reference with ``generator=None``) therefore
  draws exactly what a learner who forgot the generator draws, inline and in the grader;
* the seed is a hash, never the generator's own seed: forgetting the generator must not give the
  generator's draws by coincidence;
* a property's extra call (``"same seed, same tokens"`` calls again with the same arguments) has another
  position, hence other global draws: an answer that reads the global state still fails it;
* the caller's global state is left as it was (the fork is undone after the call): running a check in a
  notebook does not change what later cells draw.

Used by :meth:`Exercise.invoke` (inline check, reference, mistakes) and by the grader's worker, which
captures these functions before any learner code runs.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any, Iterator, Optional

import torch

from .core import GeneratorSeed, ModuleInputs

#: What stands for the generator's seed in calls that have no generator.
NO_GENERATOR = "no generator"

# Captured at import (before any learner code runs in the grader's worker).
_fork_rng = torch.random.fork_rng
_default_generator = torch.default_generator


def first_generator_seed(value: Any) -> Optional[int]:
    """The seed of the first :class:`GeneratorSeed` in ``value`` (depth first; a module's forward
    arguments count, its weights do not), or ``None``."""
    if isinstance(value, GeneratorSeed):
        return int(value.seed)
    if isinstance(value, ModuleInputs):
        return first_generator_seed(value.args)
    if isinstance(value, (tuple, list)):
        for v in value:
            s = first_generator_seed(v)
            if s is not None:
                return s
        return None
    if isinstance(value, dict):
        for v in value.values():
            s = first_generator_seed(v)
            if s is not None:
                return s
    return None


def global_seed(args: Any, kwargs: Any, position: int) -> int:
    """The seed of PyTorch's global generator during call number ``position`` of a plan (0 <= seed < 2**63).

    ``sha256("<generator seed or 'no generator'>:<position>")``, so it is never the generator's own
    seed (but for a 2**-63 coincidence, which is ruled out explicitly).
    """
    seed = first_generator_seed((args, kwargs))
    base = NO_GENERATOR if seed is None else str(seed)
    digest = hashlib.sha256(f"course_lib global random state:{base}:{int(position)}".encode()).digest()
    out = int.from_bytes(digest[:8], "big") >> 1
    if seed is not None and out == seed:
        out ^= 1
    return out


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Run the body with PyTorch's global CPU generator seeded with ``seed``; restore its state afterwards."""
    with _fork_rng(devices=[]):
        _default_generator.manual_seed(int(seed))
        yield
