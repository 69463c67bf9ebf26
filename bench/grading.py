"""Benchmark: grading a class with ``course grade`` vs. plainly executing the same notebooks.

    python bench/grading.py                        # default: 3 learners x every unit, and in 2 shards
    python bench/grading.py --learners 30 --units 01,02,03,04,05,06,07,08,09,10   # the whole-course class

It builds a class of synthetic learners from ``solutions/`` and ``notebooks/`` (the learner version is
built in memory with ``course_lib.authoring`` when ``notebooks/`` lacks it):

* ``correct``  every exercise cell holds the solution;
* ``partial``  every other exercise is solved, the rest are still the stubs;
* ``broken``   a cell that raises right after the imports, a syntax error in the first exercise, the
               remaining exercises solved;

learner ``i`` gets profile ``i % 3``. It then measures

1. ``course grade CLASS --out OUT --seed S --jobs J`` (the command line, as an instructor runs it): the
   autograder, with its sandbox, limits and hidden cases. It skips cells tagged ``train`` (demo training
   and the demos that need the trained model, which no exercise needs);
2. the same class in ``--shards N`` shards: ``course grade ... --shard I/N --seed S --jobs J/N``, the N
   shards side by side on this machine, then ``course grade merge``; the merged ``grades.csv`` is compared
   byte for byte with the one of step 1;
3. the same notebooks executed one after another with ``nbclient`` (a fresh kernel each, errors allowed
   so that every cell runs, slow/network cells blanked as ``course execute`` does; ``train`` cells run,
   as in a learner's Run All).

It prints seconds per notebook per unit (the grader's from the wall-clock and CPU seconds each
notebook's result records) with each unit's ratio to the median unit (target: <= 2x), the whole-class
ratio grading / plain execution (target: <= 0.25), the wall time of 1 vs N shards, and the load average
sampled while it ran. ``--baseline-sample K`` (default 1; 0 = all) executes only K notebooks per unit
(learners 0..K-1, so K=3 covers the three profiles) and scales up by the number of notebooks of that
unit, which keeps the default run practical on 2 shared cores; the output says when the baseline is
such an estimate. ``--shards 1`` leaves out step 2, ``--baseline-sample -1`` step 3.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
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


class LoadSampler:
    """The 1-minute load average, sampled every few seconds while the benchmark runs."""

    def __init__(self, every: float = 5.0):
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def describe(self) -> str:
        self._stop.set()
        s = self.samples
        return f"load average (1 min) while measuring: min {min(s):.1f}, mean {statistics.fmean(s):.1f}, max {max(s):.1f}"


def _grade_command(class_dir: Path, out: Path, seed: int, jobs: int, units: list, shard=None) -> list:
    """``course grade``; ``--units`` names the class's units, so that a shard whose learners happen to
    lack a unit (or a shard with no learners) still grades the same exercise definitions."""
    cmd = [sys.executable, "-m", "course_lib", "grade", str(class_dir), "--out", str(out), "--seed", str(seed),
           "--jobs", str(jobs), "--units", ",".join(u[:2] for u in units), "--quiet"]
    return cmd + (["--shard", f"{shard[0]}/{shard[1]}"] if shard else [])


def _finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{err.strip()}")


def run_grader(class_dir: Path, out: Path, seed: int, jobs: int, units: list) -> float:
    """Wall-clock seconds of one ``course grade`` run."""
    start = time.perf_counter()
    proc = subprocess.Popen(_grade_command(class_dir, out, seed, jobs, units), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _finish(proc, "course grade")
    return time.perf_counter() - start


def run_shards(class_dir: Path, work: Path, seed: int, jobs: int, units: list, n: int) -> dict:
    """Grade the class in ``n`` shards side by side (``jobs // n`` each), then merge them."""
    outs = [work / f"shard-{i}-of-{n}" for i in range(1, n + 1)]
    start = time.perf_counter()
    procs = [subprocess.Popen(_grade_command(class_dir, out, seed, max(1, jobs // n), units, (i, n)), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i, out in enumerate(outs, 1)]
    ends = []
    for i, proc in enumerate(procs, 1):
        _finish(proc, f"course grade --shard {i}/{n}")
        ends.append(time.perf_counter() - start)  # a shard that ended earlier is counted when it is waited for
    t_shards = time.perf_counter() - start
    merged = work / f"merged-{n}"
    m_start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "course_lib", "grade", "merge", *map(str, outs), "--out",
                             str(merged), "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _, err = proc.communicate()
    t_merge = time.perf_counter() - m_start
    sizes = [len(list((out / "results").glob("*.json"))) for out in outs]
    refused = err.strip().splitlines()[-1] if proc.returncode != 0 and err.strip() else None
    if proc.returncode != 0 and not refused:
        refused = f"course grade merge failed (exit {proc.returncode})"
    return {"n": n, "jobs": max(1, jobs // n), "sizes": sizes, "shards": t_shards, "merge": t_merge,
            "total": t_shards + t_merge, "refused": refused,
            "grades": None if refused else (merged / "grades.csv").read_bytes()}


def read_results(out: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]


def _met(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def _median_line(label: str, wall: dict, cpu: dict) -> str:
    """The slowest unit against the median unit, on wall clock and on CPU time."""
    med_w, med_c = statistics.median(wall.values()), statistics.median(cpu.values())
    worst_w, worst_c = max(wall, key=wall.get), max(cpu, key=cpu.get)
    rw, rc = wall[worst_w] / med_w, cpu[worst_c] / med_c
    return (f"{label}: slowest unit {worst_w[:2]} at {rw:.2f}x the median unit's wall clock ({med_w:.1f} s), "
            f"slowest {worst_c[:2]} at {rc:.2f}x its CPU time ({med_c:.2f} s)   target <= 2: wall {_met(rw, 2)}, "
            f"CPU {_met(rc, 2)}")


def plain_baseline(made: list, sample: int) -> tuple:
    """(total seconds, seconds per notebook per unit, how it was obtained)."""
    plan = made
    if sample:
        seen: Counter = Counter()
        plan = []
        for item in made:
            if seen[item[1]] < sample:
                seen[item[1]] += 1
                plan.append(item)
    per_unit = defaultdict(list)
    start = time.perf_counter()
    for i, (path, stem, _) in enumerate(plan, 1):
        per_unit[stem].append(execute_plainly(path))
        print(f"\r  plain execution {i}/{len(plan)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    measured = time.perf_counter() - start
    per_unit = {stem: statistics.fmean(v) for stem, v in per_unit.items()}
    if not sample:
        return measured, per_unit, "measured on every notebook"
    n_unit = Counter(stem for _, stem, _ in made)
    total = sum(per_unit[stem] * n_unit[stem] for stem in per_unit)
    return total, per_unit, f"estimated from {len(plan)} executed notebooks ({sample} per unit)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--learners", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--units", default="", help="comma-separated units (default: every unit with a solution)")
    p.add_argument("--baseline-sample", type=int, default=1,
                   help="execute only K notebooks per unit for the baseline, and scale up (0: every notebook; "
                        "-1: no baseline)")
    p.add_argument("--shards", type=int, default=2, help="also grade the class in N shards and merge (1: don't)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--keep", default=None, help="keep the class and the grading output in this folder")
    args = p.parse_args(argv)
    if args.learners < 1:
        p.error(f"--learners must be at least 1, got {args.learners}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.shards < 1:
        p.error(f"--shards must be at least 1, got {args.shards}")

    units = [u.strip().zfill(2) for u in args.units.split(",") if u.strip()]
    sources = unit_sources(units)
    if not sources:
        p.error(f"no unit with exercises among --units {args.units}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-grading-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    class_dir, out_dir = work / "class", work / "out"
    made = build_class(class_dir, args.learners, sources)
    n_nb = len(made)
    print(f"class: {args.learners} learners x {len(sources)} units ({', '.join(s[:2] for s in sorted(sources))}) "
          f"= {n_nb} notebooks")
    print(f"machine: {os.cpu_count()} cores; load average at the start {os.getloadavg()[0]:.1f}")
    load = LoadSampler()

    t_grade = run_grader(class_dir, out_dir, args.seed, args.jobs, sorted(sources))
    results = read_results(out_dir)
    statuses = Counter(e["status"] for r in results for e in r["exercises"].values())
    print(f"graded in {t_grade:.1f} s with --jobs {args.jobs}: {t_grade / n_nb:.2f} s per notebook; "
          f"statuses: {dict(sorted(statuses.items()))}")

    wall, cpu = defaultdict(list), defaultdict(list)
    for r in results:
        for stem, nb in r["notebooks"].items():
            if nb.get("status") == "graded":
                wall[stem].append(float(nb.get("seconds", 0.0)))
                cpu[stem].append(float(nb.get("cpu_seconds", 0.0) or 0.0))
    wall = {stem: statistics.fmean(v) for stem, v in wall.items() if v}
    cpu = {stem: statistics.fmean(v) for stem, v in cpu.items() if v}
    med_w, med_c = statistics.median(wall.values()), statistics.median(cpu.values())
    print()
    print(f"per unit, seconds per notebook (grader: the wall clock and CPU time that each notebook's result "
          f"records, inside the --jobs {args.jobs} run; mean over the unit's {args.learners} notebooks)")
    print(f"{'unit':5} {'grade s':>8} {'x median':>9} {'grade cpu s':>12} {'x median':>9}")
    for stem in sorted(wall):
        print(f"{stem[:2]:5} {wall[stem]:>8.1f} {wall[stem] / med_w:>9.2f} {cpu[stem]:>12.2f} {cpu[stem] / med_c:>9.2f}")
    print(_median_line(f"units {', '.join(s[:2] for s in sorted(wall))}", wall, cpu))
    early = {s for s in wall if s[:2] <= "10"}
    if early and early != set(wall) and len(early) > 1:
        print(_median_line("units 01-10 only", {s: wall[s] for s in early}, {s: cpu[s] for s in early}))
    sys.stdout.flush()

    if args.shards > 1:
        grades_1 = (out_dir / "grades.csv").read_bytes()
        print()
        print(f"shards: the same class and seed in N shards run side by side on this machine (--jobs {args.jobs}/N "
              f"each), then `course grade merge`")
        print(f"{'N':>2} {'learners per shard':>19} {'shards s':>9} {'merge s':>8} {'total s':>8} {'/ N=1':>6}  "
              f"grades.csv")
        print(f"{1:>2} {args.learners:>19} {t_grade:>9.1f} {'-':>8} {t_grade:>8.1f} {1:>6.2f}  (the run above)")
        sys.stdout.flush()
        for n in range(2, args.shards + 1):
            row = run_shards(class_dir, work, args.seed, args.jobs, sorted(sources), n)
            same = ("byte-identical to N=1" if row["grades"] == grades_1 else
                    f"merge refused: {row['refused']}" if row["refused"] else "DIFFERS from N=1")
            print(f"{row['n']:>2} {', '.join(map(str, row['sizes'])):>19} {row['shards']:>9.1f} {row['merge']:>8.1f} "
                  f"{row['total']:>8.1f} {row['total'] / t_grade:>6.2f}  {same}", flush=True)

    if args.baseline_sample >= 0:
        t_plain, plain_per_unit, how = plain_baseline(made, args.baseline_sample)
        print()
        print("per unit, seconds per notebook: nbclient (train cells included) against the grader")
        print(f"{'unit':5} {'nbclient s':>11} {'grade s':>8} {'grade/nbclient':>15}")
        for stem in sorted(plain_per_unit):
            g = wall.get(stem, float("nan"))
            print(f"{stem[:2]:5} {plain_per_unit[stem]:>11.1f} {g:>8.1f} {g / plain_per_unit[stem]:>15.2f}")
        print()
        print(f"{'':34} {'total s':>9} {'s/notebook':>11}")
        print(f"{'course grade --jobs ' + str(args.jobs):34} {t_grade:>9.1f} {t_grade / n_nb:>11.2f}")
        print(f"{'nbclient, one after another':34} {t_plain:>9.1f} {t_plain / n_nb:>11.2f}   ({how})")
        ratio = t_grade / t_plain
        print(f"ratio grading / plain execution: {ratio:.2f}  (target <= 0.25: {_met(ratio, 0.25)})")
    print()
    print(load.describe())
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"class and output kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
