"""The autograder survives every misbehaving learner and grades the rest of the class.

One class of synthetic learners (tests/grading_fixtures/faults.py), one learner per fault, graded once
under bubblewrap with small limits; a smaller class is graded again without the sandbox (limits only).
Each test reads one learner's result. The three other exercises of each notebook are correct, so every
test also checks that a fault costs only what it must.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from course_lib.exercises import get
from course_lib.grading import Limits, grade
from course_lib.grading.session import exercise_seed
from tests.grading_fixtures import require_bwrap
from tests.grading_fixtures.faults import SOFTMAX, build_class, secret_paths

SEED = 987654321
# CPU-time limits; the wall-clock backstop for sleepers is wall_factor x each limit (24 s), generous enough
# that code which computes meets its CPU limit first even when it gets a fifth of a core.
LIMITS = Limits(cell_timeout=3, exercise_timeout=3, notebook_timeout=60, memory_mb=2500, wall_factor=8)
OTHERS = ("02.softmax_with_temperature", "02.sample_next_token", "02.cross_entropy")

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    require_bwrap()
    root = tmp_path_factory.mktemp("faults")
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    build_class(subs, out, sandboxed=True)
    summary = grade(subs, out, seed=SEED, jobs=2, limits=LIMITS, progress=False, sandbox="bwrap")
    return {"summary": summary, "by": {r["student"]: r for r in summary.results}, "out": out, "subs": subs}


def sm(g, student):
    return g["by"][student]["exercises"][SOFTMAX]


def notebook(g, student):
    return next(iter(g["by"][student]["notebooks"].values()))


def others_pass(g, student):
    statuses = {k: g["by"][student]["exercises"][k]["status"] for k in OTHERS}
    assert set(statuses.values()) == {"passed"}, statuses


# ---------------------------------------------------------------------------------------------------
# The baseline: the correct notebook passes, the handed-out stubs are "not attempted"
# ---------------------------------------------------------------------------------------------------


def test_correct_notebook_gets_full_marks(graded):
    r = graded["by"]["correct"]
    assert r["total"] == r["max_total"] == 11
    assert {e["status"] for e in r["exercises"].values()} == {"passed"}


def test_stub_notebook_is_not_attempted_and_runs_nothing(graded):
    r = graded["by"]["stub"]
    assert {e["status"] for e in r["exercises"].values()} == {"not_attempted"}
    assert notebook(graded, "stub")["workers_started"] == 0


def test_every_run_records_its_isolation(graded):
    for r in graded["summary"].results:
        for nb in r["notebooks"].values():
            if nb["workers_started"]:
                assert nb["isolation"].startswith("bubblewrap"), nb["isolation"]


# ---------------------------------------------------------------------------------------------------
# Faults in cells: recorded, skipped, and the notebook is still graded
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("student,why", [
    ("sleep_forever_cell", "did not finish within 24 s of wall-clock time: it waits or sleeps"),
    ("infinite_loop_cell", "used more than the 3 s of CPU time allowed per cell"),
    ("memory_bomb_cell", "ran out of memory"),
    ("memory_error_cell", "ran out of memory"),
    ("os_exit_cell", "exited with status 3"),
    ("segfault_cell", "segmentation fault"),
])
def test_a_cell_that_kills_or_hangs_the_worker_is_skipped(graded, student, why):
    nb = notebook(graded, student)
    assert [f["cell"] for f in nb["cells"]["fatal"]] == [3]
    assert why in nb["cells"]["fatal"][0]["reason"]
    assert nb["restarts"] == 1
    assert sm(graded, student)["status"] == "passed"
    others_pass(graded, student)


@pytest.mark.parametrize("student,error", [
    ("sys_exit_cell", "SystemExit"),
    ("input_cell", "input() cannot be answered"),
    ("name_error_cell", "NameError"),
])
def test_a_cell_that_raises_is_reported_and_the_rest_runs(graded, student, error):
    nb = notebook(graded, student)
    assert nb["restarts"] == 0 and not nb["cells"]["fatal"]
    assert [e["cell"] for e in nb["cells"]["errors"]] == [3]
    assert error in nb["cells"]["errors"][0]["error"]
    assert sm(graded, student)["status"] == "passed"
    others_pass(graded, student)


def test_a_million_lines_of_output_are_counted_not_kept(graded):
    nb = notebook(graded, "million_lines")
    assert nb["cells"]["output_chars"] >= 6_000_000
    assert sm(graded, "million_lines")["status"] == "passed"
    size = os.path.getsize(graded["out"] / "results" / "million_lines.json")
    assert size < 100_000


def test_cells_tagged_slow_or_network_are_skipped(graded):
    nb = notebook(graded, "tagged_cells")
    assert nb["cells"]["skipped_by_tag"] == [3, 4, 5]
    assert not nb["cells"]["errors"] and not nb["cells"]["fatal"] and nb["restarts"] == 0
    assert graded["by"]["tagged_cells"]["total"] == 11


def test_magics_and_shell_lines_do_not_break_the_notebook(graded):
    assert not notebook(graded, "magics")["cells"]["errors"]
    assert graded["by"]["magics"]["total"] == 11


# ---------------------------------------------------------------------------------------------------
# Faults in the learner's function: that exercise only
# ---------------------------------------------------------------------------------------------------


def test_infinite_loop_in_the_function_times_out(graded):
    e = sm(graded, "infinite_loop_fn")
    assert e["status"] == "timeout" and e["points"] == 0
    assert "ran out of time: used more than the 3 s of CPU time for this exercise (0 of" in e["message"]
    others_pass(graded, "infinite_loop_fn")


def test_a_function_that_sleeps_meets_the_wall_clock_backstop(graded):
    e = sm(graded, "sleep_forever_fn")
    assert e["status"] == "timeout" and e["points"] == 0
    assert "did not finish within 24 s of wall-clock time: it waits or sleeps" in e["message"], e["message"]
    assert "(0 of" in e["message"]
    others_pass(graded, "sleep_forever_fn")


@pytest.mark.parametrize("student,why", [("segfault_fn", "segmentation fault"), ("os_exit_fn", "exited with status 0")])
def test_a_function_that_kills_the_worker_costs_only_its_exercise(graded, student, why):
    e = sm(graded, student)
    assert e["status"] == "error" and e["points"] == 0
    assert "ended the worker process" in e["message"] and why in e["message"]
    others_pass(graded, student)


@pytest.mark.parametrize("student,text", [("sys_exit_fn", "sys.exit()"), ("input_fn", "input() cannot be answered")])
def test_exit_and_input_in_the_function_are_errors(graded, student, text):
    e = sm(graded, student)
    assert e["status"] == "error" and text in e["message"]
    others_pass(graded, student)


def test_a_correct_but_slow_solution_is_graded_up_to_its_limit(graded):
    e = sm(graded, "slow_correct")
    n = len(get(SOFTMAX).cases(exercise_seed(SEED, SOFTMAX), hidden=True))
    m = re.search(r"(\d+) of (\d+) calls finished", e["message"])
    assert m and 0 < int(m.group(1)) < int(m.group(2)) == n, e["message"]
    assert e["status"] == "partial" and 0 < e["points"] < 3
    others_pass(graded, "slow_correct")


def test_syntax_error_in_the_exercise_cell(graded):
    e = sm(graded, "syntax_error")
    assert e["status"] == "error" and "SyntaxError" in e["message"]
    assert "cell 3" in e["traceback"]
    others_pass(graded, "syntax_error")


def test_feedback_shows_only_the_learners_own_frames(graded):
    e = sm(graded, "raises_deep")
    assert e["status"] == "error"
    tb = e["traceback"]
    assert "Cell 3, line" in tb and "in helper" in tb and "in stable_softmax" in tb
    html = (graded["out"] / "feedback" / "raises_deep.html").read_text()
    for internal in ("worker.py", "course_lib/grading", "course_lib/exercises", "site-packages", str(SEED)):
        assert internal not in html and internal not in tb


def test_feedback_never_shows_the_seed_or_hidden_inputs(graded):
    ex = get(SOFTMAX)
    hidden = ex.cases(exercise_seed(SEED, SOFTMAX), hidden=True)
    inputs = [f"{v:.6g}" for c in hidden[1:4] for v in c.args[0].flatten().tolist()[:8]]
    for path in (graded["out"] / "feedback").iterdir():
        text = path.read_text()
        assert str(SEED) not in text
        assert not [v for v in inputs if v in text], path.name
    for path in (graded["out"] / "results").iterdir():
        assert str(SEED) not in path.read_text()


# ---------------------------------------------------------------------------------------------------
# Structure: deleted cell, renamed function, changed signature, old and broken files, odd names
# ---------------------------------------------------------------------------------------------------


def test_deleted_exercise_cell_is_missing(graded):
    e = sm(graded, "deleted_cell")
    assert e["status"] == "missing" and "# EXERCISE: 02.stable_softmax" in e["message"]
    others_pass(graded, "deleted_cell")


def test_renamed_function_is_missing_and_named(graded):
    e = sm(graded, "renamed")
    assert e["status"] == "missing" and "`my_softmax`" in e["message"]
    others_pass(graded, "renamed")


def test_changed_signature_is_explained(graded):
    e = sm(graded, "signature")
    assert e["status"] in ("partial", "error") and e["points"] < 3
    assert any("SignatureError" in d and "Keep the signature" in d for d in e["details"])


def test_a_file_that_is_not_json(graded):
    r = graded["by"]["not_json"]
    assert {e["status"] for e in r["exercises"].values()} == {"error"}
    assert "not valid JSON" in sm(graded, "not_json")["message"]


def test_an_nbformat3_notebook_is_converted_and_graded(graded):
    r = graded["by"]["nbformat3"]
    assert r["total"] == 11
    assert any("nbformat 3" in n for n in notebook(graded, "nbformat3")["notes"])


def test_odd_student_names_are_safe_file_names(graded):
    out = graded["out"]
    for name in ("José García", "..dots..", "spaces in name"):
        assert graded["by"][name]["total"] == 11, name
    files = sorted(p.name for p in (out / "results").iterdir())
    assert all(not f.startswith(".") and "/" not in f and " " not in f for f in files)
    assert any(f.startswith("José_García-") for f in files)
    rows = (out / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert any(r.startswith("José García,") for r in rows) and any(r.startswith("..dots..,") for r in rows)
    assert any("graded 02_softmax_sampling (1).ipynb" in n for n in graded["by"]["spaces in name"]["notes"])


def test_a_symbolic_link_is_not_graded(graded):
    e = sm(graded, "symlink")
    assert e["status"] == "missing" and "symbolic link" in e["message"]


# ---------------------------------------------------------------------------------------------------
# Wrong answers: named, never crash the grader
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("student,status,text", [
    ("wrong_shape", "failed", "has shape ()"),
    ("wrong_dtype", "failed", "dtype torch.float64"),
    ("returns_list", "failed", "should be a torch.Tensor, got list"),
    ("returns_numpy", "failed", "should be a torch.Tensor, got ndarray"),
    ("returns_nan", "failed", "got nan"),
    ("tensor_subclass", "failed", "got AlwaysEqual (a torch.Tensor subclass)"),
])
def test_wrong_outputs_are_failed_with_a_reason(graded, student, status, text):
    e = sm(graded, student)
    assert e["status"] == status and e["points"] == 0 and text in e["message"], e["message"]
    others_pass(graded, student)


def test_known_mistake_is_named(graded):
    e = sm(graded, "known_mistake")
    assert e["mistake"] == "no max subtraction" and e["points"] < 3
    html = (graded["out"] / "feedback" / "known_mistake.html").read_text()
    assert "Known mistake: no max subtraction" in html


def test_hard_coding_the_visible_cases_fails_the_hidden_ones(graded):
    from course_lib.exercises import run_local
    from tests.grading_fixtures.faults import hardcoded_cell

    ns = {}
    exec("import torch\n" + hardcoded_cell(), ns)  # noqa: S102 - our own fixture
    assert run_local(get(SOFTMAX), ns["stable_softmax"]).status == "passed"  # fools the inline check
    e = sm(graded, "hardcoded")
    assert e["status"] == "failed" and e["points"] == 0


# ---------------------------------------------------------------------------------------------------
# Cheating: monkeypatching, the reference, forbidden shortcuts
# ---------------------------------------------------------------------------------------------------


def test_monkeypatching_the_checks_changes_nothing(graded):
    e = sm(graded, "monkeypatch")
    assert e["status"] == "failed" and e["points"] == 0
    others_pass(graded, "monkeypatch")
    assert "imports course_lib.grading" in notebook(graded, "monkeypatch")["review"]


@pytest.mark.parametrize("student,label", [
    ("calls_reference", "course_lib's reference"),
    ("reference_after_patching_setprofile", "course_lib's reference"),
    ("unsets_profile", "switches off the grader's call watch"),
    ("forbidden_builtin", "built-in softmax"),
    ("forbidden_method_alias", "built-in softmax"),
    ("forbidden_in_helper", "built-in softmax"),
])
def test_forbidden_calls_are_detected_and_reported(graded, student, label):
    e = sm(graded, student)
    assert e["status"] == "forbidden" and e["points"] == 0 and label in e["message"], e["message"]
    others_pass(graded, student)


# ---------------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------------


def test_solutions_git_and_other_learners_are_invisible(graded):
    p = secret_paths(graded["out"], graded["subs"])
    for key in ("git_head", "solution", "other"):
        assert os.path.exists(p[key]), p[key]  # they exist: the learner just cannot see them
    assert sm(graded, "reads_secrets")["status"] == "passed"


def test_writing_into_the_output_folder_is_impossible(graded):
    out = graded["out"]
    assert not (out / "pwned.txt").exists()
    assert "999" not in (out / "grades.csv").read_text()
    assert graded["by"]["writes_out"]["total"] == 11


def test_no_network(graded):
    errors = notebook(graded, "network")["cells"]["errors"]
    assert errors and "unreachable" in errors[0]["error"].lower()


def test_process_count_is_limited(graded):
    iso = notebook(graded, "many_processes")["isolation"]
    if "runs as root" in iso:
        pytest.skip("the worker runs as root here (root is exempt from the process limit)")
    errors = notebook(graded, "many_processes")["cells"]["errors"]
    assert errors and "BlockingIOError" in errors[0]["error"]
    assert graded["by"]["many_processes"]["total"] == 11


# ---------------------------------------------------------------------------------------------------
# Without bubblewrap: limits and a scratch folder
# ---------------------------------------------------------------------------------------------------

FALLBACK = ["correct", "infinite_loop_fn", "os_exit_cell", "segfault_fn", "memory_bomb_cell", "monkeypatch",
            "calls_reference", "tensor_subclass"]


@pytest.fixture(scope="module")
def graded_without_sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("fallback")
    full, subs, out = root / "all", root / "subs", root / "out"
    full.mkdir()
    subs.mkdir()
    build_class(full, out, sandboxed=False)
    for name in FALLBACK:
        (full / name).rename(subs / name)
    summary = grade(subs, out, seed=SEED, jobs=2, limits=LIMITS, progress=False, sandbox="none")
    return {"summary": summary, "by": {r["student"]: r for r in summary.results}, "out": out}


def test_without_sandbox_the_faults_are_still_contained(graded_without_sandbox):
    g = graded_without_sandbox
    assert g["by"]["correct"]["total"] == 11
    assert sm(g, "infinite_loop_fn")["status"] == "timeout"
    assert sm(g, "segfault_fn")["status"] == "error"
    assert sm(g, "os_exit_cell")["status"] == "passed" and sm(g, "memory_bomb_cell")["status"] == "passed"
    assert sm(g, "monkeypatch")["status"] == "failed"
    assert sm(g, "calls_reference")["status"] == "forbidden"
    assert sm(g, "tensor_subclass")["status"] == "failed"
    for r in g["summary"].results:
        others_pass(g, r["student"])
        nb = next(iter(r["notebooks"].values()))
        assert nb["isolation"].startswith("limits only (--no-sandbox)"), nb["isolation"]
    data = json.loads((g["out"] / "results" / "correct.json").read_text())
    assert data["total"] == 11
