"""What the grader's fingerprint hashes, and so which edits of the course re-grade a class.

``grader_fingerprint`` is part of every notebook's cache key: it must change with every file that can
change a grade (a stale grade is the worst outcome), and should not change with the files that only read
the results (the LMS export, Gradescope's bundle, the merge, the reports) or parse the command line.

The edits are made in a copy of ``course_lib`` (other engineers work in this checkout), and the cache
tests grade a one-learner class of stubs, which needs no worker.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import grade
from course_lib.grading import report as R
from course_lib.grading import runner
from course_lib.grading.runner import NOT_GRADING, grader_fingerprint, grading_files
from tests.grading_fixtures.build import CORRECT, stub, unit02, write

ROOT = Path(__file__).resolve().parents[1]
STUBS = {k: stub(k) for k in CORRECT}
# Files the fingerprint once left out although they change grades, and files it must keep.
MUST_COUNT = ["course_lib/authoring.py",                 # skip tags and # EXERCISE: markers: which cells run
              "course_lib/exercises/registry.py",
              "course_lib/exercises/check.py",           # runs in the learner's notebook
              "course_lib/softmax.py",                   # reference code learners' cells and the mistakes call
              "course_lib/data.py", "course_lib/viz.py",  # imported by the notebooks
              "course_lib/exercises/unit09_decoder_gpt.py",  # imported by every worker (registry.load_all)
              "course_lib/exercises/core.py", "course_lib/grading/worker.py", "course_lib/grading/session.py",
              "course_lib/grading/sandbox.py", "course_lib/grading/submissions.py", "course_lib/grading/wire.py",
              "course_lib/grading/runner.py"]


@pytest.fixture()
def copy(tmp_path) -> Path:
    """A copy of the project's course_lib, to edit."""
    shutil.copytree(ROOT / "course_lib", tmp_path / "proj" / "course_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "proj"


def edit(path: Path) -> None:
    """An edit that changes a file's bytes (a comment: the tests are about the cache, not the behaviour)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n# edited by tests/test_grading_fingerprint.py\n")


# ---------------------------------------------------------------------------------------------------
# The fingerprint itself
# ---------------------------------------------------------------------------------------------------


def test_the_excluded_files_exist_and_everything_else_in_course_lib_is_hashed(copy, tmp_path):
    rel = {p.relative_to(copy).as_posix() for p in grading_files(copy)}
    every = {p.relative_to(copy).as_posix() for p in (copy / "course_lib").rglob("*.py")}
    assert set(NOT_GRADING) <= every, "an excluded file was renamed: update NOT_GRADING"
    assert every - set(NOT_GRADING) <= rel and not rel & set(NOT_GRADING)
    assert set(MUST_COUNT) <= rel
    # The same checkout elsewhere (another node of a cluster, another path) has the same fingerprint.
    shutil.copytree(copy, tmp_path / "elsewhere" / "checkout")
    assert grader_fingerprint(tmp_path / "elsewhere" / "checkout") == grader_fingerprint(copy)


def test_every_file_changes_the_fingerprint_except_the_excluded_ones(copy):
    base = grader_fingerprint(copy)
    for p in sorted((copy / "course_lib").rglob("*.py")):
        before = p.read_bytes()
        edit(p)
        changed = grader_fingerprint(copy) != base
        p.write_bytes(before)
        rel = p.relative_to(copy).as_posix()
        assert changed == (rel not in NOT_GRADING), rel
    new = copy / "course_lib" / "newmodule.py"  # a new module counts until someone says otherwise
    new.write_text("X = 1\n")
    assert grader_fingerprint(copy) != base
    new.unlink()
    for junk in ("course_lib/__pycache__/x.cpython-311.pyc", "course_lib/.softmax.py.swp", "course_lib/softmax.py~"):
        (copy / junk).parent.mkdir(exist_ok=True)
        (copy / junk).write_bytes(b"editor and interpreter leftovers")
    assert grader_fingerprint(copy) == base


def test_no_code_that_runs_or_judges_learners_imports_an_excluded_file():
    """The excluded files stay out of the worker (after its imports and the notebooks' imports of course_lib)
    and out of the judging code: if one of them became part of grading, it would have to be hashed."""
    imported = set()
    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                imported.update(re.findall(r"^\s*(?:from|import)\s+(course_lib(?:\.\w+)*)", cell.source, re.M))
    assert "course_lib.viz" in imported and len(imported) > 5
    script = (
        "import importlib, json, sys\n"
        "import course_lib.grading.worker as w\n"
        "w._import_everything()\n"
        f"for m in {sorted(imported)!r}:\n"
        "    importlib.import_module(m)\n"
        "import course_lib.grading.session, course_lib.grading.submissions\n"
        "print(json.dumps({m: getattr(v, '__file__', None) for m, v in sys.modules.items() if m.startswith('course_lib')}))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    files = {Path(f).resolve().relative_to(ROOT).as_posix() for f in json.loads(r.stdout.splitlines()[-1]).values() if f}
    assert "course_lib/grading/worker.py" in files and "course_lib/authoring.py" in files
    assert not files & set(NOT_GRADING)


# ---------------------------------------------------------------------------------------------------
# The cache, as a re-run sees it
# ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def cached(copy, tmp_path, monkeypatch):
    """A graded one-learner class whose runs take the fingerprint of the copy."""
    monkeypatch.setattr(runner, "grader_fingerprint", functools.partial(grader_fingerprint, copy))
    subs, out = tmp_path / "subs", tmp_path / "out"
    write(subs, "ada", unit02(STUBS))
    first = grade(subs, out, seed=4, progress=False)
    assert (first.graded_notebooks, first.reused_notebooks) == (1, 0)
    return dict(copy=copy, subs=subs, out=out)


def regrade_after(cached, change) -> tuple:
    """(graded, reused) of a re-run after ``change()``. The exercise module of the notebook is read from this
    checkout, which others edit: a step during which it changed is repeated."""
    run_json = cached["out"] / ".grading" / "run.json"
    for _ in range(4):
        grade(cached["subs"], cached["out"], progress=False)  # settle: the cache as the checkout is now
        before = json.loads(run_json.read_text())["definitions"]
        change()
        s = grade(cached["subs"], cached["out"], progress=False)
        if json.loads(run_json.read_text())["definitions"] == before:
            return s.graded_notebooks, s.reused_notebooks
    pytest.fail("the exercise definitions kept changing during the test")


@pytest.mark.parametrize("rel", sorted(NOT_GRADING))
def test_editing_a_file_that_cannot_change_grades_keeps_every_cached_grade(cached, rel):
    assert regrade_after(cached, lambda: edit(cached["copy"] / rel)) == (0, 1)


@pytest.mark.parametrize("rel", ["course_lib/authoring.py", "course_lib/grading/worker.py", "course_lib/softmax.py",
                                 "course_lib/exercises/unit09_decoder_gpt.py"])
def test_editing_a_file_that_decides_grades_grades_again(cached, rel):
    assert regrade_after(cached, lambda: edit(cached["copy"] / rel)) == (1, 0)


def test_a_feedback_page_written_differently_is_rewritten_without_grading_again(cached, monkeypatch):
    """report.py is not hashed, so a re-run brings pages written by an older report.py up to date."""
    results, page = cached["out"] / "results" / "ada.json", cached["out"] / "feedback" / "ada.html"
    stamp = results.stat().st_mtime_ns
    old = page.read_text(encoding="utf-8")
    original = R.feedback_html
    monkeypatch.setattr(R, "feedback_html", lambda res: original(res).replace("Graded automatically", "Graded anew"))
    assert regrade_after(cached, lambda: None) == (0, 1)
    assert page.read_text(encoding="utf-8") == old.replace("Graded automatically", "Graded anew") != old
    assert results.stat().st_mtime_ns == stamp  # the results were not rewritten
