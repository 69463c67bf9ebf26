"""Gradescope (issue 15 §4): `course gradescope build` writes autograder.zip; its real `run_autograder`,
run in a folder laid out like Gradescope's (source/, submission/, results/), writes a results.json in
Gradescope's format for a correct, a partial and a broken submission, and for unusable ones.

Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ (results.json: `score`, `tests`
with `name`, `score`, `max_score`, `status`, `output`, `visibility`, ...). The image's set-up (setup.sh)
is not run here: `COURSE_PYTHON` points run_autograder at this machine's venv, and `PYTHONPATH` at the
course copy inside the bundle, so the grading code that runs is the bundle's.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

from course_lib.exercises import all_exercises
from course_lib.grading import grade
from course_lib.grading.sandbox import find_bwrap
from tests.grading_fixtures.build import CORRECT, NB, stub, unit02, write
from tests.grading_fixtures.faults import softmax_cell
from tests.test_grading_run import FAST, cli

ROOT = Path(__file__).resolve().parents[1]
SEED = 918273645  # digits that no message of unit 02 contains by chance
UNIT02 = [ex for ex in all_exercises() if ex.notebook == NB]
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
            "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
             "visibility", "extra_data"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def syllabus_points(unit: str) -> float:
    """The points of a unit in the syllabus table of lessons/README.md (its last column)."""
    for line in (ROOT / "lessons" / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == unit:
            return float(cells[-1])
    raise AssertionError(f"unit {unit} is not in the syllabus table")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gradescope-build")
    from course_lib.cli import main

    assert main(["gradescope", "build", "--out", str(out), "--units", "02", "--seed", str(SEED)]) == 0
    return out / "autograder.zip"


def autograder_root(tmp: Path, bundle: Path) -> Path:
    """A folder laid out like Gradescope's /autograder: source/ (the unpacked zip), run_autograder copied
    next to it, an empty submission/ and results/."""
    root = tmp / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    os.chmod(root / "run_autograder", 0o755)
    return root


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (and the descendants they waited for)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_autograder(root: Path, label: str, python: str = sys.executable, graded: bool = True) -> dict:
    """The real run_autograder, as Gradescope starts it (working directory the root); its results.json,
    checked against the format (with one test per exercise unless the autograder itself is broken)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOGRADER_ROOT")}
    env.update(AUTOGRADER_ROOT=str(root), COURSE_PYTHON=python, PYTHONPATH=str(root / "source" / "course"))
    t0, cpu0 = time.monotonic(), _children_cpu()
    r = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    print(f"run_autograder on the {label} submission: {time.monotonic() - t0:.1f} s wall, "
          f"{_children_cpu() - cpu0:.1f} s CPU")
    assert r.returncode == 0, r.stdout + r.stderr
    path = root / "results" / "results.json"
    assert path.is_file(), r.stdout + r.stderr
    data = json.loads(path.read_text(encoding="utf-8"))
    check_format(data, UNIT02 if graded else [])
    return data


def check_format(data: dict, exercises: list = UNIT02) -> None:
    """results.json as Gradescope's specification describes it, with one test per exercise of the bundle."""
    assert isinstance(data, dict) and set(data) <= TOP_KEYS, set(data) - TOP_KEYS
    assert isinstance(data["score"], (int, float)) and not isinstance(data["score"], bool)
    assert isinstance(data["output"], str) and data["output"].strip()
    assert data.get("output_format", "simple_format") in FORMATS
    assert isinstance(data.get("execution_time", 0), int)
    tests = data["tests"]
    assert isinstance(tests, list) and len(tests) == len(exercises)
    if not exercises:
        return
    by_id = {}
    for t in tests:
        assert set(t) <= TEST_KEYS, set(t) - TEST_KEYS
        for key in ("score", "max_score"):
            assert isinstance(t[key], (int, float)) and not isinstance(t[key], bool)
        assert 0 <= t["score"] <= t["max_score"]
        assert t["status"] in ("passed", "failed")
        assert (t["status"] == "passed") == (t["score"] == t["max_score"])
        assert isinstance(t["output"], str) and t["output"].strip()
        assert t["visibility"] in VISIBILITIES and t.get("output_format", "text") in FORMATS
        assert isinstance(t["name"], str) and isinstance(t.get("number", ""), str)
        ex = next(ex for ex in exercises if ex.id in t["name"])
        assert ex.title in t["name"]
        by_id[ex.id] = t
    assert set(by_id) == {ex.id for ex in exercises}  # every exercise, once
    for ex in exercises:
        assert by_id[ex.id]["max_score"] == ex.points
    assert sum(t["max_score"] for t in tests) == syllabus_points(exercises[0].notebook[:2])
    assert data["score"] == pytest.approx(sum(t["score"] for t in tests), abs=1e-9)
    assert str(SEED) not in json.dumps(data)


def by_exercise(data: dict) -> dict:
    return {t["extra_data"]["exercise"]: t for t in data["tests"]}


# ---------------------------------------------------------------------------------------------------
# The bundle
# ---------------------------------------------------------------------------------------------------


def test_bundle_holds_the_two_scripts_at_its_root_the_course_and_the_config(bundle):
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        infos = {i.filename: i for i in z.infolist()}
        config = json.loads(z.read("autograder.json"))
        seed = json.loads(z.read("private/seed.json"))
        run = z.read("run_autograder").decode()
    for script in ("setup.sh", "run_autograder"):
        assert script in names  # at the root of the archive, not under a folder
        assert (infos[script].external_attr >> 16) & stat.S_IXUSR
    assert run.startswith("#!/usr/bin/env bash\n") and "course_lib.grading.gradescope run" in run
    assert seed == {"seed": SEED}
    assert "course/pyproject.toml" in names and "course/README.md" in names
    bundled = {n[len("course/"):] for n in names if n.startswith("course/course_lib/")}
    repo = {p.relative_to(ROOT).as_posix() for p in (ROOT / "course_lib").rglob("*.py") if "__pycache__" not in p.parts}
    assert bundled == repo
    with zipfile.ZipFile(bundle) as z:
        assert z.read("course/course_lib/grading/session.py") == (ROOT / "course_lib/grading/session.py").read_bytes()
    assert not [n for n in names if "solutions" in n or n.endswith((".ipynb", ".pyc")) or "__pycache__" in n]
    assert [e["id"] for e in config["exercises"]] == ["02.stable_softmax", "02.softmax_with_temperature",
                                                     "02.sample_next_token", "02.cross_entropy"]  # notebook order
    assert [e["number"] for e in config["exercises"]] == ["02.1", "02.2", "02.3", "02.4"]
    assert config["max_score"] == syllabus_points("02") and config["units"] == ["02"]


def test_setup_sh_installs_a_cpu_torch_first_then_the_course_and_bubblewrap(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as z:
        text = z.read("setup.sh").decode()
    (tmp_path / "setup.sh").write_text(text)
    r = subprocess.run(["bash", "-n", str(tmp_path / "setup.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    apt = next(i for i, ln in enumerate(lines) if ln.startswith("apt-get install"))
    assert "bubblewrap" in lines[apt].split() and "python3-venv" in lines[apt].split()
    version = torch.__version__.split("+")[0]
    cpu = next(i for i, ln in enumerate(lines)
               if re.match(r"pip install \"torch==" + re.escape(version) + r"\"", ln)
               and "--index-url https://download.pytorch.org/whl/cpu" in ln)
    course = next(i for i, ln in enumerate(lines) if ln == 'pip install "$SOURCE/course"')
    assert apt < cpu < course
    # every install before the course pins torch: none can pull another (CUDA) build first
    assert not [ln for ln in lines[:course] if "pip install" in ln and "torch" not in ln and "--upgrade pip" not in ln]


def test_build_misuse_is_one_line_and_exit_2(tmp_path, capsys):
    for args, words in ((["--units", "99"], "--units 99: no such unit; the course has units 01, 02"),
                        (["--units", ""], "no such unit")):
        code, _, err = cli(capsys, "gradescope", "build", "--out", tmp_path / "b", *args)
        assert code == 2 and words in err and err.strip().count("\n") == 0, err
    code, _, err = cli(capsys, "gradescope", "build", "--out", tmp_path / "b", "--visibility", "sometimes")
    assert code == 2 and "invalid choice: 'sometimes'" in err
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(capsys, "gradescope", "build", "--out", tmp_path / "afile" / "b", "--units", "02")
    assert code == 2 and "cannot write" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------------
# Grading: correct, partial, broken
# ---------------------------------------------------------------------------------------------------


def test_a_correct_submission_in_a_sub_folder_gets_every_point(bundle, tmp_path):
    root = autograder_root(tmp_path, bundle)
    write(root / "submission", "my work", unit02())
    (root / "submission" / "notes.txt").write_text("my notes")
    data = run_autograder(root, "correct")
    assert data["score"] == 11
    assert all(t["status"] == "passed" and t["output"].startswith("passed:") for t in data["tests"])
    assert data["output"].splitlines()[0] == "Total: 11 / 11 points."
    assert f"my work/{NB}.ipynb: 11 / 11 points." in data["output"]
    assert "notes.txt" in data["output"]  # listed as ignored
    assert [t["number"] for t in data["tests"]] == ["02.1", "02.2", "02.3", "02.4"]


def test_a_partial_submission_scores_what_course_grade_gives_with_the_bundles_seed(bundle, tmp_path):
    root = autograder_root(tmp_path, bundle)
    no_max = softmax_cell("e = x.exp()\nreturn e / e.sum(dim=dim, keepdim=True)")
    cells = unit02({"02.stable_softmax": no_max, "02.cross_entropy": stub("02.cross_entropy")})
    write(root / "submission", ".", cells, name=f"{NB} (1).ipynb")  # a browser's renamed download
    data = run_autograder(root, "partial")
    t = by_exercise(data)
    assert 0 < data["score"] < 11
    soft = t["02.stable_softmax"]
    assert soft["status"] == "failed" and 0 < soft["score"] < 3
    assert soft["output"].startswith("partly right:") and "Known mistake: no max subtraction." in soft["output"]
    assert t["02.cross_entropy"]["score"] == 0 and "not attempted" in t["02.cross_entropy"]["output"]
    assert t["02.softmax_with_temperature"]["status"] == "passed"
    assert f"{NB} (1).ipynb (graded as {NB}.ipynb)" in data["output"]
    # The same notebook graded by `course grade` with the bundle's seed: the same points and the same
    # messages, exercise by exercise. The softmax message quotes a value of the first failing hidden case
    # ("expected 0.0169929, got nan"), which another seed would change.
    subs = tmp_path / "subs"
    write(subs, "learner", cells)
    res = grade(subs, tmp_path / "out", seed=SEED, jobs=1, limits=FAST, progress=False).results[0]
    assert {i: x["score"] for i, x in t.items()} == {i: pytest.approx(e["points"]) for i, e in res["exercises"].items()}
    assert re.search(r"expected -?\d", res["exercises"]["02.stable_softmax"]["message"])
    for ex_id, e in res["exercises"].items():
        assert e["message"].strip() in t[ex_id]["output"]


@pytest.fixture
def outside_tmp():
    """A folder outside /tmp: bubblewrap gives workers a private /tmp, which would hide anything under it
    whether or not the grader hides it; Gradescope's /autograder is not under /tmp either."""
    d = Path(tempfile.mkdtemp(prefix="gradescope-test-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_broken_submission_scores_zero_with_its_errors_explained(bundle, outside_tmp):
    root = autograder_root(outside_tmp, bundle)
    seed_file = root / "source" / "private" / "seed.json"
    steal = f"raise RuntimeError('the seed: ' + open({str(seed_file)!r}).read())"  # learner code
    cells = unit02({"02.stable_softmax": softmax_cell("return x.exp(  # unclosed"),
                    "02.softmax_with_temperature": "# EXERCISE: 02.softmax_with_temperature\n"
                                                   "def softmax_with_temperature(logits, temperature):\n"
                                                   "    return undefined_helper(logits / temperature)",
                    "02.sample_next_token": "# EXERCISE: 02.sample_next_token\n"
                                            "def sample_next_token(logits, temperature, generator):\n"
                                            "    raise ValueError('not sure yet')",
                    "02.cross_entropy": None},  # the exercise cell deleted
                   extra_before=["import not_a_module_anybody_has", steal])
    write(root / "submission", "a/b", cells)
    data = run_autograder(root, "broken")  # checks too that the seed appears nowhere in results.json
    t = by_exercise(data)
    assert data["score"] == 0 and all(x["status"] == "failed" for x in data["tests"])
    assert "SyntaxError" in t["02.stable_softmax"]["output"]
    assert "NameError" in t["02.softmax_with_temperature"]["output"] and "Traceback (your code)" in \
        t["02.softmax_with_temperature"]["output"]
    assert "ValueError: not sure yet" in t["02.sample_next_token"]["output"]
    assert t["02.cross_entropy"]["output"].startswith("missing:")
    assert "raised ModuleNotFoundError" in data["output"]
    # The bundle's seed is out of the learner's reach: not mounted under bubblewrap, root-only without it.
    if find_bwrap()[0] is not None or os.geteuid() == 0:
        assert re.search(r"cell \d+ raised (FileNotFoundError|PermissionError)", data["output"]), data["output"]
    assert seed_file.is_file()


# ---------------------------------------------------------------------------------------------------
# Bad input: still a valid results.json, score 0, one clear line
# ---------------------------------------------------------------------------------------------------


def _one_line_zero(data: dict, *words: str) -> None:
    assert data["score"] == 0 and all(t["score"] == 0 and t["status"] == "failed" for t in data["tests"])
    assert "\n" not in data["output"].strip(), data["output"]
    for w in words:
        assert w in data["output"], (w, data["output"])


def resubmit(root: Path, files: dict) -> None:
    """Replace the submission with ``files`` (relative path -> text or bytes)."""
    shutil.rmtree(root / "submission")
    (root / "submission").mkdir()
    for rel, content in files.items():
        path = root / "submission" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_unusable_submissions_score_zero_with_one_clear_line(bundle, tmp_path):
    root = autograder_root(tmp_path, bundle)
    _one_line_zero(run_autograder(root, "empty"), "empty", f"{NB}.ipynb")

    resubmit(root, {"answers.pdf": b"%PDF-1.4 not a notebook", "notes/todo.txt": "x"})
    _one_line_zero(run_autograder(root, "PDF"), "No notebook", "answers.pdf", "notes/todo.txt", f"{NB}.ipynb")

    resubmit(root, {f"{NB}.py": "def stable_softmax(x): ...", "answers.pdf": b"%PDF"})
    data = run_autograder(root, "script export")
    _one_line_zero(data, f"{NB}.py is not a notebook", ".ipynb")
    assert all(f"{NB}.py is not a notebook" in t["output"] for t in data["tests"])

    empty_nb = json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}})
    resubmit(root, {"03_attention.ipynb": empty_nb, "homework.ipynb": empty_nb})
    _one_line_zero(run_autograder(root, "other notebooks"), "03_attention.ipynb", "homework.ipynb",
                   f"grades {NB}.ipynb")

    resubmit(root, {f"{NB}.ipynb": "{not json", "answers.pdf": b"%PDF"})
    data = run_autograder(root, "corrupt")
    _one_line_zero(data, f"{NB}.ipynb is not valid JSON")
    assert all("not valid JSON" in t["output"] for t in data["tests"])

    resubmit(root, {f"{NB}.ipynb": b"%PDF-1.4\xff\xfe binary"})
    _one_line_zero(run_autograder(root, "renamed PDF"), "not a text (UTF-8) file")


def test_a_broken_autograder_still_writes_a_valid_results_json(bundle, tmp_path):
    root = autograder_root(tmp_path, bundle)
    write(root / "submission", ".", unit02())
    (root / "source" / "private" / "seed.json").unlink()
    data = run_autograder(root, "no seed in the bundle", graded=False)
    assert data["score"] == 0 and data["tests"] == [] and "misconfigured" in data["output"]
    data = run_autograder(root, "no Python", python=str(tmp_path / "no-such-python"), graded=False)
    assert data["score"] == 0 and data["tests"] == [] and "could not start" in data["output"]
