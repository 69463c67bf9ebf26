"""Benchmark: grading a class with ``course grade`` vs. plainly executing the same notebooks.

    python bench/grading.py [--learners 30] [--jobs 2] [--units 01,02,...] [--baseline-sample K]

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

and prints seconds per notebook for both and their ratio (target: <= 1.0). ``--baseline-sample K``
executes only K learners per (unit, profile) and scales up by the number of learners of that profile,
which keeps a large class affordable; the output says when the baseline is such an estimate.
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
    p.add_argument("--learners", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--units", default="", help="comma-separated units (default: every unit with a solution)")
    p.add_argument("--baseline-sample", type=int, default=0,
                   help="execute only K learners per unit and profile for the baseline, and scale up")
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
            key = (item[1], item[2])
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
        t_plain = sum(statistics.fmean(v) * counts[k] for k, v in per_group.items())
        how = f"estimated from {len(plan)} executed notebooks ({args.baseline_sample} per unit and profile)"
    else:
        t_plain = t_measured
        how = "measured on every notebook"
    print()
    print(f"{'':32} {'total s':>9} {'s/notebook':>11}")
    print(f"{'course grade --jobs ' + str(args.jobs):32} {t_grade:>9.1f} {t_grade / n_nb:>11.2f}")
    print(f"{'nbclient, one after another':32} {t_plain:>9.1f} {t_plain / n_nb:>11.2f}   ({how})")
    print(f"ratio grading / plain execution: {t_grade / t_plain:.2f}  (target <= 1.0)")
    print()
    print("per unit, plain execution s/notebook:  " + "  ".join(
        f"{stem[:2]}: {statistics.fmean([x for (s, _), v in per_group.items() if s == stem for x in v]):.1f}"
        for stem in sorted(sources)))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"class and output kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
