"""The ``course`` command (also ``python -m course_lib``).

    course build [--check]           notebooks/ from solutions/
    course progress [FOLDER]         a learner's progress table (default: notebooks/)
    course grade SUBMISSIONS --out OUT   the autograder (see course_lib.grading)
    course grade --list-exercises
    course gradescope build --out DIR    Gradescope's autograder.zip (see course_lib.grading.gradescope)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _build(args) -> int:
    from .authoring import BuildError, build_all, first_difference, write_all

    try:
        built = build_all(Path(args.src))
    except BuildError as e:
        print(f"course build: {e}", file=sys.stderr)
        return 1
    if args.check:
        diff = first_difference(built, Path(args.dst))
        if diff:
            print(f"course build --check: {diff}; run `make notebooks` (course build) to regenerate",
                  file=sys.stderr)
            return 1
        print(f"course build --check: {args.dst} is up to date ({len(built)} notebooks)")
        return 0
    try:
        changed = write_all(built, Path(args.dst))
    except OSError as e:
        print(f"course build: cannot write {args.dst}: {e}", file=sys.stderr)
        return 1
    print(f"course build: {len(built)} notebooks in {args.dst}, {len(changed)} changed"
          + (f": {', '.join(changed)}" if changed else ""))
    return 0


def _progress(args) -> int:
    from .progress import format_table, progress

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"course progress: {folder}: no such folder", file=sys.stderr)
        return 2
    print(format_table(progress(folder), folder))
    return 0


def _execute(args) -> int:
    from .authoring import NOTEBOOK_RE, BuildError, execute_solutions

    paths = []
    for p in args.paths:
        p = Path(p)
        if p.is_dir():
            paths += sorted(x for x in p.glob("*.ipynb") if NOTEBOOK_RE.match(x.name))
        elif p.is_file():
            paths.append(p)
        else:
            print(f"course execute: {p}: no such file or folder", file=sys.stderr)
            return 2
    try:
        for name, seconds in execute_solutions(paths):
            print(f"course execute: {name} ran in {seconds:.1f} s")
    except BuildError as e:
        print(f"course execute: {e}", file=sys.stderr)
        return 1
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="Transformers from Scratch: course tools")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="generate learner notebooks from solutions")
    b.add_argument("--src", default="solutions", help="solutions folder (default: solutions)")
    b.add_argument("--dst", default="notebooks", help="learner notebooks folder (default: notebooks)")
    b.add_argument("--check", action="store_true", help="only check that DST is up to date")
    b.set_defaults(func=_build)

    ex = sub.add_parser("execute", help="run solution notebooks and store their outputs")
    ex.add_argument("paths", nargs="*", default=["solutions"])
    ex.set_defaults(func=_execute)

    pr = sub.add_parser("progress", help="show a learner's progress over their notebooks")
    pr.add_argument("folder", nargs="?", default="notebooks")
    pr.set_defaults(func=_progress)

    try:
        from .grading import cli as grading_cli
    except ImportError:
        grading_cli = None
    if grading_cli is not None:
        g = sub.add_parser("grade", help="grade a class of submissions",
                           description=(grading_cli.__doc__ or "").strip().splitlines()[0] if grading_cli.__doc__ else None)
        grading_cli.add_arguments(g)
        g.set_defaults(func=grading_cli.run)
        from .grading import gradescope

        gs = sub.add_parser("gradescope", help="Gradescope's autograder bundle: course gradescope build --out DIR")
        gradescope.add_arguments(gs)
        gs.set_defaults(func=gradescope.cli)
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
