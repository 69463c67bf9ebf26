"""Benchmark: grading a class with ``course grade`` vs. plainly executing the same notebooks.

    python bench/grading.py                        # short default: 3 learners x every unit
    python bench/grading.py --learners 30 --units 01,02,03,04,05,06,07,08,09,10   # the whole-course class

It builds a class of synthetic learners from ``solutions/`` and ``notebooks/`` (the learner version is
built in memory with ``course_lib.authoring`` when ``notebooks/`` lacks it):

* ``correct``  every exercise cell holds the solution;
* ``partial``  every other exercise is solved, the rest are still the stubs;
* ``broken``   a cell that raises right after the imports, a syntax error in the first exercise, the
               remaining exercises solved;

learner ``i`` gets profile ``i % 3``. It then times

1. ``grade(CLASS, OUT, jobs=N)``: the autograder, with its sandbox, limits and hidden cases;
2. executing every one of the same notebooks, one after another, with ``nbclient`` (a fresh kernel
   each, errors allowed so that every cell runs, slow/network cells blanked as ``course execute`` does).

and prints a table of seconds per notebook per unit for both (the grader's from the wall-clock seconds
each notebook's result records), the slowest unit against the median unit (target: <= 2x), and the
whole-class ratio grading / plain execution (target: <= 0.25). The grader skips cells tagged ``train``
(demo training, which no exercise needs); plain execution runs them, as a learner's Run All does.
``--baseline-sample K`` (default 1; 0 = all) executes only K notebooks per unit and scales up by the number
of notebooks of that unit, which keeps the default run practical on 2 shared cores; the output says when
the baseline is such an estimate.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from course_lib.authoring import SKIP_TAGS, BuildError, build_notebook, exercise_id_of, read_notebook  # noqa: E402
from course_lib.exercises import all_exercises, known_ids  # noqa: E402

PROFILES = ("correct", "partial", "broken")


def _exercise_cells(nb, ids: set) -> dict:
    """exercise id -> index of its cell (header line, or the cell defining the function)."""
    found = {}
    functions = {ex.function: ex.id for ex in all_exercises() if ex.id in ids}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ex_id = exercise_id_of(cell.source)
        if ex_id in ids:
            found[ex_id] = i
            continue
        for name, fid in functions.items():
            if fid not in found and (f"def {name}(" in cell.source or f"class {name}(" in cell.source):
                found[fid] = i
    return found


def unit_sources(units: list) -> dict:
    """stem -> (learner notebook, {exercise id: solution source})."""
    out = {}
    for sol_path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        stem = sol_path.stem
        if units and stem[:2] not in units:
            continue
        ids = {ex.id for ex in all_exercises() if ex.notebook == stem}
        if not ids:
            continue
        sol = read_notebook(sol_path)
        learner_path = ROOT / "notebooks" / sol_path.name
        try:
            learner = read_notebook(learner_path) if learner_path.exists() else build_notebook(sol, sol_path, known_ids())
        except BuildError as e:
            print(f"  skipping {stem}: {e}")
            continue
        sol_cells = _exercise_cells(sol, ids)
        solutions = {ex_id: sol.cells[i].source for ex_id, i in sol_cells.items()}
        if set(solutions) != set(_exercise_cells(learner, ids)):
            print(f"  skipping {stem}: its exercise cells in solutions/ and notebooks/ differ")
            continue
        out[stem] = (learner, solutions)
    return out


def make_learner(learner_nb, solutions: dict, profile: str):
    nb = copy.deepcopy(learner_nb)
    cells = _exercise_cells(nb, set(solutions))
    order = sorted(cells, key=cells.get)
    for k, ex_id in enumerate(order):
        cell = nb.cells[cells[ex_id]]
        if profile == "correct" or (profile == "partial" and k % 2 == 0):
            cell.source = solutions[ex_id]
        elif profile == "broken":
            cell.source = solutions[ex_id] + ("\n    return (  # an unfinished line" if k == 0 else "")
    if profile == "broken":
        first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell('raise RuntimeError("a cell that breaks")'))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def build_class(folder: Path, n: int, units: dict) -> list:
    """Write the class; return [(path, stem, profile)]."""
    made = []
    for i in range(n):
        profile = PROFILES[i % 3]
        d = folder / f"learner{i:02d}"
        d.mkdir(parents=True)
        for stem, (learner, solutions) in units.items():
            path = d / f"{stem}.ipynb"
            nbformat.write(make_learner(learner, solutions, profile), str(path))
            made.append((path, stem, profile))
    return made


def execute_plainly(path: Path) -> float:
    """Seconds to run one notebook top to bottom with nbclient in a fresh kernel."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and set(cell.metadata.get("tags", [])) & set(SKIP_TAGS):
            cell.source = ""
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute(stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--learners", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--units", default="", help="comma-separated units (default: every unit with a solution)")
    p.add_argument("--baseline-sample", type=int, default=1,
                   help="execute only K notebooks per unit for the baseline, and scale up (0: every notebook)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--keep", default=None, help="keep the class and the grading output in this folder")
    args = p.parse_args(argv)

    from course_lib.grading import grade

    units = [u.strip().zfill(2) for u in args.units.split(",") if u.strip()]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-grading-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    class_dir, out_dir = work / "class", work / "out"
    sources = unit_sources(units)
    made = build_class(class_dir, args.learners, sources)
    n_nb = len(made)
    print(f"class: {args.learners} learners x {len(sources)} units ({', '.join(sorted(sources))}) = {n_nb} notebooks")
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")

    start = time.perf_counter()
    summary = grade(class_dir, out_dir, seed=args.seed, jobs=args.jobs, progress=True)
    t_grade = time.perf_counter() - start
    statuses = defaultdict(int)
    for r in summary.results:
        for e in r["exercises"].values():
            statuses[e["status"]] += 1
    print(f"graded in {t_grade:.1f} s with --jobs {args.jobs}: {t_grade / n_nb:.2f} s per notebook; "
          f"statuses: {dict(sorted(statuses.items()))}")

    per_group = defaultdict(list)
    counts = defaultdict(int)
    for path, stem, profile in made:
        counts[(stem, profile)] += 1
    plan = made
    if args.baseline_sample:
        seen = defaultdict(int)
        plan = []
        for item in made:
            key = item[1]
            if seen[key] < args.baseline_sample:
                seen[key] += 1
                plan.append(item)
    start = time.perf_counter()
    for i, (path, stem, profile) in enumerate(plan, 1):
        per_group[(stem, profile)].append(execute_plainly(path))
        print(f"\r  plain execution {i}/{len(plan)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    t_measured = time.perf_counter() - start
    if args.baseline_sample:
        per_unit_plain = defaultdict(list)
        for (stem, _), v in per_group.items():
            per_unit_plain[stem] += v
        n_unit = defaultdict(int)
        for _, stem, _ in made:
            n_unit[stem] += 1
        t_plain = sum(statistics.fmean(v) * n_unit[stem] for stem, v in per_unit_plain.items())
        how = f"estimated from {len(plan)} executed notebooks ({args.baseline_sample} per unit)"
    else:
        t_plain = t_measured
        how = "measured on every notebook"
    grade_per_unit = defaultdict(list)
    cpu_per_unit = defaultdict(list)
    for r in summary.results:
        for stem, nb in r["notebooks"].items():
            if nb.get("status") == "graded":
                grade_per_unit[stem].append(float(nb.get("seconds", 0.0)))
                cpu_per_unit[stem].append(float(nb.get("cpu_seconds", 0.0) or 0.0))
    plain_per_unit = {stem: statistics.fmean([x for (s, _), v in per_group.items() if s == stem for x in v])
                      for stem in sorted(sources) if any(s == stem for s, _ in per_group)}
    print()
    print(f"per unit, seconds per notebook (grader: wall clock of one notebook inside the --jobs {args.jobs} run)")
    print(f"{'unit':6} {'grade s':>8} {'grade cpu s':>12} {'nbclient s':>11} {'ratio':>6}")
    for stem in sorted(sources):
        g = statistics.fmean(grade_per_unit[stem]) if grade_per_unit[stem] else float("nan")
        c = statistics.fmean(cpu_per_unit[stem]) if cpu_per_unit[stem] else float("nan")
        pl = plain_per_unit.get(stem, float("nan"))
        print(f"{stem[:2]:6} {g:>8.1f} {c:>12.1f} {pl:>11.1f} {g / pl if pl else float('nan'):>6.2f}")
    means = [statistics.fmean(v) for v in grade_per_unit.values() if v]
    if means:
        med = statistics.median(means)
        worst = max(grade_per_unit, key=lambda k: statistics.fmean(grade_per_unit[k]) if grade_per_unit[k] else 0)
        print(f"slowest unit {worst[:2]}: {max(means) / med:.2f} x the median unit ({med:.1f} s)  (target <= 2)")
    print()
    print(f"{'':32} {'total s':>9} {'s/notebook':>11}")
    print(f"{'course grade --jobs ' + str(args.jobs):32} {t_grade:>9.1f} {t_grade / n_nb:>11.2f}")
    print(f"{'nbclient, one after another':32} {t_plain:>9.1f} {t_plain / n_nb:>11.2f}   ({how})")
    print(f"ratio grading / plain execution: {t_grade / t_plain:.2f}  (target <= 0.25)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"class and output kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
