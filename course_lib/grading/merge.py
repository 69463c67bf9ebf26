"""Joining the outputs of a sharded run: ``course grade merge OUT_1 ... OUT_N --out OUT``.

Each shard (``course grade SUBMISSIONS --out OUT_i --shard i/N --seed S``) records in
``OUT_i/.grading/run.json`` what decides its grades: a hash of the seed (never the seed), the grader's
fingerprint, the exercise definitions, the results version, its shard, the learners it graded and every
learner it found. The merge refuses, in one line naming the shard, outputs that differ in any of these
or that repeat or lack a shard, and reports learners graded in two shards or in none. It builds the whole
output in a temporary folder next to OUT and renames it into place only when everything is written, so
a merge that fails or is killed leaves nothing half-done. Its ``grades.csv`` is byte for byte the one an
unsharded run with the same seed writes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

from . import report as R
from .runner import RESULTS_VERSION, STATE_DIR, UsageError, _missing_notebook, _student_result
from .submissions import safe_name

CHECKED = (("seed_sha256", "seed"), ("grader", "grader version"), ("definitions", "version of the exercise definitions"),
           ("version", "results format"))


def _read_run(folder: Path) -> dict:
    path = folder / STATE_DIR / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{folder}: not the output of a finished grading run (no {STATE_DIR}/run.json); "
                         f"run `course grade SUBMISSIONS --out {folder} --shard I/N --seed S` first") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}: {STATE_DIR}/run.json cannot be read ({e})") from None
    if not isinstance(run, dict) or not all(k in run for k in ("shard", "students", "everyone", "notebooks")):
        raise UsageError(f"{folder}: {STATE_DIR}/run.json is incomplete; grade this shard again")
    return run


def plan_merge(folders: list) -> tuple:
    """``(runs, students, columns)`` after every consistency check (a :class:`UsageError` otherwise)."""
    if not folders:
        raise UsageError("give the shards' output folders: course grade merge OUT_1 ... OUT_N --out OUT")
    runs = []
    for f in folders:
        f = Path(f)
        if not f.is_dir():
            raise UsageError(f"{f}: no such folder")
        runs.append((f, _read_run(f)))
    first_dir, first = runs[0]
    for f, run in runs[1:]:
        for key, what in CHECKED:
            if run.get(key) != first.get(key):
                raise UsageError(f"{f}: its {what} is not the same as {first_dir}'s; grade every shard with the "
                                 f"same course version and --seed")
    n = first["shard"][1]
    seen: dict = {}
    for f, run in runs:
        i, m = run["shard"]
        if m != n:
            raise UsageError(f"{f}: shard {i}/{m}, but {first_dir} is a shard of {n}")
        if i in seen:
            raise UsageError(f"{f}: shard {i}/{n} again (already given as {seen[i]})")
        seen[i] = f
    absent = [i for i in range(1, n + 1) if i not in seen]
    if absent:
        raise UsageError(f"shard(s) {', '.join(f'{i}/{n}' for i in absent)} missing: give all {n} output folders")
    where: dict = {}
    for f, run in runs:
        for name in run["students"]:
            if name in where:
                raise UsageError(f"learner {name!r} was graded in two shards ({where[name]} and {f}); "
                                 f"were the shards run on different submissions folders?")
            where[name] = f
    everyone = set().union(*(set(run["everyone"]) for _, run in runs))
    missing = sorted(everyone - set(where))
    if missing:
        raise UsageError(f"{len(missing)} learner(s) in no shard ({', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''}); were the shards run on the same folder?")
    columns = sorted(set().union(*(set(run["notebooks"]) for _, run in runs)))
    return runs, where, columns


def merge(folders: list, out, roster=None) -> SimpleNamespace:
    """Merge shard outputs into ``out`` (which must not exist yet, or be empty); with ``roster`` (a path or
    an :class:`.lms.Roster`) also ``lms.csv`` (see :mod:`.lms`)."""
    from ..exercises import all_exercises
    from .lms import Roster, RosterError, build_export, load_roster, write_export

    out = Path(out)
    runs, where, columns = plan_merge([Path(f) for f in folders])
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not empty; merge into a new folder")
    try:
        roster = roster if roster is None or isinstance(roster, Roster) else load_roster(roster)
    except RosterError as e:
        raise UsageError(str(e)) from None
    lms = None
    exercises = [ex for ex in all_exercises() if ex.notebook in columns]
    by_nb: dict = {}
    for ex in exercises:
        by_nb.setdefault(ex.notebook, []).append(ex)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merge-", dir=parent))
    except OSError as e:
        raise UsageError(f"cannot write next to {out}: {e.strerror or e}") from None
    try:
        for sub in ("results", "feedback", STATE_DIR):
            (tmp / sub).mkdir()
        ordered = []
        for name in sorted(where):  # an unsharded run orders learners by folder name too
            data = _learner_results(where[name], name)
            notebooks = dict(data.get("notebooks", {}))
            for stem in columns:
                if stem not in notebooks:
                    notebooks[stem] = _missing_notebook(stem, by_nb.get(stem, []))
            st = SimpleNamespace(name=name, notes=data.get("notes", []))
            res = _student_result(st, notebooks, exercises, columns)
            safe = safe_name(name)
            R.atomic_write(tmp / "results" / f"{safe}.json", R.result_json(res))
            R.atomic_write(tmp / "feedback" / f"{safe}.html", R.feedback_html(res))
            ordered.append(res)
        ids = [ex.id for ex in exercises]
        R.atomic_write(tmp / "grades.csv", R.grades_csv(ordered, ids))
        if ordered and ids:
            R.atomic_write(tmp / "summary.png", R.summary_png(ordered, ids), binary=True)
        if roster is not None:
            lms = build_export(roster, ordered, columns)
            write_export(tmp, lms)
        first = runs[0][1]
        R.atomic_write(tmp / STATE_DIR / "run.json", json.dumps(
            dict(first, shard=[1, 1], students=sorted(where), everyone=sorted(where), notebooks=columns,
                 merged_from=[str(f) for f, _ in runs]), indent=1, ensure_ascii=False) + "\n")
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SimpleNamespace(out=out, students=len(ordered), shards=len(runs), results=ordered, exercise_ids=ids,
                           lms=lms, roster=roster)


def _learner_results(folder: Path, name: str) -> dict:
    """The learner's results file in a shard's output (found by name, whatever its file name)."""
    path = folder / "results" / f"{safe_name(name)}.json"
    candidates = [path] if path.exists() else sorted((folder / "results").glob("*.json"))
    for p in candidates:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("student") == name and data.get("version") == RESULTS_VERSION:
            return data
    raise UsageError(f"{folder}: no readable results file for learner {name!r}; grade this shard again "
                     f"(the same command resumes it)")
