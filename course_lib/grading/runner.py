"""Grading a whole class: ``grade(SUBMISSIONS, OUT)``.

1. Check the folders (misuse is a :class:`UsageError` with a one-line reason), lock ``OUT``, settle the
   seed: ``--seed`` if given, else the one stored in ``OUT/.grading/state.json`` by an earlier run (so a
   re-run grades late or changed submissions on the same hidden cases as everybody else), else a fresh
   secret one. The seed is never written into results or feedback.
2. Find the students and the course notebooks each one submitted; the gradebook's columns are the
   exercises of every notebook that at least one student submitted (or of ``units``).
3. Build each exercise's plan once (hidden cases, calls, encoded inputs; reference outputs on first use).
4. Grade every (student, notebook) pair in ``jobs`` parallel workers, reusing the previous result of a
   notebook whose content, seed, grader and limits are unchanged (content hashes in the results files).
5. Write each student's results and feedback as soon as their last notebook is done (atomically), and
   at the end ``grades.csv`` and ``summary.png`` (atomically) and a summary table.

A run killed at any point (even with SIGKILL) leaves complete files only; started again, it reuses what
was finished and ends with the same ``grades.csv`` as a run that was never interrupted.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import hashlib
import json
import os
import queue
import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..exercises import all_exercises
from ..exercises.core import MISSING, Report
from . import report as R
from .sandbox import PROJECT_ROOT, Limits, choose
from .session import Context, Plan, grade_notebook, grade_unreadable
from .submissions import file_sha256, find_class, nbgrader_course_folder, read_notebook

STATE_DIR = ".grading"
RESULTS_VERSION = 1


class UsageError(Exception):
    """The command was used wrongly (missing folder, unwritable output); the message is one line."""


@dataclass
class RunSummary:
    out: Path
    students: int
    graded_notebooks: int
    reused_notebooks: int
    seconds: float
    isolation: list
    exercise_ids: list
    results: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    layout: str = ""                  # the one line saying which layout SUBMISSIONS has
    notebooks: list = field(default_factory=list)   # the units (notebook stems) in the gradebook
    lms: Optional[object] = None      # the lms.LmsExport, when a roster was given


# ---------------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------------


def _source_digest(paths, root: Path = PROJECT_ROOT) -> str:
    h = hashlib.sha256()
    named = []
    for p in set(paths):
        try:  # the same checkout elsewhere (another node of a cluster) gives the same digest
            name = Path(p).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            name = Path(p).name
        named.append((name, p))
    for name, p in sorted(named):
        h.update(name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()


# The files of course_lib that cannot change a grade (paths from the project root), so editing them keeps
# every cached result. Each runs only before grading, on the command line, or after it, on the results:
NOT_GRADING = {
    "course_lib/__main__.py": "`python -m course_lib`: hands the command line to course_lib/cli.py",
    "course_lib/cli.py": "the `course` command: dispatches to the subcommands",
    "course_lib/grading/cli.py": "`course grade`'s options; those that change grades (seed, limits, units, "
                                 "sandbox, --all-cells) reach the cache key as values",
    "course_lib/grading/report.py": "writes results/, feedback/, grades.csv and summary.png from the results "
                                    "(a run rewrites a feedback page whose text it would write differently)",
    "course_lib/grading/lms.py": "the roster and lms.csv, from the results",
    "course_lib/grading/merge.py": "joins the shards' results",
    "course_lib/grading/gradescope.py": "the Gradescope bundle and results.json, from the results",
}


def grading_files(root: Path = PROJECT_ROOT) -> list:
    """The files whose content :func:`grader_fingerprint` hashes: all of ``course_lib`` but :data:`NOT_GRADING`
    (and caches, hidden and backup files)."""
    root = Path(root)
    files = []
    for p in (root / "course_lib").rglob("*"):
        rel = p.relative_to(root)
        if (not p.is_file() or rel.as_posix() in NOT_GRADING or any(part.startswith(".") for part in rel.parts)
                or "__pycache__" in rel.parts or p.suffix in (".pyc", ".pyo", ".swp") or p.name.endswith("~")):
            continue
        files.append(p)
    return sorted(files)


def grader_fingerprint(root: Path = PROJECT_ROOT) -> str:
    """A hash of every file that decides a grade; part of every notebook's cache key (and of ``run.json``,
    so that a merge refuses shards graded by different code).

    What is in: all of ``course_lib`` except the few files in :data:`NOT_GRADING`, each of which runs only
    before grading (the command line) or after it (reports, the LMS export, the merge, Gradescope's
    bundle). That is wider than the grader alone, on purpose: a grade depends on

    * the judging code (``grading/session.py``, ``runner.py``, ``wire.py``) and the exercise framework
      (``exercises/core.py``, ``registry.py``, ``check.py``);
    * the code that runs the learner's cells (``grading/worker.py``, ``workers.py``, ``sandbox.py``) and
      decides which cells run and which notebook counts (``grading/submissions.py``, and
      ``authoring.py``, whose skip tags and ``# EXERCISE:`` markers it uses);
    * every exercise definition (``exercises/unit*.py``), not only the notebook's own: the worker imports
      them all before any learner code runs (``registry.load_all``), so their import-time code runs in
      every notebook, and notebooks import exercise modules' helpers;
    * the reference code (``softmax.py``, ``attention.py``, ``models.py``, ...) and every other module a
      notebook can import (``data.py``, ``viz.py``, ``training.py``, ...): learner cells call them (a
      learner who skips an exercise runs the rest on the reference), the known mistakes and properties
      call them, and a forbidden shortcut is named by its place in them. The reference outputs are also
      hashed per notebook (:func:`notebook_key`), but a change of code need not change them.

    A new file in ``course_lib`` is in unless it is added to :data:`NOT_GRADING`: missing a file that
    changes grades would keep stale grades, whereas hashing one too many only grades again.
    Not hashed: the Python, PyTorch and NumPy installed (a new PyTorch that changes a reference output
    still re-grades through :func:`notebook_key`).
    """
    return _source_digest(grading_files(root), root)[:16]


def shard_of(name: str, n: int) -> int:
    """The shard (1..n) of a learner: a stable hash of their folder name, independent of the other
    folders, of their order and of the machine."""
    digest = hashlib.sha256(b"course-shard:" + name.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def definitions_digest(exercises: list) -> str:
    """A hash of the exercise modules that define ``exercises`` (a merge refuses shards that differ)."""
    files = set()
    for ex in exercises:
        module = sys.modules.get(ex.make_cases.__module__)
        if module is not None and getattr(module, "__file__", None):
            files.add(module.__file__)
    return _source_digest(sorted(files))[:16]


def notebook_key(seed: int, fingerprint: str, plans: list, limits: Limits, sandbox_kind: str,
                 run_all_cells: bool) -> str:
    """What besides a notebook's content decides its grade: the grader (:func:`grader_fingerprint`, which
    covers the code of every exercise and reference), the definitions of its exercises, their hidden
    inputs and reference outputs (so a reference output that changes with the installed PyTorch
    re-grades the notebooks it affects), the limits and the sandbox. The seed enters only through a hash."""
    h = hashlib.sha256()
    h.update(json.dumps({"seed": seed, "grader": fingerprint, "limits": limits.key(), "sandbox": sandbox_kind,
                         "all_cells": run_all_cells, "v": RESULTS_VERSION}, sort_keys=True).encode())
    for plan in plans:
        module = sys.modules.get(plan.exercise.make_cases.__module__)
        if module is not None and getattr(module, "__file__", None):
            h.update(_source_digest([module.__file__]).encode())
        h.update(plan.digest().encode())
    return h.hexdigest()[:24]


# ---------------------------------------------------------------------------------------------------
# Output folder
# ---------------------------------------------------------------------------------------------------


def _prepare_out(out: Path) -> tuple:
    try:
        out.mkdir(parents=True, exist_ok=True)
        for sub in ("results", "feedback", STATE_DIR):
            (out / sub).mkdir(exist_ok=True)
        probe = out / STATE_DIR / f".probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {out}: {e.strerror or e}") from None
    lock = open(out / STATE_DIR / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise UsageError(f"another grading run is using {out}; wait for it or choose another --out") from None
    for sub in ("results", "feedback", "."):
        for tmp in (out / sub).glob(".*.tmp"):
            try:
                tmp.unlink()  # left by a run that was killed while writing
            except OSError:
                pass
    return lock


def _settle_seed(out: Path, seed: Optional[int], new_seed: bool) -> int:
    state_path = out / STATE_DIR / "state.json"
    state = {}
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}
    if seed is None:
        stored = state.get("seed")
        seed = stored if isinstance(stored, int) and not new_seed else secrets.randbits(63)
    if state.get("seed") != seed:
        R.atomic_write(state_path, json.dumps({"seed": int(seed)}) + "\n")
        os.chmod(state_path, 0o600)
    return int(seed)


def _previous(out: Path, safe: str) -> dict:
    path = out / "results" / f"{safe}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and data.get("version") == RESULTS_VERSION else {}
    except (OSError, ValueError):
        return {}


def _text_of(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def _mpl_cache() -> Optional[dict]:
    """matplotlib's font list, handed to each worker so it does not rebuild it (seconds per worker)."""
    try:
        import matplotlib
        import matplotlib.font_manager  # noqa: F401 - builds the cache when missing

        cache = Path(matplotlib.get_cachedir())
        files = sorted(cache.glob("fontlist-v*.json"))
        if files:
            return {"name": files[-1].name, "text": files[-1].read_text(encoding="utf-8")}
    except Exception:  # noqa: BLE001 - only an optimisation
        return None
    return None


# ---------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------


class Progress:
    """A progress bar with an ETA on a terminal (tqdm); elsewhere (logs, CI) one line per graded notebook."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.bar = None
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="nb", desc="grading", file=self.stream, dynamic_ncols=True)

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(label[:30], refresh=False)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"[{self.done}/{self.total}] {label}  elapsed {elapsed:.0f} s, ETA {eta:.0f} s",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------


def grade(submissions, out, *, seed: Optional[int] = None, new_seed: bool = False, jobs: Optional[int] = None,
          limits: Optional[Limits] = None, sandbox: str = "auto", units: Optional[list] = None,
          regrade: tuple = (), progress: bool = True, run_all_cells: bool = False, stream=None,
          shard: Optional[tuple] = None, roster=None) -> RunSummary:
    """Grade every submission in ``submissions`` into ``out`` (see the module docstring).

    ``shard=(i, n)`` grades only the learners of shard ``i`` of ``n`` (:func:`shard_of`); it needs ``seed``
    so that every shard draws the same hidden cases. ``course grade merge`` joins the shards' outputs.
    ``roster`` (a path or an :class:`.lms.Roster`) adds ``OUT/lms.csv`` for the LMS (:mod:`.lms`).
    """
    if shard is not None:
        i, n = shard
        if not (isinstance(n, int) and isinstance(i, int) and n >= 1 and 1 <= i <= n):
            raise UsageError(f"--shard {i}/{n}: the shard index must be between 1 and {n}")
        if seed is None:
            raise UsageError("--shard needs --seed S: every shard must draw the same hidden cases")
    t0 = time.monotonic()
    stream = stream or sys.stdout
    limits = limits or Limits()
    submissions, out = Path(submissions), Path(out)
    if not submissions.is_dir():
        raise UsageError(f"{submissions}: no such folder (expected SUBMISSIONS/<student>/<NN_slug>.ipynb)")
    course_dir = nbgrader_course_folder(submissions)
    if course_dir:
        raise UsageError(f"{submissions} is an nbgrader course directory ({course_dir}): grade its submitted "
                         f"folder, course grade {submissions / 'submitted'} --out OUT")
    roster = _roster(roster, shard)
    if out.resolve() == submissions.resolve() or submissions.resolve() in out.resolve().parents:
        raise UsageError(f"the output folder {out} must not be inside the submissions folder {submissions}")
    jobs = max(1, min(int(jobs or os.cpu_count() or 1), 128))
    lock = _prepare_out(out)
    # The run's temporary folder lives in OUT (hidden from workers): a killed run's is removed here.
    for stale in (out / STATE_DIR).glob("tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp_root = Path(tempfile.mkdtemp(prefix="tmp-", dir=out / STATE_DIR))
    os.chmod(tmp_root, 0o711)
    try:
        summary = _grade(submissions, out, seed, new_seed, jobs, limits, sandbox, units, set(regrade), progress,
                         run_all_cells, stream, tmp_root, t0, shard)
        _lms_export(out, roster, summary)
        return summary
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        lock.close()


def _grade(submissions, out, seed, new_seed, jobs, limits, sandbox_mode, units, regrade, progress, run_all_cells,
           stream, tmp_root, t0, shard=None) -> RunSummary:
    import torch

    seed = _settle_seed(out, seed, new_seed)
    exercises = all_exercises()
    stems = {ex.notebook for ex in exercises}
    students, warnings, layout = find_class(submissions, stems)
    if progress:
        print(layout.line(), file=stream, flush=True)
    everyone = [st.name for st in students]
    if units:
        wanted = {str(u).zfill(2) for u in units}
        columns_nb = sorted(s for s in stems if s[:2] in wanted)
    else:  # the whole class's units, before sharding: every shard has the columns of a single run
        columns_nb = sorted({stem for st in students for stem in st.notebooks})
    if shard is not None:
        students = [st for st in students if shard_of(st.name, shard[1]) == shard[0]]
    col_exercises = [ex for ex in exercises if ex.notebook in columns_nb]
    exercise_ids = [ex.id for ex in col_exercises]
    by_nb: dict = {}
    for ex in col_exercises:
        by_nb.setdefault(ex.notebook, []).append(ex)

    hide = [PROJECT_ROOT / "solutions", PROJECT_ROOT / ".git", Path.cwd() / "solutions", out, submissions, tmp_root]
    try:
        box = choose(sandbox_mode, hide=hide, tmp_root=tmp_root)
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    box.mpl_cache = _mpl_cache()
    fingerprint = grader_fingerprint()
    # Plans are built once per run (hidden cases, encoded inputs, reference outputs). An exercise whose
    # definition fails is reported for every learner; it does not stop the run.
    plans, broken = {}, {}
    for ex in col_exercises:
        try:
            plans[ex.id] = Plan.build(ex, seed)
            plans[ex.id].digest()
        except Exception as e:  # noqa: BLE001 - somebody else's exercise definition
            plans.pop(ex.id, None)
            broken[ex.id] = f"{type(e).__name__}: {e}"
            warnings.append(f"exercise {ex.id} cannot be graded: its definition fails ({broken[ex.id]})")
    keys = {stem: notebook_key(seed, fingerprint, [plans[ex.id] for ex in by_nb[stem] if ex.id in plans], limits,
                               box.kind, run_all_cells) for stem in columns_nb}
    slots: queue.Queue = queue.Queue()
    for i in range(jobs):
        slots.put(i)
    ctx = Context(box, limits, plans, run_all_cells, slots, broken=broken)

    # Per student: what is reused, what must be graded.
    pending: dict = {}
    partial: dict = {}
    tasks: list = []
    reused = 0
    for st in students:
        prev = _previous(out, st.safe) if st.name not in regrade else {}
        prev_nbs = prev.get("notebooks", {}) if prev.get("student") == st.name else {}
        partial[st.name] = {}
        for stem in columns_nb:
            path = st.notebooks.get(stem)
            if path is None:
                partial[st.name][stem] = _missing_notebook(stem, by_nb[stem], st.refused.get(stem))
                continue
            old = prev_nbs.get(stem)
            digest = file_sha256(path)
            if old and old.get("sha256") == digest and old.get("key") == keys[stem] and old.get("file") == path.name:
                partial[st.name][stem] = old
                reused += 1
                continue
            tasks.append((st, stem, path))
        pending[st.name] = sum(1 for t in tasks if t[0] is st)

    bar = Progress(len(tasks), progress)
    lock = threading.Lock()
    results: dict = {}
    isolation: set = set()

    def finish_student(st) -> None:
        res = _student_result(st, partial[st.name], col_exercises, columns_nb)
        R.atomic_write(out / "results" / f"{st.safe}.json", R.result_json(res))
        R.atomic_write(out / "feedback" / f"{st.safe}.html", R.feedback_html(res))
        results[st.name] = res

    def work(task):
        st, stem, path = task
        try:
            nb = read_notebook(path, stem)
            r = grade_notebook(nb, by_nb[stem], ctx)
            r["key"] = keys[stem]
            r["sha256"] = nb.sha256 or file_sha256(path)
        except Exception as e:  # noqa: BLE001 - a grader bug costs this notebook, never the class
            why = f"the grader failed on this notebook ({type(e).__name__}: {e}); tell your instructor"
            r = grade_unreadable(why, by_nb[stem], path.name)
            r["status"] = "grader_error"
            warnings.append(f"{st.name}/{path.name}: {why}")
        return task, r

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for st in students:
            if pending[st.name] == 0:
                # Nothing to grade: rewrite only when the stored file is missing or stale (report.py is not
                # in the fingerprint, so a page it now writes differently is rewritten here).
                res = _student_result(st, partial[st.name], col_exercises, columns_nb)
                prev = _previous(out, st.safe)
                page = out / "feedback" / f"{st.safe}.html"
                if prev != json.loads(R.result_json(res)):
                    R.atomic_write(out / "results" / f"{st.safe}.json", R.result_json(res))
                    R.atomic_write(page, R.feedback_html(res))
                elif _text_of(page) != R.feedback_html(res):
                    R.atomic_write(page, R.feedback_html(res))
                results[st.name] = res
        with cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade") as pool:
            futures = [pool.submit(work, t) for t in tasks]
            for fut in cf.as_completed(futures):
                (st, stem, path), r = fut.result()
                with lock:
                    partial[st.name][stem] = r
                    isolation.add(r.get("isolation", ""))
                    pending[st.name] -= 1
                    if pending[st.name] == 0:
                        finish_student(st)
                bar.step(f"{st.name} {stem}")
    finally:
        ctx.stop_servers()
        torch.set_num_threads(threads_before)
        bar.close()

    ordered = [results[st.name] for st in students]
    R.atomic_write(out / STATE_DIR / "run.json", json.dumps({
        "version": RESULTS_VERSION, "seed_sha256": hashlib.sha256(str(seed).encode()).hexdigest(),
        "grader": fingerprint, "definitions": definitions_digest(col_exercises), "shard": list(shard or (1, 1)),
        "notebooks": columns_nb, "students": [st.name for st in students], "everyone": everyone,
    }, indent=1, ensure_ascii=False) + "\n")
    R.atomic_write(out / "grades.csv", R.grades_csv(ordered, exercise_ids))
    if ordered and exercise_ids:
        try:
            R.atomic_write(out / "summary.png", R.summary_png(ordered, exercise_ids), binary=True)
        except Exception as e:  # noqa: BLE001 - a plot problem must not lose the grades
            warnings.append(f"summary.png could not be drawn: {e}")
    for r in ordered:
        for nb in r["notebooks"].values():
            if nb.get("isolation") and nb["isolation"] != "nothing was run":
                isolation.add(nb["isolation"])
    isolation.discard("")
    isolation.discard("nothing was run")
    return RunSummary(out, len(students), len(tasks), reused, time.monotonic() - t0, sorted(isolation),
                      exercise_ids, ordered, warnings, layout=layout.line(), notebooks=columns_nb)


def _roster(roster, shard):
    """The roster, read and checked before anything is graded (a :class:`UsageError` when unusable)."""
    if roster is None:
        return None
    from .lms import Roster, RosterError, load_roster

    if shard is not None:
        raise UsageError("--roster goes with the merge of the shards (course grade merge OUT_1 ... OUT_N --out OUT "
                         "--roster R), not with --shard: a shard grades only part of the class")
    try:
        return roster if isinstance(roster, Roster) else load_roster(roster)
    except RosterError as e:
        raise UsageError(str(e)) from None


def _lms_export(out: Path, roster, summary: RunSummary) -> None:
    """``OUT/lms.csv`` (and ``lms-unmatched.csv``) for ``roster``; without one, a word about a stale file."""
    from .lms import LMS_FILE, build_export, write_export

    if roster is None:
        if (out / LMS_FILE).exists():
            summary.warnings.append(f"{out}/{LMS_FILE} is from an earlier run with --roster and was not updated; "
                                    f"give --roster again to bring it up to date")
        return
    summary.lms = build_export(roster, summary.results, summary.notebooks)
    write_export(out, summary.lms)
    w = summary.lms.warning(roster.path)
    if w:
        summary.warnings.append(w)


def _missing_notebook(stem: str, exercises: list, why: Optional[str] = None) -> dict:
    ex_results = {}
    for ex in exercises:
        d = Report(ex.id, MISSING, 0.0, float(ex.points), why or f"{stem}.ipynb was not submitted").to_dict()
        d.update(title=ex.title, notebook=ex.notebook, mistake_message=None)
        ex_results[ex.id] = d
    return {"file": None, "sha256": None, "status": "not_submitted", "isolation": "nothing was run",
            "seconds": 0.0, "workers_started": 0, "restarts": 0,
            "cells": {"run": 0, "planned": 0, "errors": [], "fatal": [], "skipped_by_tag": [], "output_chars": 0},
            "notes": [], "review": [], "exercises": ex_results}


def _student_result(st, notebooks: dict, exercises: list, stems: list) -> dict:
    flat = {}
    for stem in stems:
        flat.update(notebooks[stem]["exercises"])
    flat = {ex.id: flat[ex.id] for ex in exercises if ex.id in flat}
    total = round(sum(e["points"] for e in flat.values()), 4)
    max_total = round(sum(float(ex.points) for ex in exercises), 4)
    return {"version": RESULTS_VERSION, "student": st.name, "total": total, "max_total": max_total,
            "exercises": flat, "notebooks": {stem: notebooks[stem] for stem in stems}, "notes": list(st.notes)}
