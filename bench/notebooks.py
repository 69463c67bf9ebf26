"""Benchmark: how long each solution notebook takes, next to the time its text claims.

    python bench/notebooks.py [NN ...] [--src solutions]

Runs every solution notebook (or the units given, e.g. ``09 10``) top to bottom in a fresh kernel, as
``make execute`` does (cells tagged ``nbval-skip``, ``slow`` or ``network`` are skipped), in a temporary
folder so that nothing in ``solutions/`` changes, and prints two tables:

1. per notebook: the measured wall time, the CPU time of the kernel, the time spent in cells tagged
   ``train``, the course's target of a minute, and every bound the notebook itself states (e.g. "in
   this unit you train one in well under a minute").
2. per claim in the text: every markdown cell that says how long something takes ("500 steps take 10 to
   20 seconds", "in well under a minute") is matched with the code cell right after it, and that cell's
   measured time is printed beside the claim.

Nothing is asserted: these machines are shared and their timings move 2x from minute to minute. The
README quotes this table with the date and the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.authoring import SKIP_TAGS, quiet_kernel_env  # noqa: E402

#: The course's target for every notebook: a minute on a laptop CPU (the syllabus names the units that
#: train models as the slow ones instead of promising it).
DEFAULT_CLAIM = ("target: a minute", 60.0)

# Phrases in the text that claim a duration, with the bound (seconds) each one promises.
_NUMBER = r"(\d+(?:\.\d+)?)"
CLAIM_PATTERNS = [
    (re.compile(rf"{_NUMBER}\s*(?:to|-|–)\s*{_NUMBER}\s*(?:seconds|s)\b"), lambda m: float(m.group(2))),
    (re.compile(rf"(?:under|at most|within|about|in)\s+{_NUMBER}\s*(?:seconds|s)\b"), lambda m: float(m.group(1))),
    (re.compile(r"(?:well )?under a minute"), lambda m: 60.0),
    (re.compile(rf"(?:under|at most|within|about)\s+{_NUMBER}\s*minutes? to (?:run|train)"),
     lambda m: 60.0 * float(m.group(1))),
]
# Only sentences about running or training count (not "about 90 minutes" of reading).
RUN_WORDS = re.compile(r"\b(runs?|train(?:s|ed|ing)?|takes?|steps?|execute[sd]?|CPU|laptop)\b", re.I)


@dataclass
class Claim:
    text: str
    seconds: float
    cell: int  # index of the code cell the claim is about, -1 for the whole notebook
    training: bool = False  # a notebook-wide claim about training is held against the `train` cells


@dataclass
class Result:
    name: str
    wall: float = 0.0
    cpu: float = 0.0
    train: float = 0.0
    cell_times: dict = field(default_factory=dict)
    claims: list = field(default_factory=list)
    error: str = ""


def find_claims(nb) -> list:
    """Every duration the markdown claims, attached to the next code cell (or to the whole notebook)."""
    claims = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for sentence in re.split(r"(?<=[.!?])\s+|\n", cell.source):
            if not RUN_WORDS.search(sentence):
                continue
            for pattern, bound in CLAIM_PATTERNS:
                m = pattern.search(sentence)
                if m:
                    whole = bool(re.search(r"\b(notebook|this unit|the unit)\b", sentence, re.I))
                    target = -1 if whole else next(
                        (j for j in range(i + 1, len(cells)) if cells[j].cell_type == "code"), -1)
                    training = bool(re.search(r"\btrain", sentence, re.I))
                    claims.append(Claim(" ".join(sentence.split())[:90], bound(m), target, training))
                    break
    return claims


def run_notebook(path: Path, timeout: int) -> Result:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    result = Result(path.stem, claims=find_claims(nb))
    keep = [i for i, c in enumerate(nb.cells) if not set(c.metadata.get("tags", [])) & set(SKIP_TAGS)]
    original_index = {id(nb.cells[i]): i for i in keep}
    nb.cells = [nb.cells[i] for i in keep]
    starts: dict = {}

    def on_start(cell, cell_index):
        starts[id(cell)] = time.perf_counter()

    def on_executed(cell, cell_index, execute_reply=None):
        took = time.perf_counter() - starts.get(id(cell), time.perf_counter())
        result.cell_times[original_index[id(cell)]] = took
        if "train" in cell.metadata.get("tags", []):
            result.train += took

    with tempfile.TemporaryDirectory() as tmp:
        env = quiet_kernel_env(Path(tmp))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": tmp}},
                                on_cell_start=on_start, on_cell_executed=on_executed)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        try:
            client.execute()
        except Exception as e:  # a failing notebook still gets a row
            name = getattr(e, "ename", type(e).__name__)
            value = getattr(e, "evalue", str(e).splitlines()[0] if str(e) else "")
            result.error = f"{name}: {value}"[:120]
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        result.wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def notebook_claims(result: Result) -> list:
    """``(text, bound, measured)`` for the syllabus's promise and each notebook-wide claim."""
    rows = [(DEFAULT_CLAIM[0], DEFAULT_CLAIM[1], result.wall)]
    for c in result.claims:
        if c.cell == -1:
            rows.append((("training " if c.training else "") + c.text, c.seconds,
                         result.train if c.training else result.wall))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("units", nargs="*", help="unit numbers to run (default: all)")
    parser.add_argument("--src", default=str(ROOT / "solutions"), help="folder of solution notebooks")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell before giving up")
    args = parser.parse_args(argv)
    src = Path(args.src)
    if not src.is_dir():
        parser.error(f"--src {src} is not a folder")
    paths = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if args.units:
        bad = [u for u in args.units if not re.fullmatch(r"\d\d", u)]
        if bad:
            parser.error(f"units are two digits like 09, got {bad}")
        paths = [p for p in paths if p.name[:2] in set(args.units)]
    if not paths:
        parser.error(f"no notebooks to run in {src}")
    if shutil.which("jupyter") is None and not (Path(sys.executable).parent / "jupyter").exists():
        print("note: jupyter is not on PATH; using this Python's kernel", file=sys.stderr)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f} at start")
    results = []
    for p in paths:
        print(f"running {p.name} ...", file=sys.stderr, flush=True)
        results.append(run_notebook(p, args.timeout))

    print()
    print(f"{'notebook':<28} {'wall s':>7} {'cpu s':>7} {'train s':>8}  {'bound s':>7} {'verdict':<7} claim")
    for r in results:
        for k, (text, bound, measured) in enumerate(notebook_claims(r)):
            verdict = "ERROR" if r.error else ("within" if measured <= bound else "OVER")
            head = (f"{r.name:<28} {r.wall:7.1f} {r.cpu:7.1f} {r.train:8.1f}" if k == 0 else " " * 53)
            print(f"{head}  {bound:7.0f} {verdict:<7} {text}")
        if r.error:
            print(f"{'':<30}{r.error}")
    total = sum(r.wall for r in results)
    print(f"{'total':<28} {total:7.1f}")

    cell_claims = [(r, c) for r in results for c in r.claims if c.cell >= 0]
    if cell_claims:
        print()
        print(f"{'notebook':<28} {'cell':>4} {'measured s':>10} {'bound s':>7}  claim")
        for r, c in cell_claims:
            took = r.cell_times.get(c.cell)
            shown = f"{took:10.1f}" if took is not None else f"{'skipped':>10}"
            print(f"{r.name:<28} {c.cell:4d} {shown} {c.seconds:7.0f}  {c.text}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
