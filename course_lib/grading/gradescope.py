"""Gradescope: build the autograder bundle, and turn the grader's results into Gradescope's json.

``course gradescope build --out DIR`` writes ``DIR/autograder.zip`` in Gradescope's autograder format
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). Gradescope unpacks the zip into
``/autograder/source``, runs ``setup.sh`` once, as root, when it builds the image (Ubuntu), then, for every
submission, puts the learner's files into ``/autograder/submission`` and runs ``run_autograder`` with the
working directory ``/autograder``. What the learner sees is ``/autograder/results/results.json``.

The bundle::

    setup.sh          apt: python3, venv, bubblewrap; a venv in /opt/course-venv; a CPU torch, then the course
    run_autograder    a thin script: python -m course_lib.grading.gradescope run (this module's run())
    course/           the course package, installable (pyproject.toml, README.md, course_lib/); no solutions
    autograder.json   what is graded: the units, their exercises (number, title, points), test visibility
    private/seed.json the seed of the hidden cases

``run_autograder`` grades the submission with the course's own grader (:func:`.runner.grade`: learner code
only in sandboxed workers, hidden cases and reference outputs only in the grader) and writes one
Gradescope test per exercise: ``name`` (exercise id and title), ``number`` (as in the notebook's heading),
``score``, ``max_score``, ``status`` (passed only when every hidden case and property passes), ``output``
(the learner-facing message of the feedback page, as text) and ``visibility``; the top-level ``output``
says what was graded. It honours ``AUTOGRADER_ROOT`` (default ``/autograder``), so it can be run in any
folder laid out like Gradescope's. It never fails without a ``results.json``: a submission without a
course notebook, a file that is not a notebook or a corrupt notebook scores 0 with a one-line message.

**The seed.** One seed per bundle, drawn secretly by ``build`` (or ``--seed S``), not one per submission:
every learner, every resubmission and Gradescope's "Regrade all submissions" meet the same hidden cases,
so a grade never changes because the dice did, and ``course grade SUBMISSIONS --seed S`` reproduces any
Gradescope grade locally. Learners never see the hidden inputs (only the messages, as in the feedback
page); the seed travels only inside the bundle, in ``private/``, which ``run_autograder`` makes the
grading run's output folder: the grader hides that folder from its workers (under bubblewrap it is not
mounted; without bubblewrap it is root-only and workers run as users of their own). Keep the zip away
from learners; if it leaks, build a new one (a new seed) and upload it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..exercises.check import mistake_label
from .sandbox import PROJECT_ROOT, Limits

BUNDLE_FORMAT = 1
VENV = "/opt/course-venv"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
LEARNER = "submission"          # the learner's folder name in the grading run (one learner per run)
MAX_LISTED = 5                  # files named in a one-line message

# The same words as the feedback page (report.py), one per status of the course's grader.
LABELS = {"passed": "passed", "partial": "partly right", "failed": "not yet right", "error": "error",
          "timeout": "too slow", "forbidden": "shortcut not allowed", "not_attempted": "not attempted",
          "missing": "missing"}


class BuildError(Exception):
    """``course gradescope build`` was used wrongly; the message is one line."""


# ---------------------------------------------------------------------------------------------------
# Building the bundle
# ---------------------------------------------------------------------------------------------------


@dataclass
class Built:
    zip_path: Path
    units: list
    exercises: int
    points: float
    seed_chosen: bool            # drawn here (True) or given with --seed (False)


def exercise_numbers(notebooks_dir: Path) -> dict:
    """``{exercise id: "02.1"}`` from the learner notebooks' headings (``### Exercise 02.1 — ...``), read
    in cell order: each exercise cell takes the number of the last exercise heading above it."""
    from ..authoring import exercise_id_of

    numbers: dict = {}
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        last = None
        for cell in cells:
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else str(src)
            if cell.get("cell_type") == "markdown":
                m = re.search(r"^#+\s*Exercise\s+(\d\d\.\d+)\b", src, flags=re.M)
                last = m.group(1) if m else last
            elif cell.get("cell_type") == "code":
                ex_id = exercise_id_of(src)
                if ex_id and last and ex_id not in numbers:
                    numbers[ex_id] = last
    return numbers


def _number_key(number: Optional[str], ex_id: str) -> tuple:
    if number:
        unit, k = number.split(".")
        return (unit, int(k), ex_id)
    return (ex_id[:2], 10**6, ex_id)


def course_config(units: Optional[list] = None, visibility: str = "visible") -> dict:
    """``autograder.json``: what the bundle grades, in the notebooks' order."""
    from ..exercises import all_exercises

    if visibility not in VISIBILITIES:
        raise BuildError(f"--visibility {visibility}: expected one of {', '.join(VISIBILITIES)}")
    exercises = all_exercises()
    known = sorted({ex.notebook[:2] for ex in exercises})
    wanted = known if not units else sorted({str(u).strip().zfill(2) for u in units if str(u).strip()})
    unknown = [u for u in wanted if u not in known]
    if unknown or not wanted:
        raise BuildError(f"--units {','.join(unknown) or '(empty)'}: no such unit; the course has units "
                         f"{', '.join(known)}")
    numbers = exercise_numbers(PROJECT_ROOT / "notebooks")
    chosen = [ex for ex in exercises if ex.notebook[:2] in wanted]
    chosen.sort(key=lambda ex: _number_key(numbers.get(ex.id), ex.id))
    return {
        "format": BUNDLE_FORMAT,
        "units": wanted,
        "notebooks": sorted({ex.notebook for ex in chosen}),
        "course_notebooks": sorted({ex.notebook for ex in exercises}),  # to recognise other units' notebooks
        "exercises": [{"id": ex.id, "number": numbers.get(ex.id), "title": ex.title, "points": float(ex.points),
                       "notebook": ex.notebook} for ex in chosen],
        "max_score": float(sum(ex.points for ex in chosen)),
        "visibility": visibility,
        "limits": asdict(Limits()),
    }


def setup_sh(torch_version: str) -> str:
    """The image's set-up: Python and bubblewrap from apt, a venv, a CPU torch first, then the course."""
    return f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu; /autograder/source holds
# the unpacked bundle). Written by `course gradescope build` (course_lib/grading/gradescope.py).
set -euo pipefail
SOURCE="${{AUTOGRADER_ROOT:-/autograder}}/source"
VENV={VENV}
export DEBIAN_FRONTEND=noninteractive

# Python with venv, and bubblewrap: the grader runs each learner's code in a bubblewrap sandbox when the
# container lets it create namespaces; otherwise under resource limits as a user of its own (recorded).
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip bubblewrap ca-certificates

python3 - <<'PYCHECK'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 13)):
    sys.exit(f"the course needs Python 3.10 to 3.13; this image has {{sys.version.split()[0]}}: "
             "choose another base image")
PYCHECK

python3 -m venv "$VENV"
pip() {{ "$VENV/bin/python" -m pip "$@"; }}
pip install --upgrade pip

# PyTorch first, as a CPU build (the version the bundle was built and tested with): with it installed, the
# course's range (torch>=2.2) installs nothing more; without it, pip would pull a multi-GB CUDA build.
pip install "torch=={torch_version}" --index-url {CPU_INDEX} \\
  || {{ echo ">> PyTorch's CPU index is out of reach; trying the default index"; pip install "torch=={torch_version}"; }}

# Then the course itself, from the bundle (not editable: the grader's code lives in the venv).
pip install "$SOURCE/course"

# The seed of the hidden cases: root only.
chmod 700 "$SOURCE/private"
chmod 600 "$SOURCE/private/seed.json"
chmod 755 "$SOURCE/run_autograder"

# What this image can do, for the build log.
"$VENV/bin/python" -m course_lib grade --list-exercises | tail -n 1
"$VENV/bin/python" -c "from course_lib.grading.sandbox import find_bwrap; p, why = find_bwrap(); print('bubblewrap:', 'usable' if p else why)"
"""


RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this for every submission (working directory /autograder). It grades every course
# notebook in $AUTOGRADER_ROOT/submission (nested folders allowed) with the course's sandboxed grader and
# writes $AUTOGRADER_ROOT/results/results.json. The work is done by course_lib/grading/gradescope.py.
#   AUTOGRADER_ROOT   default /autograder (a test points it at a folder laid out like Gradescope's)
#   COURSE_PYTHON     default {VENV}/bin/python (the venv setup.sh made)
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{COURSE_PYTHON:-{VENV}/bin/python}}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
"$PYTHON" -m course_lib.grading.gradescope run --root "$ROOT"
status=$?
if [ ! -s "$RESULTS" ]; then
  # Python could not even start (no venv, a broken install): Gradescope still gets a valid result.
  printf '{{"score": 0.0, "output": "The autograder could not start (exit status %d), so your submission was not graded; your instructor has to fix the autograder.", "output_format": "text", "tests": []}}\\n' "$status" > "$RESULTS"
fi
exit 0
"""


def _course_files() -> list:
    """``(path in the zip, file)`` for the installable course: pyproject.toml, README.md, course_lib/."""
    files = [("course/pyproject.toml", PROJECT_ROOT / "pyproject.toml"), ("course/README.md", PROJECT_ROOT / "README.md")]
    pkg = PROJECT_ROOT / "course_lib"
    for p in sorted(pkg.rglob("*")):
        rel = p.relative_to(PROJECT_ROOT)
        if p.is_file() and "__pycache__" not in rel.parts and p.suffix not in (".pyc", ".pyo"):
            files.append((f"course/{rel.as_posix()}", p))
    return files


def build(out_dir, units: Optional[list] = None, seed: Optional[int] = None, visibility: str = "visible") -> Built:
    """Write ``out_dir/autograder.zip`` (see the module docstring); misuse raises :class:`BuildError`."""
    import torch

    config = course_config(units, visibility)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot write to the output folder {out_dir}: {e.strerror or e}") from None
    chosen = seed is None
    seed = secrets.randbits(63) if seed is None else int(seed)
    torch_version = torch.__version__.split("+")[0]
    entries = [("setup.sh", setup_sh(torch_version).encode(), 0o755),
               ("run_autograder", RUN_AUTOGRADER.encode(), 0o755),
               ("autograder.json", (json.dumps(config, indent=1) + "\n").encode(), 0o644),
               ("private/seed.json", (json.dumps({"seed": seed}) + "\n").encode(), 0o600)]
    entries += [(name, path.read_bytes(), 0o644) for name, path in _course_files()]
    target = out_dir / "autograder.zip"
    fd, tmp = tempfile.mkstemp(prefix=".autograder.", suffix=".zip.tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data, mode in entries:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # the same inputs, the same bytes
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        os.chmod(tmp, 0o600)  # it holds the seed
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return Built(target, config["units"], len(config["exercises"]), config["max_score"], chosen)


# ---------------------------------------------------------------------------------------------------
# From the grader's results to Gradescope's results.json
# ---------------------------------------------------------------------------------------------------


def _pts(x) -> str:
    return f"{float(x):g}"


def exercise_text(e: dict) -> str:
    """One exercise's feedback as plain text: what the feedback page shows (status, points, message,
    the named known mistake, every check when it did not pass, the learner's own traceback)."""
    lines = [f"{LABELS.get(e['status'], e['status'])}: {_pts(e['points'])} / {_pts(e['max'])} points",
             str(e.get("message", "")).strip()]
    if e.get("mistake"):
        lines += ["", f"{mistake_label(bool(e.get('diagnosed')))}: {e['mistake']}. {e.get('mistake_message') or ''}".rstrip()]
    details = e.get("details") or []
    shown = [d for d in details if not d.endswith(": ok") and not d.endswith(": holds")]
    if shown and e["status"] not in ("passed", "not_attempted", "missing"):
        lines += ["", f"All checks ({e.get('cases_passed', 0)} of {e.get('cases_total', 0)} cases passed):"]
        lines += [f"  - {d}" for d in details[:40]]
    if e.get("traceback"):
        lines += ["", "Traceback (your code):", str(e["traceback"]).rstrip()]
    return "\n".join(lines).strip() + "\n"


def _test(entry: dict, e: dict, visibility: str) -> dict:
    """One Gradescope test for one exercise."""
    score, max_score = round(float(e["points"]), 4), float(entry["points"])
    test = {"name": f"{entry['id']} — {entry['title']}", "score": score, "max_score": max_score,
            "status": "passed" if e["status"] == "passed" and score >= max_score else "failed",
            "output": exercise_text(e), "output_format": "text", "visibility": visibility,
            "tags": [entry["notebook"]],
            "extra_data": {"exercise": entry["id"], "course_status": e["status"], "mistake": e.get("mistake")}}
    if entry.get("number"):
        test["number"] = entry["number"]
    return test


def _results(config: dict, exercise_results: dict, output: str) -> dict:
    """The whole results.json: every exercise of the bundle, in the notebooks' order."""
    tests = []
    for entry in config["exercises"]:
        e = exercise_results.get(entry["id"]) or {
            "status": "missing", "points": 0.0, "max": entry["points"],
            "message": f"{entry['id']} is not in the course installed in the autograder; tell your instructor"}
        tests.append(_test(entry, e, config.get("visibility", "visible")))
    return {"score": round(sum(t["score"] for t in tests), 4), "output": output, "output_format": "text",
            "test_output_format": "text", "test_name_format": "text", "stdout_visibility": "hidden",
            "tests": tests}


def unusable(config: dict, message: str) -> dict:
    """results.json for a submission that cannot be graded: score 0, the one-line ``message`` on top and on
    every exercise."""
    message = " ".join(message.split())
    missing = {entry["id"]: {"status": "missing", "points": 0.0, "max": entry["points"], "message": message}
               for entry in config["exercises"]}
    return _results(config, missing, message)


def _listing(names: list) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _files(folder: Path) -> list:
    """Every file in the submission, relative, hidden files and macOS zip debris left out."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
            continue
        if p.is_file() or p.is_symlink():
            found.append(rel)
    return found


def _no_notebook_message(config: dict, files: list, stems: set) -> str:
    expected = _listing([f"{nb}.ipynb" for nb in config["notebooks"]])
    if not files:
        return f"Your submission is empty: upload your notebook ({expected}) as downloaded from Jupyter."
    names = [rel.as_posix() for rel in files]
    # 02_softmax_sampling.py, .html, .ipynb.txt: an export or a renamed notebook, not the notebook
    lookalike = [n for rel, n in zip(files, names) if rel.suffix != ".ipynb" and rel.name.split(".")[0] in stems]
    if lookalike:
        return (f"{_listing(lookalike)} is not a notebook: upload the .ipynb file itself ({expected}; in Jupyter: "
                f"File > Download), not an export.")
    other_nbs = [n for rel, n in zip(files, names) if rel.suffix == ".ipynb"]
    if other_nbs:
        return (f"No notebook of this assignment in your submission: found {_listing(other_nbs)}, but this "
                f"assignment grades {expected} (keep the file name as handed out).")
    return f"No notebook in your submission (found {_listing(names)}): upload {expected} as downloaded from Jupyter."


def _stage(submission: Path, stage: Path) -> None:
    """Copy the submission's notebooks (only those, relative paths kept, symbolic links as links, which the
    grader refuses) into ``stage/<LEARNER>``: the grader's layout, one folder per learner."""
    dest = stage / LEARNER
    dest.mkdir(parents=True)
    for rel in _files(submission):
        if rel.suffix != ".ipynb":
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(submission / rel, dest / rel, follow_symlinks=False)


def _cpus() -> int:
    """CPUs this container may use: the affinity mask and the cgroup's CPU quota (Docker reports the host's
    CPU count in os.cpu_count(); one worker per host CPU would overrun a small container's memory)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        try:
            quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if quota > 0:
                n = min(n, max(1, math.ceil(quota / period)))
        except (OSError, ValueError):
            pass
    return max(1, n)


def _summary_output(config: dict, result: dict, notes: list, paths: dict) -> str:
    """The top-level output: the total, what was graded (``paths``: notebook -> the submitted file's path),
    and what went wrong in the learner's cells."""
    lines = [f"Total: {_pts(result['total'])} / {_pts(config['max_score'])} points."]
    unreadable = []
    for stem, nb in result["notebooks"].items():
        pts = sum(e["points"] for e in nb["exercises"].values())
        mx = sum(e["max"] for e in nb["exercises"].values())
        if nb.get("status") == "not_submitted":
            lines.append(f"{stem}.ipynb: not in your submission (0 / {_pts(mx)} points).")
            continue
        path = paths.get(stem) or nb.get("file") or f"{stem}.ipynb"
        name = path if Path(path).name == f"{stem}.ipynb" else f"{path} (graded as {stem}.ipynb)"
        if nb.get("status") in ("unreadable", "grader_error"):
            unreadable.append(" ".join(str((nb.get("notes") or [""])[0]).split()))
            lines.append(f"{name}: could not be graded: {unreadable[-1]}")
            continue
        lines.append(f"{name}: {_pts(pts)} / {_pts(mx)} points.")
        cells = nb.get("cells", {})
        for err in cells.get("errors", [])[:10]:
            lines.append(f"  cell {err['cell']} raised {err['error']}")
        for fatal in cells.get("fatal", []):
            lines.append(f"  {fatal['reason']}; it was skipped and the rest of the notebook was graded without it")
        lines += [f"  {n}" for n in nb.get("notes", [])]
    lines += notes + list(result.get("notes", []))
    graded = [nb for nb in result["notebooks"].values() if nb.get("status") != "not_submitted"]
    if graded and len(unreadable) == len(graded) and result["total"] == 0:
        return f"Score 0: {'; '.join(unreadable)}"  # one line: nothing could be read
    lines.append("Each exercise is tested on hidden inputs that differ from the checks in your notebook; "
                 "the tests below say what passed and what to fix.")
    return "\n".join(lines)


def _grade(root: Path, config: dict, seed: int, t0: float) -> dict:

    submission, source = root / "submission", root / "source"
    if not submission.is_dir():
        return unusable(config, "Nothing was submitted (no submission folder); upload your notebook again.")
    files = _files(submission)
    stems = set(config.get("course_notebooks") or config["notebooks"])
    if not any(rel.suffix == ".ipynb" for rel in files):
        return unusable(config, _no_notebook_message(config, files, stems))
    private = source / "private"  # the run's output folder: hidden from the workers, root only
    private.mkdir(exist_ok=True)
    os.chmod(private, 0o700)
    from .submissions import find_students  # no torch yet: a submission without a course notebook is answered at once

    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        stage = Path(tmp)
        _stage(submission, stage)
        students, _ = find_students(stage, stems)
        learner = students[0]
        wanted = [nb for nb in config["notebooks"] if nb in learner.notebooks or nb in learner.refused]
        if not wanted:
            return unusable(config, _no_notebook_message(config, files, stems))
        paths = {stem: p.relative_to(learner.folder).as_posix() for stem, p in learner.notebooks.items()}
        notes = []  # the grader's own notes (renamed files, copies of one notebook) come with its results
        ignored = [rel.as_posix() for rel in files if rel.suffix != ".ipynb"]
        if ignored:
            notes.append(f"Not notebooks, ignored: {_listing(ignored)}.")
        deep = [rel.as_posix() for rel in files if rel.suffix == ".ipynb" and len(rel.parts) > 3]
        if deep:
            notes.append(f"More than two folders deep, not looked at: {_listing(deep)}.")
        from .runner import UsageError, grade

        limits = Limits(**{k: v for k, v in config.get("limits", {}).items() if k in Limits.__dataclass_fields__})
        # Always graded afresh (regrade): Gradescope starts every run in a fresh container anyway, and a
        # result reused from an earlier run here could carry a failure of that run's set-up.
        try:
            summary = grade(stage, private, seed=seed, jobs=_cpus(), limits=limits, sandbox="auto",
                            units=config["units"], regrade=(LEARNER,), progress=False, stream=sys.stdout)
        except UsageError as e:
            raise RuntimeError(f"the grader refused to run: {e}") from None
    result = summary.results[0]
    data = _results(config, result["exercises"], _summary_output(config, result, notes, paths))
    print(f"graded in {time.monotonic() - t0:.1f} s; isolation: {' | '.join(summary.isolation) or 'nothing was run'}")
    for w in summary.warnings:
        print(f"warning: {w}")
    for t in data["tests"]:
        print(f"  {t['name']}: {t['extra_data']['course_status']} {_pts(t['score'])}/{_pts(t['max_score'])}")
    return data


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run(root) -> dict:
    """Grade ``root/submission`` into ``root/results/results.json`` (Gradescope's layout) and return it.

    Never raises: a broken bundle or a grader failure still writes a valid results.json with score 0 and
    one line saying so (the traceback goes to stdout, which only instructors see)."""
    t0 = time.monotonic()
    root = Path(root)
    results_path = root / "results" / "results.json"
    try:
        config = json.loads((root / "source" / "autograder.json").read_text(encoding="utf-8"))
        missing = [k for k in ("exercises", "notebooks", "units", "max_score") if k not in config]
        if missing:
            raise KeyError(f"autograder.json has no {', '.join(missing)}")
        seed = int(json.loads((root / "source" / "private" / "seed.json").read_text(encoding="utf-8"))["seed"])
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stdout)
        data = {"score": 0.0, "output": f"The autograder is misconfigured ({type(e).__name__}: {e}), so your "
                f"submission was not graded; your instructor has to rebuild it.", "output_format": "text", "tests": []}
        data["output"] = " ".join(data["output"].split())
    else:
        try:
            data = _grade(root, config, seed, t0)
        except Exception as e:  # noqa: BLE001 - whatever happens, Gradescope gets a results.json
            traceback.print_exc(file=sys.stdout)
            data = unusable(config, f"The autograder failed ({type(e).__name__}: {e}), so your submission was not "
                                    f"graded; your instructor has been shown the error.")
    data["execution_time"] = int(round(time.monotonic() - t0))
    _write(results_path, data)
    print(f"results.json: score {_pts(data['score'])}, {len(data.get('tests', []))} tests")
    return data


# ---------------------------------------------------------------------------------------------------
# Command lines: `course gradescope build` and `python -m course_lib.grading.gradescope run`
# ---------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``course gradescope build --out DIR [--units 02,03] [--seed S] [--visibility V]``."""
    sub = p.add_subparsers(dest="gradescope_command", metavar="build", required=True)
    b = sub.add_parser("build", help="write DIR/autograder.zip, the autograder of a Gradescope programming assignment")
    b.add_argument("--out", required=True, metavar="DIR", help="folder that receives autograder.zip")
    b.add_argument("--units", default=None,
                   help="comma-separated units the assignment grades, e.g. 02 or 02,03 (default: every unit)")
    b.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden cases (default: a fresh secret one, stored in the zip); every "
                        "submission to this bundle is graded on the same hidden cases")
    b.add_argument("--visibility", default="visible", choices=VISIBILITIES,
                   help="when learners see each exercise's test on Gradescope (default: visible)")


def cli(args) -> int:
    units = [u for u in args.units.split(",") if u.strip()] if args.units is not None else None
    if units == []:
        units = [""]  # `--units ""`: refused by course_config with the list of units
    try:
        built = build(args.out, units=units, seed=args.seed, visibility=args.visibility)
    except BuildError as e:
        print(f"course gradescope build: {e}", file=sys.stderr)
        return 2
    print(f"course gradescope build: {built.zip_path} grades unit{'s' if len(built.units) > 1 else ''} "
          f"{', '.join(built.units)}: {built.exercises} exercises, {_pts(built.points)} points. Upload it as the "
          f"autograder of a Gradescope programming assignment worth {_pts(built.points)} points.")
    print(f"  The zip holds the seed of the hidden cases ({'drawn now' if built.seed_chosen else 'from --seed'}, "
          f"in private/seed.json): keep it away from learners.")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.grading.gradescope",
                                description="What run_autograder calls: grade a Gradescope submission.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="grade ROOT/submission into ROOT/results/results.json")
    r.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    args = p.parse_args(argv)
    run(Path(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
