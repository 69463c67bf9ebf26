"""Benchmark: what seeding PyTorch's global generator per graded call costs.

Every call of a learner's function, of the reference and of each known mistake runs inside
``course_lib.exercises.rng.seeded_global_rng(global_seed(args, kwargs, position))``: a fork of the global
CPU generator (``torch.random.fork_rng(devices=[])``: save its state, run, restore it), a seed derived by
hashing the call's GeneratorSeed and position, and ``manual_seed``. This script measures

1. the bare cost per call: an empty body with and without the seeding (microseconds);
2. the same next to real calls: ``Exercise.invoke`` of the reference of a few exercises, with the seeding as
   it is and with it replaced by a no-op (the ratio is what a check or a grading run pays for it);
3. one whole inline check (``run_local`` of the reference on the public cases), both ways.

Each figure is the median of several repeats after a warm-up; with and without the seeding are measured
alternately, so that the machine's load hits both alike. Run:  python bench/rng_seeding.py
(about a minute on 2 cores).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from course_lib.exercises import core, get, load_all, rng  # noqa: E402
from course_lib.exercises.core import Call  # noqa: E402

EXERCISES = ("02.stable_softmax", "02.sample_next_token", "08.mask_tokens", "09.sample_next_token",
             "09.TextGenerator")


def _median_seconds(fn, repeats: int = 7, number: int = 1) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def _paired(fn, repeats: int) -> tuple:
    """Median seconds of ``fn`` with the seeding and with it replaced by a no-op, measured alternately (one
    of each per repeat), so that a change of the machine's load hits both alike."""
    fn()
    seeded, plain = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seeded.append(time.perf_counter() - start)
        with mock.patch.object(rng, "seeded_global_rng", _no_seeding):
            start = time.perf_counter()
            fn()
            plain.append(time.perf_counter() - start)
    return statistics.median(seeded), statistics.median(plain)


@contextlib.contextmanager
def _no_seeding(seed):
    yield


def bare() -> None:
    seed_arg = (core.GeneratorSeed(7),)

    def seeded():
        with rng.seeded_global_rng(rng.global_seed(seed_arg, {}, 3)):
            pass

    def fork_only():
        with torch.random.fork_rng(devices=[]):
            pass

    def hash_only():
        rng.global_seed(seed_arg, {}, 3)

    n = 20000
    print("bare cost per call (median of 7 x 20000 calls)")
    for name, fn in [("global_seed (hash of the call)", hash_only), ("fork_rng(devices=[]) alone", fork_only),
                     ("fork_rng + manual_seed + global_seed", seeded)]:
        print(f"  {name:<40} {1e6 * _median_seconds(fn, number=n):8.2f} us")


def per_exercise() -> None:
    load_all()
    print("\nExercise.invoke of the reference, every public case once (median of 31, alternating)")
    print(f"  {'exercise':<24}{'calls':>6}{'seeded ms':>11}{'no-op ms':>10}{'ratio':>8}{'us/call':>9}")
    for ex_id in EXERCISES:
        ex = get(ex_id)
        cases = ex.cases(0, hidden=False)
        calls = [Call(c.args, c.kwargs, i) for i, c in enumerate(cases)]

        def run():
            for call in calls:
                ex.invoke(ex.reference, call)

        with_seed, without = _paired(run, 31)
        print(f"  {ex_id:<24}{len(calls):>6}{1e3 * with_seed:>11.2f}{1e3 * without:>10.2f}"
              f"{with_seed / without:>8.3f}{1e6 * (with_seed - without) / len(calls):>9.1f}")


def whole_check() -> None:
    print("\nrun_local of the reference on the public cases (a whole inline check, median of 11, alternating)")
    for ex_id in ("02.sample_next_token", "09.TextGenerator"):
        ex = get(ex_id)

        def run():
            ex._cache.clear()
            core.run_local(ex, ex.reference, allow_reference=True)

        with_seed, without = _paired(run, 11)
        print(f"  {ex_id:<24} seeded {1e3 * with_seed:7.1f} ms, no-op {1e3 * without:7.1f} ms, "
              f"ratio {with_seed / without:.3f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    bare()
    per_exercise()
    whole_check()
