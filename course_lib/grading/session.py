"""Grading one notebook: drive a worker through the learner's cells, then the grader's calls.

The flow for one submitted notebook (:func:`grade_notebook`):

1. Exercises with no exercise cell are ``missing``; exercise cells whose function body is still the
   stub (``raise NotImplementedError``) are ``not_attempted`` without running anything. When nothing
   is left, no worker starts at all.
2. A worker (:mod:`.workers`) starts in the sandbox and runs every code cell up to the last exercise
   cell, except cells tagged slow/network/nbval-skip and ``train`` (demo training no exercise needs; a
   function that uses a name only such a cell defines is told so, with the cell's number). Learner cells that raise are recorded and the run goes on (unlike
   ``nbclient``, one broken cell does not fail the notebook). The function (or class) each exercise
   cell defines is captured right after that cell.
3. For each exercise, the grader sends its hidden calls (inputs by value); the worker answers each with
   an output by value, an error with the learner's traceback, "not implemented" or "forbidden".
4. The grader judges the outcomes with the exercise's single definition (reference outputs,
   tolerances, properties, known mistakes).

Time limits (per cell, per exercise, per notebook) count the CPU time of the learner's code, which a
busy machine does not change; a wall-clock backstop of ``Limits.wall_factor`` times each limit ends code
that sleeps or blocks. Results record both clocks.

Faults: a cell that kills the worker (``os._exit``, a segfault, a memory bomb) or exceeds its time
limit is recorded and skipped; a fresh worker replays the cells before it and carries on. A call that
kills the worker or exceeds the exercise's time limit costs that exercise only (the calls that finished
are still graded); the next exercise gets a fresh worker. Everything is bounded by the per-notebook
limit and a maximum number of restarts.
"""

from __future__ import annotations

import ast
import hashlib
import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from ..exercises.core import ERROR, FAILED, MISSING, NOT_ATTEMPTED, PARTIAL, TIMEOUT, Exercise, Outcome, Report
from . import wire
from .sandbox import Limits, Sandbox
from .workers import ForkedWorker, ForkServer, ProcessWorker, WorkerGone, _Channel
from .submissions import NotebookFile



# ---------------------------------------------------------------------------------------------------
# Plans: what the grader sends for each exercise (built once per run, shared by every learner)
# ---------------------------------------------------------------------------------------------------


def exercise_seed(run_seed: int, exercise_id: str) -> int:
    """An independent seed per exercise, derived from the run's secret seed."""
    digest = hashlib.sha256(f"{run_seed}:{exercise_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class Plan:
    """One exercise's hidden cases, the calls to make, their encoded inputs and the reference outputs."""

    exercise: Exercise
    cases: list
    calls: list
    payload: list           # one {"args", "kwargs"} description per call
    blobs: list             # the raw bytes those descriptions refer to
    _expected: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _judge_ex: Optional[Exercise] = None

    @classmethod
    def build(cls, ex: Exercise, run_seed: int) -> "Plan":
        cases = ex.cases(exercise_seed(run_seed, ex.id), hidden=True)
        calls = ex.plan(cases)
        blobs: list = []
        payload = []
        for call in calls:
            budget = wire.Budget(1 << 31)
            payload.append({"args": wire.encode(tuple(call.args), blobs, budget),
                            "kwargs": wire.encode(dict(call.kwargs), blobs, budget)})
        opaque = _find_opaque(payload)
        if opaque:
            raise ValueError(f"exercise {ex.id}: a case input is a {opaque}, which cannot be sent to a worker by "
                             f"value (use tensors, numbers, strings, tuples, lists, dicts, GeneratorSeed or "
                             f"ModuleInputs)")
        return cls(ex, cases, calls, payload, blobs)

    def digest(self) -> str:
        """A hash of the hidden inputs and the reference outputs (part of the cache key)."""
        ex = self.judging_exercise()
        h = hashlib.sha256(json.dumps(self.payload, sort_keys=True).encode())
        for b in self.blobs:
            h.update(b)
        for call in self.calls:
            if call.property_name is None:
                desc, blobs = wire.encode_value(ex.expected(call), 1 << 31)
                h.update(json.dumps(desc, sort_keys=True).encode())
                for b in blobs:
                    h.update(b)
        return h.hexdigest()

    def judging_exercise(self) -> Exercise:
        """The exercise, with reference outputs computed once per run instead of once per learner."""
        with self._lock:
            if self._judge_ex is None:
                for call in self.calls:
                    if call.property_name is None:
                        self._expected[id(call)] = self.exercise.expected(call)
                ex = _copy_exercise(self.exercise)
                expected = self._expected
                ex.expected = lambda call: expected[id(call)]  # instance attribute shadows the method
                self._judge_ex = ex
            return self._judge_ex


def _find_opaque(desc: Any) -> Optional[str]:
    """The type name of the first value in an encoded description that could not be encoded."""
    if isinstance(desc, dict):
        if "$opaque" in desc:
            return str(desc["$opaque"])
        return next((t for t in map(_find_opaque, desc.values()) if t), None)
    if isinstance(desc, list):
        return next((t for t in map(_find_opaque, desc) if t), None)
    return None


def _copy_exercise(ex: Exercise) -> Exercise:
    import copy

    return copy.copy(ex)


# ---------------------------------------------------------------------------------------------------
# Static facts about exercise cells
# ---------------------------------------------------------------------------------------------------

def _is_stub_body(body: list) -> bool:
    """A body that is only a docstring, ``pass``/``...`` and ``raise NotImplementedError(...)``."""
    raised = False
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            target = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                raised = True
                continue
        return False
    return raised


def still_a_stub(source: str, name: str, kind: str) -> bool:
    """True when the cell certainly leaves ``name`` as the untouched stub (then nothing needs to run).

    Conservative: the cell must parse, hold nothing but imports, docstrings and the one definition
    (no decorators), and that definition's body (``forward`` for a module) must be stub-only.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    found = False
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        if kind == "function" and isinstance(node, ast.FunctionDef) and node.name == name and not node.decorator_list:
            found = _is_stub_body(node.body)
            if not found:
                return False
            continue
        if kind == "module" and isinstance(node, ast.ClassDef) and node.name == name and not node.decorator_list:
            forward = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "forward"]
            found = bool(forward) and _is_stub_body(forward[0].body)
            if not found:
                return False
            continue
        return False
    return found


def bound_names(source: str) -> set:
    """Names a cell binds at its top level (assignments, defs, classes, imports, loop and with targets)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set = set()

    def targets(node) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                names.add(n.id)

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                targets(t)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            targets(node.target)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    targets(item.optional_vars)
    return names


_NAME_ERROR = re.compile(r"NameError: name '([A-Za-z_]\w*)' is not defined")


_DEF_RE = re.compile(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)


def defined_names(source: str) -> list:
    """Top-level functions and classes a cell defines (for "you renamed the function" messages)."""
    return _DEF_RE.findall(source)


_REVIEW_PATTERNS = [
    (re.compile(r"course_lib\s*\.\s*grading|from\s+course_lib\s+import\s+[^\n]*\bgrading\b"), "imports course_lib.grading"),
    (re.compile(r"\bset(?:profile|trace)\b"), "touches sys.setprofile / sys.settrace"),
    (re.compile(r"__closure__|get_referrers|gc\s*\.\s*get_objects|f_back|f_globals"),
     "inspects frames, closures or the garbage collector"),
    (re.compile(r"\bsolutions/|\.git/"), "refers to solutions/ or .git/"),
]


def review_flags(sources: list) -> list:
    """Reasons for an instructor to look at a notebook (grading is unaffected)."""
    flags = []
    text = "\n".join(sources)
    for pattern, why in _REVIEW_PATTERNS:
        if pattern.search(text):
            flags.append(why)
    return flags


# ---------------------------------------------------------------------------------------------------
# Grading one notebook
# ---------------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every notebook of a run shares."""

    sandbox: Sandbox
    limits: Limits
    plans: dict                  # exercise id -> Plan
    run_all_cells: bool = False
    slots: Optional[queue.Queue] = None
    servers: dict = field(default_factory=dict)   # slot -> ForkServer (used by one thread at a time)
    broken: dict = field(default_factory=dict)    # exercise id -> why its definition cannot be graded

    def new_worker(self, slot: int) -> _Channel:
        """A fresh worker for ``slot``: forked by the slot's server, or a process of its own."""
        if not self.sandbox.fork_server:
            return ProcessWorker(self.sandbox, slot, self.limits)
        server = self.servers.get(slot)
        if server is None or not server.alive:
            server = self.servers[slot] = ForkServer(self.sandbox, slot, self.limits)
        try:
            return ForkedWorker(server, self.sandbox, slot, self.limits)
        except WorkerGone:
            server.stop()
            self.servers.pop(slot, None)
            raise

    def stop_servers(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def _report(ex: Exercise, status: str, message: str, **extra) -> dict:
    d = Report(ex.id, status, 0.0, float(ex.points), message).to_dict()
    d.update(title=ex.title, notebook=ex.notebook, **extra)
    return d


class NotebookGrader:
    """Grades the exercises of one parsed notebook (see the module docstring)."""

    def __init__(self, nb: NotebookFile, exercises: list, ctx: Context, slot: int):
        self.nb, self.exercises, self.ctx, self.slot = nb, exercises, ctx, slot
        self.limits = ctx.limits
        self.worker: Optional[_Channel] = None
        self.cell_results: dict = {}
        self.fatal: dict = {}
        self.defined: dict = {}
        self.restarts = 0
        self.output_chars = 0
        self.confinement: dict = {}
        self.notes: list = list(nb.notes)
        # wall clock is only a backstop; the limits themselves are CPU time (see Limits)
        self.deadline = time.monotonic() + self._wall(self.limits.notebook_timeout)
        self.started_workers = 0
        self.cpu_done = 0.0     # CPU seconds of workers that have ended
        self.cpu_current = 0.0  # CPU seconds of the running worker, as it last reported

    # -- which cells, which exercises --------------------------------------------------------------

    def _plan_cells(self) -> tuple:
        """(cells to run, exercise id -> cell index, statuses decided without running)."""
        nb = self.nb
        decided: dict = {}
        where: dict = {}
        for ex in self.exercises:
            cells = nb.exercise_cells.get(ex.id, [])
            if not cells:
                fallback = [c for c in nb.code_cells if ex.function in defined_names(c.source) and not c.skipped]
                if fallback:
                    cells = [fallback[-1]]
                    self.notes.append(f"no `# EXERCISE: {ex.id}` line found; graded cell {cells[0].index}, "
                                      f"which defines `{ex.function}`")
                else:
                    decided[ex.id] = _report(ex, MISSING, f"no exercise cell for {ex.id} in {nb.filename}: the cell "
                                                          f"starting with `# EXERCISE: {ex.id}` that defines "
                                                          f"`{ex.function}` was deleted; copy it back from the "
                                                          f"handed-out notebook")
                    continue
            if len(cells) > 1:
                self.notes.append(f"exercise {ex.id} appears in {len(cells)} cells; the last one "
                                  f"(cell {cells[-1].index}) is graded")
            cell = cells[-1]
            again = [c.index for c in nb.code_cells if c.index != cell.index and ex.function in defined_names(c.source)]
            if again:
                self.notes.append(f"`{ex.function}` is also defined in cell(s) {', '.join(map(str, again))}; only "
                                  f"the exercise cell {cell.index} is graded")
            if cell.skipped:
                decided[ex.id] = _report(ex, MISSING, f"the exercise cell {cell.index} is tagged "
                                                      f"{', '.join(cell.skip_tags)}, so it is not run; remove the tag")
                continue
            where[ex.id] = cell.index
            if still_a_stub(cell.source, ex.function, ex.kind):
                decided[ex.id] = _report(ex, NOT_ATTEMPTED, f"not attempted yet: replace the `raise "
                                                            f"NotImplementedError` in `{ex.function}` with your code")
        needed = [i for k, i in where.items() if k not in decided]
        if not needed:
            return [], where, decided
        last = max(where[k] for k in where if k not in decided)
        cells = [c for c in nb.code_cells if not c.skipped and (self.ctx.run_all_cells or c.index <= last)]
        return cells, where, decided

    # -- the worker's life ---------------------------------------------------------------------------

    def _remaining(self, limit: float) -> float:
        """The wall-clock deadline for a step whose CPU limit is ``limit`` (never past the notebook's)."""
        return min(time.monotonic() + self._wall(limit), self.deadline)

    def _wall(self, cpu_limit: float) -> float:
        return self.limits.wall_factor * cpu_limit

    @property
    def cpu_used(self) -> float:
        return self.cpu_done + self.cpu_current

    def _account(self, header: dict, check: bool = True) -> None:
        """Add the CPU time a worker reports; past the notebook's limit the notebook stops here."""
        total = header.get("cpu_total")
        if isinstance(total, (int, float)) and total >= 0:
            self.cpu_current = float(total)
        if check and self.cpu_used > self.limits.notebook_timeout:
            raise WorkerGone(self._notebook_cpu_note(), timeout=True)

    def _cpu_budget(self, limit: float) -> float:
        """CPU seconds a step may use: its own limit, or what is left of the notebook's if that is less."""
        return max(0.01, min(limit, self.limits.notebook_timeout - self.cpu_used))

    def _notebook_cpu_note(self) -> str:
        return f"the notebook used more than its {self.limits.notebook_timeout:g} s of CPU time"

    def _wall_note(self, cpu_limit: float, what: str) -> str:
        return (f"{what} did not finish within {self._wall(cpu_limit):g} s of wall-clock time: it waits or "
                f"sleeps instead of computing (the backstop is {self.limits.wall_factor:g} x the "
                f"{cpu_limit:g} s CPU limit)")

    def _worker_ended(self) -> None:
        self.cpu_done += self.cpu_current
        self.cpu_current = 0.0

    def _start(self, exercise_specs: list) -> None:
        if self.restarts > self.limits.max_restarts:
            raise WorkerGone(f"the worker had to be restarted more than {self.limits.max_restarts} times")
        if time.monotonic() >= self.deadline:
            raise WorkerGone(self._wall_note(self.limits.notebook_timeout, "the notebook"), timeout=True)
        if self.cpu_used > self.limits.notebook_timeout:
            raise WorkerGone(f"the notebook used more than its {self.limits.notebook_timeout:g} s of CPU time",
                             timeout=True)
        self.started_workers += 1
        deadline = self._remaining(self.limits.startup_timeout)
        w = self.worker = self.ctx.new_worker(self.slot)
        try:
            header, _ = w.receive(deadline, "starting the worker")
            if header.get("op") != "ready":
                raise WorkerGone("the worker did not start properly")
            self.confinement = header.get("confinement", {})
            w.send({"op": "setup", "exercises": exercise_specs, "mpl_cache": self.ctx.sandbox.mpl_cache,
                    "cpu": {"cell": self.limits.cell_timeout, "exercise": self.limits.exercise_timeout}}, [],
                   deadline)
            header, _ = w.receive(deadline, "setting up the worker")
            if header.get("op") != "setup_done":
                raise WorkerGone("the worker did not set up properly")
        except WorkerGone as e:
            tail = w.diagnostics()
            w.kill()
            self.worker = None
            raise WorkerGone(f"{e.reason}" + (f" ({tail})" if tail else ""), e.timeout) from None

    def _run_cells(self, cells: list, where: dict, specs: list) -> None:
        """Bring a worker to the state after the last needed cell, restarting past fatal cells."""
        exercise_at: dict = {}
        for ex_id, i in where.items():
            exercise_at.setdefault(i, []).append(ex_id)
        while True:
            self._start(specs)
            try:
                for cell in cells:
                    if cell.index in self.fatal:
                        continue
                    budget = self._cpu_budget(self.limits.cell_timeout)
                    msg = {"op": "cell", "index": cell.index, "source": cell.source,
                           "exercises": exercise_at.get(cell.index, []), "cpu_limit": budget}
                    deadline = self._remaining(self.limits.cell_timeout)
                    try:
                        self.worker.send(msg, [], deadline)
                        header, _ = self.worker.receive(deadline, f"cell {cell.index}")
                    except WorkerGone as e:
                        if e.timeout and time.monotonic() >= self.deadline:
                            raise
                        self.fatal[cell.index] = {"timeout": e.timeout,
                                                  "reason": (self._wall_note(self.limits.cell_timeout,
                                                                             f"cell {cell.index}") if e.timeout
                                                             else f"cell {cell.index}: {e.reason}")}
                        raise _Restart() from None
                    self._record_cell(cell, header)
                    if header.get("fatal") == "cpu" and budget < self.limits.cell_timeout:
                        self._account(header, check=False)
                        raise WorkerGone(self._notebook_cpu_note(), timeout=True)
                    if header.get("fatal") == "cpu":
                        self.fatal[cell.index] = {"timeout": True, "reason": (
                            f"cell {cell.index} used more than the {self.limits.cell_timeout:g} s of CPU time "
                            f"allowed per cell")}
                        raise _Restart()
                    self._account(header)
                    if header.get("fatal") == "memory":
                        self.fatal[cell.index] = {"timeout": False, "reason": f"cell {cell.index} ran out of memory "
                                                                                f"({_clean(header.get('error'))})"}
                        raise _Restart()
                return
            except _Restart:
                self.restarts += 1
                self._worker_ended()
                if self.worker is not None:
                    self.worker.kill()
                    self.worker = None

    def _record_cell(self, cell, header: dict) -> None:
        self.output_chars += int(header.get("output_chars", 0) or 0)
        defined = header.get("defined") if isinstance(header.get("defined"), dict) else {}
        for ex_id, i in self._where.items():
            if i == cell.index:
                self.defined[ex_id] = {"defined": defined.get(ex_id) is True}
        if cell.index not in self.cell_results:
            self.cell_results[cell.index] = {
                "ok": bool(header.get("ok")), "seconds": header.get("seconds"),
                "cpu_seconds": header.get("cpu_seconds"),
                "error": _clean(header.get("error")), "traceback": _clean(header.get("traceback")),
            }

    # -- evaluation --------------------------------------------------------------------------------

    def _evaluate(self, plan: Plan) -> tuple:
        """Outcomes of the plan's calls (shorter when the worker stopped early) and a note."""
        w = self.worker
        ex = plan.exercise
        deadline = self._remaining(self.limits.exercise_timeout)
        budget = self._cpu_budget(self.limits.exercise_timeout)
        outcomes: list = []
        note = ""
        try:
            w.send({"op": "eval", "exercise": ex.id, "calls": plan.payload, "cpu_limit": budget,
                    "max_value_bytes": self.limits.max_value_mb << 20}, plan.blobs, deadline)
        except WorkerGone:
            self._worker_ended()
            self.worker = None  # it died before this exercise began: not this exercise's doing
            w.kill()
            raise _Restart() from None
        try:
            while True:
                header, blobs = w.receive(deadline, f"exercise {ex.id}")
                if header.get("op") == "eval_done":
                    break
                if header.get("op") != "outcome" or header.get("i") != len(outcomes):
                    raise WorkerGone("the worker broke the protocol")
                outcome = self._outcome(header, blobs)
                outcomes.append(outcome)
                if outcome.kind == "timeout":  # the exercise's CPU time is used up: the rest are not run
                    note = outcome.error
                    if budget < self.limits.exercise_timeout:
                        note = (f"ran out of time: {self._notebook_cpu_note()} ({len(outcomes) - 1} of "
                                f"{len(plan.calls)} calls finished)")
                        outcome = outcomes[-1] = Outcome("timeout", error=note)
                    outcomes += [Outcome("timeout", error=note)] * (len(plan.calls) - len(outcomes))
                self._account(header)
        except WorkerGone as e:
            self._worker_ended()
            self.worker = None
            w.kill()
            n_done = len(outcomes)
            if e.timeout:
                if self.cpu_used > self.limits.notebook_timeout:
                    note = f"ran out of time: {e.reason}"
                elif time.monotonic() >= self.deadline:
                    note = "ran out of time: " + self._wall_note(self.limits.notebook_timeout, "the notebook")
                else:
                    note = "ran out of time: " + self._wall_note(self.limits.exercise_timeout, "this exercise")
                note += f" ({min(n_done, len(plan.calls))} of {len(plan.calls)} calls finished)"
                outcomes += [Outcome("timeout", error=note)] * (len(plan.calls) - n_done)
            else:
                note = f"your code ended the worker process: {e.reason}"
                outcomes.append(Outcome("error", error=note))
                outcomes += [Outcome("error", error="not evaluated: the worker process had ended")] * (
                    len(plan.calls) - n_done - 1)
        return outcomes, note

    def _outcome(self, header: dict, blobs: list) -> Outcome:
        kind = header.get("kind")
        if kind == "value":
            try:
                value = wire.decode(header.get("value"), blobs, wire.Budget(self.limits.max_value_mb << 20))
                inputs = wire.decode_inputs(header, blobs, self.limits.max_value_mb << 20)
            except wire.WireError as e:
                return Outcome("error", error=f"your output could not be read: {e}")
            return Outcome("value", value=value, inputs=inputs)
        if kind in ("error", "not_implemented", "forbidden", "timeout"):
            return Outcome(kind, error=_clean(header.get("error")), traceback=_clean(header.get("traceback")))
        return Outcome("error", error="the worker sent an unknown outcome")

    def _skipped_cell_hint(self, error: str) -> Optional[str]:
        """One line when ``error`` is a NameError for a name that only a skipped cell (``train``, ``slow``,
        ...) defines, naming that cell; else None."""
        m = _NAME_ERROR.search(error or "")
        if not m:
            return None
        name = m.group(1)
        run = [c for c in self.nb.code_cells if not c.skipped and name in bound_names(c.source)]
        skipped = [c for c in self.nb.code_cells if c.skipped and name in bound_names(c.source)]
        if run or not skipped:
            return None
        cell = skipped[0]
        return (f"`{name}` is defined only in cell {cell.index}, tagged `{', '.join(cell.skip_tags)}`, which the "
                f"grader does not run; define what your code needs in the exercise cell or another untagged cell")

    def _judge(self, plan: Plan, outcomes: list, note: str) -> dict:
        ex = plan.judging_exercise()
        for o in outcomes:
            hint = self._skipped_cell_hint(o.error) if o.kind == "error" else None
            if hint:
                return _report(ex, ERROR, hint, traceback=o.traceback or "")
        other = _unfinished_dependency(outcomes, ex.id)
        if other:
            return _report(ex, ERROR, f"`{ex.function}` calls the unfinished exercise {other} (its stub still raises "
                                      f"NotImplementedError); finish {other} first")
        timed_out = any(o.kind == "timeout" for o in outcomes)
        if timed_out:
            outcomes = [Outcome("error", error="not finished within the time limit") if o.kind == "timeout" else o
                        for o in outcomes]
        report = ex.judge(plan.cases, plan.calls, outcomes)
        d = report.to_dict()
        d.update(title=ex.title, notebook=ex.notebook, mistake_message=report.mistake_message)
        if timed_out and d["status"] not in (NOT_ATTEMPTED, "forbidden"):
            d["status"] = TIMEOUT if d["points"] == 0 else PARTIAL
            d["message"] = note + ("" if d["points"] == 0 else f"; the finished cases earn {d['points']:g} points")
        elif note and d["status"] in (ERROR, FAILED, PARTIAL):
            d["message"] = note if d["status"] == ERROR else f"{d['message']} ({note})"
        return d

    # -- everything --------------------------------------------------------------------------------

    def run(self) -> dict:
        start = time.monotonic()
        every = list(self.exercises)
        # An exercise whose definition fails is reported as such and never sent to the worker.
        broken = {ex.id: _report(ex, ERROR, f"this exercise cannot be graded right now (its definition fails: "
                                            f"{self.ctx.broken[ex.id]}); your instructor has been told")
                  for ex in every if ex.id in self.ctx.broken}
        self.exercises = [ex for ex in every if ex.id not in broken]
        cells, where, decided = self._plan_cells()
        self._where = where
        results = {**broken, **decided}
        todo = [ex for ex in self.exercises if ex.id not in decided]
        specs = [{"id": ex.id, "function": ex.function, "kind": ex.kind} for ex in self.exercises]
        fault: Optional[WorkerGone] = None
        try:
            for ex in todo:
                if fault is not None:
                    break
                for attempt in (1, 2):
                    try:
                        if self.worker is None:
                            self._run_cells(cells, where, specs)
                        results[ex.id] = self._grade_one(ex, where[ex.id])
                        break
                    except _Restart:
                        self.restarts += 1
                        if attempt == 2:
                            fault = WorkerGone("the worker process kept ending before the exercise could start")
                    except WorkerGone as e:
                        fault = e
                        break
            if fault is not None:
                for ex in todo:
                    if ex.id not in results:
                        status = TIMEOUT if fault.timeout else ERROR
                        results[ex.id] = _report(ex, status, f"not graded: {fault.reason}")
        finally:
            if self.worker is not None:
                self.worker.close()
                self.worker = None
        ordered = {ex.id: results[ex.id] for ex in every}
        return self._notebook_result(ordered, cells, time.monotonic() - start)

    def _grade_one(self, ex: Exercise, cell_index: int) -> dict:
        if self.cpu_used >= self.limits.notebook_timeout:
            raise WorkerGone(self._notebook_cpu_note(), timeout=True)
        if cell_index in self.fatal:
            f = self.fatal[cell_index]
            return _report(ex, TIMEOUT if f["timeout"] else ERROR,
                           f"your exercise cell could not run: {f['reason']}")
        info = self.defined.get(ex.id, {"defined": False})
        cell = self.cell_results.get(cell_index, {})
        if not info.get("defined"):
            if not cell.get("ok", True):
                hint = self._skipped_cell_hint(cell.get("error", ""))
                if hint:
                    return _report(ex, ERROR, hint, traceback=cell.get("traceback", ""))
                return _report(ex, ERROR, f"your exercise cell {cell_index} raised {cell.get('error')}, so "
                                          f"`{ex.function}` was never defined", traceback=cell.get("traceback", ""))
            names = [n for n in defined_names(self.nb.cell(cell_index).source) if n != ex.function]
            hint = f" (it defines {', '.join(f'`{n}`' for n in names)})" if names else ""
            return _report(ex, MISSING, f"the exercise cell {cell_index} does not define `{ex.function}`{hint}; "
                                        f"keep the name from the handed-out notebook")
        plan = self.ctx.plans.get(ex.id)
        if plan is None:
            return _report(ex, ERROR, f"this exercise cannot be graded right now (its definition fails: "
                                      f"{self.ctx.broken.get(ex.id, 'unknown')}); your instructor has been told")
        outcomes, note = self._evaluate(plan)
        return self._judge(plan, outcomes, note)

    def _notebook_result(self, exercises: dict, cells: list, seconds: float) -> dict:
        errors = [{"cell": i, "error": r["error"], "traceback": r["traceback"]}
                  for i, r in sorted(self.cell_results.items()) if not r["ok"]]
        fatal = [{"cell": i, **f} for i, f in sorted(self.fatal.items())]
        flags = review_flags([c.source for c in self.nb.code_cells])
        return {
            "file": self.nb.filename, "sha256": self.nb.sha256, "status": "graded",
            "isolation": self.ctx.sandbox.describe(self.confinement) if self.started_workers else "nothing was run",
            "seconds": round(seconds, 2), "cpu_seconds": round(self.cpu_used, 2),
            "workers_started": self.started_workers, "restarts": self.restarts,
            "cells": {"run": len(self.cell_results), "planned": len(cells), "errors": errors, "fatal": fatal,
                      "skipped_by_tag": [c.index for c in self.nb.code_cells if c.skipped],
                      "output_chars": self.output_chars},
            "notes": self.notes, "review": flags, "exercises": exercises,
        }


class _Restart(Exception):
    pass


_STUB_ID = re.compile(r"exercise (\d\d\.[A-Za-z_]\w*)")


def _unfinished_dependency(outcomes: list, exercise_id: str) -> Optional[str]:
    """The id of another exercise whose stub the learner's function ran into, if any."""
    for o in outcomes:
        if o.kind == "not_implemented":
            m = _STUB_ID.search(o.error or "")
            if m and m.group(1) != exercise_id:
                return m.group(1)
    return None


def _clean(text: Any) -> str:
    """A worker-supplied string made safe to store (bounded, valid UTF-8)."""
    if text is None:
        return ""
    text = str(text)[:8000]
    return text.encode("utf-8", "replace").decode("utf-8")


def grade_unreadable(nb_error: str, exercises: list, filename: str) -> dict:
    """The notebook result when the file cannot be read as a notebook at all."""
    ex_results = {ex.id: _report(ex, ERROR, nb_error) for ex in exercises}
    return {"file": filename, "sha256": None, "status": "unreadable", "isolation": "nothing was run",
            "seconds": 0.0, "workers_started": 0, "restarts": 0,
            "cells": {"run": 0, "planned": 0, "errors": [], "fatal": [], "skipped_by_tag": [], "output_chars": 0},
            "notes": [nb_error], "review": [], "exercises": ex_results}


def grade_notebook(nb: NotebookFile, exercises: list, ctx: Context) -> dict:
    """Grade one notebook with a worker slot from ``ctx.slots``."""
    if nb.error:
        r = grade_unreadable(nb.error, exercises, nb.filename)
        r["sha256"] = nb.sha256
        return r
    slot = ctx.slots.get() if ctx.slots is not None else 0
    try:
        return NotebookGrader(nb, exercises, ctx, slot).run()
    finally:
        if ctx.slots is not None:
            ctx.slots.put(slot)


__all__ = ["Plan", "Context", "grade_notebook", "exercise_seed", "still_a_stub"]
