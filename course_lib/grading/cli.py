"""Grade a class of submitted notebooks safely, fast and reproducibly.

    course grade SUBMISSIONS --out OUT [--seed N] [--jobs N] [--roster ROSTER.csv]
    course grade --list-exercises

SUBMISSIONS holds one folder per student with any of the course notebooks (``<student>/02_softmax_sampling.ipynb``),
or is nbgrader's ``submitted/`` folder (``<student>/<assignment>/02_softmax_sampling.ipynb``).
OUT receives ``grades.csv``, ``results/<student>.json``, ``feedback/<student>.html`` and ``summary.png``;
with ``--roster``, also ``lms.csv`` for the LMS (see :mod:`.lms`).
Exit status 0 when grading completed (even when submissions were broken); 2 on misuse, with one line
saying why.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .sandbox import Limits


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument("submissions", nargs="*", metavar="SUBMISSIONS",
                   help="folder with one sub-folder per student (not needed with --list-exercises); "
                        "or `merge OUT_1 ... OUT_N` to join the outputs of sharded runs into --out")
    p.add_argument("--out", default="grading-out", help="output folder (default: grading-out)")
    p.add_argument("--list-exercises", action="store_true", help="print every exercise id, notebook and points")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden cases, to reproduce a run (default: the seed stored in OUT by an "
                        "earlier run, else a fresh secret one)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="grade only shard I of N (1-based; a stable hash of each learner's folder name); "
                        "needs --seed. Join the shards with `course grade merge`")
    p.add_argument("--roster", default=None, metavar="ROSTER.csv",
                   help="also write OUT/lms.csv for Canvas's or Moodle's grade import; ROSTER.csv has the columns "
                        "folder,lms_id[,name] (see README, 'The LMS')")
    p.add_argument("--new-seed", action="store_true", help="draw a fresh secret seed even if OUT has one "
                                                           "(re-grades everything)")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                   help="parallel workers (default: the number of cores)")
    p.add_argument("--units", default=None,
                   help="comma-separated units to grade, e.g. 02,03 (default: every unit anybody submitted)")
    p.add_argument("--regrade", action="append", default=[], metavar="STUDENT",
                   help="grade this student again even if their notebooks did not change (repeatable)")
    p.add_argument("--all-cells", action="store_true",
                   help="run every cell, not only the cells up to the last exercise cell")
    g = p.add_argument_group("limits")
    g.add_argument("--cell-timeout", type=float, default=d.cell_timeout,
                   help=f"CPU seconds per cell ({d.cell_timeout:g}); time limits count CPU time, so a busy "
                        f"machine grades like an idle one")
    g.add_argument("--exercise-timeout", type=float, default=d.exercise_timeout,
                   help=f"CPU seconds for all hidden calls of one exercise ({d.exercise_timeout:g})")
    g.add_argument("--notebook-timeout", type=float, default=d.notebook_timeout,
                   help=f"CPU seconds per notebook, restarts included ({d.notebook_timeout:g})")
    g.add_argument("--wall-factor", type=float, default=d.wall_factor,
                   help=f"wall-clock backstop for code that sleeps or blocks, as a multiple of each CPU limit "
                        f"({d.wall_factor:g})")
    g.add_argument("--memory-mb", type=int, default=d.memory_mb, help=f"address space per worker ({d.memory_mb})")
    g.add_argument("--max-procs", type=int, default=d.max_procs,
                   help=f"processes and threads per worker, when it runs as its own user ({d.max_procs})")
    g.add_argument("--max-value-mb", type=int, default=d.max_value_mb, help=f"largest output of one call ({d.max_value_mb})")
    s = p.add_argument_group("isolation")
    x = s.add_mutually_exclusive_group()
    x.add_argument("--no-sandbox", action="store_true",
                   help="do not use bubblewrap even if it is installed (limits and a scratch folder only)")
    x.add_argument("--require-sandbox", action="store_true", help="fail (exit 2) when bubblewrap is not usable")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary table")


def list_exercises(stream=None) -> int:
    from ..exercises import all_exercises

    stream = stream or sys.stdout
    exercises = all_exercises()
    w = max([len("exercise")] + [len(ex.id) for ex in exercises])
    n = max([len("notebook")] + [len(ex.notebook) for ex in exercises])
    print(f"{'exercise':<{w}}  {'notebook':<{n}}  points  kind      title", file=stream)
    for ex in exercises:
        print(f"{ex.id:<{w}}  {ex.notebook:<{n}}  {ex.points:>6g}  {ex.kind:<8}  {ex.title}", file=stream)
    print(f"{len(exercises)} exercises, {sum(ex.points for ex in exercises):g} points", file=stream)
    return 0


def _fail(msg: str) -> int:
    print(f"course grade: {msg}", file=sys.stderr)
    return 2


def _merge(folders: list, out: str, quiet: bool, roster=None) -> int:
    from .merge import merge
    from .runner import UsageError

    try:
        m = merge(folders, out, roster=roster)
    except UsageError as e:
        return _fail(f"merge: {e}")
    if m.lms is not None:
        print(m.lms.line(m.out))
        w = m.lms.warning(m.roster.path, again="merge again into a new --out folder")
        if w:
            print(f"warning: {w}", file=sys.stderr)
    print(f"course grade merge: {m.shards} shards, {m.students} students -> {m.out}/grades.csv")
    return 0


def run(args) -> int:
    if args.list_exercises:
        return list_exercises()
    if not args.submissions:
        return _fail("give the SUBMISSIONS folder (or --list-exercises)")
    if args.submissions[0] == "merge":
        return _merge(args.submissions[1:], args.out, args.quiet, args.roster)
    if len(args.submissions) > 1:
        return _fail(f"give one SUBMISSIONS folder, not {len(args.submissions)} "
                     f"(to join shards: course grade merge OUT_1 ... OUT_N --out OUT)")
    args.submissions = args.submissions[0]
    shard = None
    if args.shard is not None:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            return _fail(f"--shard {args.shard}: expected I/N, e.g. --shard 2/8")
        if n < 1 or not 1 <= i <= n:
            return _fail(f"--shard {args.shard}: the shard index must be between 1 and {max(n, 1)}")
        if args.seed is None:
            return _fail("--shard needs --seed S: every shard must draw the same hidden cases")
        shard = (i, n)
    units = [u.strip() for u in args.units.split(",") if u.strip()] if args.units else None
    limits = Limits(cell_timeout=args.cell_timeout, exercise_timeout=args.exercise_timeout,
                    notebook_timeout=args.notebook_timeout, memory_mb=args.memory_mb, max_procs=args.max_procs,
                    max_value_mb=args.max_value_mb, wall_factor=args.wall_factor)
    for name in ("cell_timeout", "exercise_timeout", "notebook_timeout", "memory_mb", "max_procs", "max_value_mb",
                 "wall_factor"):
        if getattr(limits, name) <= 0:
            return _fail(f"--{name.replace('_', '-')} must be positive")
    if args.jobs < 1:
        return _fail("--jobs must be at least 1")
    mode = "none" if args.no_sandbox else "bwrap" if args.require_sandbox else "auto"
    subs, out = Path(args.submissions), Path(args.out)
    if not subs.is_dir():  # the cheap checks first, before torch is imported
        return _fail(f"{subs}: no such folder (expected SUBMISSIONS/<student>/<NN_slug>.ipynb)")
    roster = None
    if args.roster is not None:
        from .lms import RosterError, load_roster

        if shard is not None:
            return _fail("--roster goes with the merge of the shards (course grade merge OUT_1 ... OUT_N --out OUT "
                         "--roster R), not with --shard: a shard grades only part of the class")
        try:
            roster = load_roster(args.roster)
        except RosterError as e:
            return _fail(str(e))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _fail(f"cannot write to the output folder {out}: {e.strerror or e}")
    from .report import summary_table
    from .runner import UsageError, grade

    try:
        summary = grade(Path(args.submissions), Path(args.out), seed=args.seed, new_seed=args.new_seed,
                        jobs=args.jobs, limits=limits, sandbox=mode, units=units, regrade=tuple(args.regrade),
                        progress=not args.quiet, run_all_cells=args.all_cells, shard=shard, roster=roster)
    except UsageError as e:
        return _fail(str(e))
    if not args.quiet:
        print(summary_table(summary.results, summary.exercise_ids, summary.isolation))
    else:
        print(summary.layout)
    if summary.lms is not None:
        print(summary.lms.line(summary.out))
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"course grade: {summary.students} students, {summary.graded_notebooks} notebooks graded, "
          f"{summary.reused_notebooks} unchanged and reused, in {summary.seconds:.1f} s -> {summary.out}/grades.csv")
    return 0
