"""The grader's by-value path in one process, for the tests of the tests.

The autograder never hands a learner's function a Python object from the grader: it encodes each
call's inputs with :mod:`course_lib.grading.wire` (``Plan.build``), the worker decodes them, calls the
function, and sends the output *and the inputs as the call left them* back by value; the grader decodes
both (``NotebookGrader._outcome``) and judges them against the reference in its own process
(``Plan.judging_exercise().judge``). :func:`grade_by_value` runs exactly that code, with the worker's
``evaluate`` reading and writing in-memory streams instead of a sandboxed process: what differs from a
real run is only the process boundary and the confinement, which ``tests/test_grading_*`` cover.
"""

from __future__ import annotations

import copy
import io
import sys
import types

from course_lib.exercises import core
from course_lib.grading import session, wire, worker
from course_lib.grading.sandbox import Limits

_LIMITS = Limits()
_TAMPER = [sys.setprofile, sys.settrace]


_WORKERS: dict = {}
_PLANS: dict = {}


def _worker_for(ex: core.Exercise, allow_reference: bool) -> worker.Worker:
    """A worker set up for ``ex`` as the grader sets it up (``setup`` message), minus the IPython shell
    (one per exercise and kind of watch, reused like the grader reuses one worker for a notebook)."""
    key = (id(ex), allow_reference)
    hit = _WORKERS.get(key)
    if hit is not None and hit[0] is ex:
        return hit[1]
    saved = {k: v for k, v in sys.modules.items() if k == "course_lib.grading" or k.startswith("course_lib.grading.")}
    w = worker.Worker(io.BytesIO(), io.BytesIO(), {})
    w.wire = wire
    w._make_shell = lambda: None  # only cells need the shell; a function is handed in directly
    try:
        w.setup({"exercises": [{"id": ex.id, "function": ex.function, "kind": ex.kind}]})
    finally:
        sys.modules.update(saved)  # setup hides course_lib.grading from learner cells; the tests need it back
    if allow_reference or ex.id not in _registered_ids():
        # the tests of the tests evaluate the reference itself and variants built on it (like run_local's
        # allow_reference); synthetic exercises are not in the registry the worker reads
        w.watches[ex.id] = worker.Watch(ex.forbidden_allowing_reference() if allow_reference else ex.all_forbidden(),
                                        core.resolve, _TAMPER)
    _WORKERS[key] = (ex, w)
    return w


def _registered_ids() -> set:
    from course_lib.exercises import known_ids

    return known_ids()


def plan_for(ex: core.Exercise, hidden: bool, seed: int) -> session.Plan:
    """The grader's plan (encoded calls) for the public cases (seed 0) or the hidden ones of ``seed``; one
    per exercise and seed, shared by every learner, as in a grading run (reference outputs computed once)."""
    key = (id(ex), hidden, seed)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is ex:
        return hit[1]
    if hidden:
        plan = session.Plan.build(ex, seed)
    else:
        public = copy.copy(ex)
        public.cases = lambda _seed, hidden=True: ex.cases(0, hidden=False)  # Plan.build asks for hidden cases
        plan = session.Plan.build(public, seed)
        plan.exercise = ex
    _PLANS[key] = (ex, plan)
    return plan


def grade_by_value(ex: core.Exercise, fn, hidden: bool = False, seed: int = 12345,
                   allow_reference: bool = True) -> core.Report:
    """Grade ``fn`` for ``ex`` through the grader's by-value path (see the module docstring)."""
    plan = plan_for(ex, hidden, seed)
    w = _worker_for(ex, allow_reference)
    w.snapshots[ex.id] = fn
    w.out = io.BytesIO()
    w.evaluate({"exercise": ex.id, "calls": plan.payload, "max_value_bytes": _LIMITS.max_value_mb << 20},
               plan.blobs)
    stream = io.BytesIO(w.out.getvalue())
    grader = types.SimpleNamespace(limits=_LIMITS)
    outcomes = []
    while True:
        header, blobs = wire.read_message(stream, 1 << 31)
        if header["op"] == "eval_done":
            break
        assert header["op"] == "outcome" and header["i"] == len(outcomes)
        outcomes.append(session.NotebookGrader._outcome(grader, header, blobs))
    return plan.judging_exercise().judge(plan.cases, plan.calls, outcomes)


# ---------------------------------------------------------------------------------------------------
# A learner's class, as the notebook hands it out
# ---------------------------------------------------------------------------------------------------
#
# A module exercise's known mistakes and alternatives subclass the reference (convenient, and allowed by
# ``allow_reference``), so they inherit its ``__init__`` and are graded with the reference's privileges.
# A learner's class is none of that: it is the notebook's own ``class X(nn.Module)`` with the handed-out
# ``__init__`` and their ``forward``. :func:`learner_class` builds exactly that class from the solution
# notebook's exercise cell (its solution region replaced by the stub, as ``course_lib build`` does), so that
# a forward pass can be graded the way a learner's would be: inline with ``run_local`` and through
# :func:`grade_by_value` with ``allow_reference=False``.

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
_STUBS: dict = {}
_SAFE_IMPORTS = ("torch", "course_lib", "math")


def _notebook_namespace(cells: list) -> dict:
    """The names the notebook's import statements define (torch, math and course_lib only: no widgets or
    plotting), taken from every code cell before the exercise that the grader runs."""
    import ast

    from course_lib.authoring import SKIP_TAGS

    ns: dict = {"__name__": "__main__"}
    for cell in cells:
        if cell.get("cell_type") != "code" or set(cell.get("metadata", {}).get("tags", [])) & set(SKIP_TAGS):
            continue
        src = "".join(cell["source"])
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if all(m.split(".")[0] in _SAFE_IMPORTS for m in mods):
                    exec(compile(ast.Module([node], []), "<notebook imports>", "exec"), ns)
    return ns


def notebook_stub_class(ex: core.Exercise) -> type:
    """The exercise's ``nn.Module`` class exactly as the learner's notebook defines it, ``forward`` a stub."""
    import json

    from course_lib.authoring import exercise_id_of, strip_solution

    hit = _STUBS.get(ex.id)
    if hit is not None:
        return hit
    cells = json.loads((_ROOT / "solutions" / f"{ex.notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    at = next(i for i, c in enumerate(cells) if c.get("cell_type") == "code"
              and exercise_id_of("".join(c["source"])) == ex.id)
    ns = _notebook_namespace(cells[:at])
    src = strip_solution("".join(cells[at]["source"]), ex.id, f"{ex.notebook} cell {at}")
    exec(compile(src, f"<{ex.notebook}: exercise {ex.id}>", "exec"), ns)
    _STUBS[ex.id] = cls = ns[ex.function]
    return cls


def learner_class(ex: core.Exercise, forward) -> type:
    """A learner's class for module exercise ``ex``: the notebook's ``__init__`` and this ``forward``
    (a plain function ``forward(self, ...)``), with no tie to course_lib's reference."""
    stub = notebook_stub_class(ex)
    return type(ex.function, (stub,), {"forward": forward, "__module__": "__main__"})
