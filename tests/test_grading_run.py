"""A grading run as an instructor sees it: the command, the outputs, re-runs, a killed run, limits."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib.exercises import all_exercises
from course_lib.grading import Limits, grade
from course_lib.grading.report import atomic_write
from course_lib.grading.runner import UsageError
from tests.grading_fixtures.build import CORRECT, NB, stub, unit02, write
from tests.grading_fixtures.faults import softmax_cell

ROOT = Path(__file__).resolve().parents[1]
FAST = Limits(cell_timeout=20, exercise_timeout=20, notebook_timeout=60)


def course(*args, timeout=300, **kw):
    """Run ``python -m course_lib ...`` in a subprocess, as an instructor would."""
    return subprocess.run([sys.executable, "-m", "course_lib", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def small_class(subs: Path, n: int = 3, sleep: float = 0.0) -> None:
    """alice correct, bob with a known mistake and a stub, carol all stubs, then more correct learners."""
    extra = [f"import time\ntime.sleep({sleep})"] if sleep else []
    write(subs, "alice", unit02(extra_before=extra))
    if n > 1:
        write(subs, "bob", unit02({"02.stable_softmax": softmax_cell("e = x.exp()\nreturn e / e.sum(dim=dim, keepdim=True)"),
                                   "02.cross_entropy": stub("02.cross_entropy")}, extra_before=extra))
    if n > 2:
        write(subs, "carol", unit02({k: stub(k) for k in CORRECT}))
    for i in range(3, n):
        write(subs, f"learner{i:02d}", unit02({"02.cross_entropy": stub("02.cross_entropy")} if i % 2 else {},
                                            extra_before=extra))


def read_csv(path: Path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------


def cli(capsys, *args) -> tuple:
    """Run ``course ...`` in this process: (exit status, stdout, stderr)."""
    from course_lib.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's --help and usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_list_exercises(capsys):
    code, out, _ = cli(capsys, "grade", "--help")
    assert code == 0
    for opt in ("--out", "--seed", "--jobs", "--list-exercises", "--cell-timeout", "--no-sandbox"):
        assert opt in out
    code, out, _ = cli(capsys, "grade", "--list-exercises")
    assert code == 0
    for ex in all_exercises():
        line = next(ln for ln in out.splitlines() if ln.startswith(ex.id + " "))
        assert ex.notebook in line and f"{ex.points:g}" in line.split()


def test_misuse_exits_2_with_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "grade", tmp_path / "nope", "--out", tmp_path / "out")
    assert code == 2 and err.strip().count("\n") == 0 and "no such folder" in err
    (tmp_path / "subs").mkdir()
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(capsys, "grade", tmp_path / "subs", "--out", tmp_path / "afile" / "out")
    assert code == 2 and err.strip().count("\n") == 0 and "cannot write" in err
    code, _, err = cli(capsys, "grade")
    assert code == 2 and "SUBMISSIONS" in err
    code, _, err = cli(capsys, "grade", tmp_path / "subs", "--out", tmp_path / "out", "--jobs", "0")
    assert code == 2 and "--jobs" in err


def test_cli_grades_a_class_and_writes_every_output(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    small_class(subs)
    (subs / "broken").mkdir()
    (subs / "broken" / f"{NB}.ipynb").write_text("{not json")
    r = course("grade", subs, "--out", out, "--seed", 11, "--jobs", 2)
    assert r.returncode == 0, r.stderr
    assert "02.stable_softmax" in r.stdout and "mean" in r.stdout  # the summary table
    rows = read_csv(out / "grades.csv")
    ids = sorted(ex.id for ex in all_exercises() if ex.notebook == NB)
    assert rows[0] == ["student", *ids, "total", "max_total"]
    table = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert set(table) == {"alice", "bob", "carol", "broken"}
    assert table["alice"]["total"] == "11" and table["alice"]["max_total"] == "11"
    assert table["carol"]["total"] == "0" and table["broken"]["total"] == "0"
    assert 0 < float(table["bob"]["total"]) < 11
    for student in table:
        res = json.loads((out / "results" / f"{student}.json").read_text())
        for e in res["exercises"].values():
            assert {"points", "max", "status", "message"} <= set(e)
            assert e["status"] in ("passed", "partial", "failed", "error", "timeout", "not_attempted",
                                   "forbidden", "missing")
        html = (out / "feedback" / f"{student}.html").read_text()
        assert html.startswith("<!DOCTYPE html>") and student in html
    bob = json.loads((out / "results" / "bob.json").read_text())
    assert bob["exercises"]["02.stable_softmax"]["mistake"] == "no max subtraction"
    assert bob["exercises"]["02.cross_entropy"]["status"] == "not_attempted"
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------
# Nothing lost: re-runs reuse unchanged work, a killed run resumes to the same gradebook
# ---------------------------------------------------------------------------------------------------


def test_rerun_grades_only_new_or_changed_submissions(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    small_class(subs)
    first = grade(subs, out, seed=5, jobs=2, limits=FAST, progress=False)
    assert (first.graded_notebooks, first.reused_notebooks) == (3, 0)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    csv1 = (out / "grades.csv").read_text()

    again = grade(subs, out, jobs=2, limits=FAST, progress=False)  # the seed comes from OUT
    assert (again.graded_notebooks, again.reused_notebooks) == (0, 3)
    assert (out / "grades.csv").read_text() == csv1
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()} == before

    write(subs, "bob", unit02())                     # bob fixes his notebook
    write(subs, "dave", unit02({"02.stable_softmax": None}))  # a late submission
    third = grade(subs, out, jobs=2, limits=FAST, progress=False)
    assert (third.graded_notebooks, third.reused_notebooks) == (2, 2)
    table = {row[0]: row for row in read_csv(out / "grades.csv")[1:]}
    assert table["bob"][-2] == "11" and table["dave"][-2] == "8" and table["alice"][-2] == "11"
    assert (out / "results" / "alice.json").stat().st_mtime_ns == before["alice.json"]

    regraded = grade(subs, out, jobs=2, limits=FAST, progress=False, regrade=("alice",))
    assert (regraded.graded_notebooks, regraded.reused_notebooks) == (1, 3)
    fresh = grade(subs, out, jobs=2, limits=FAST, progress=False, new_seed=True)
    assert fresh.reused_notebooks == 0


def test_a_run_killed_with_sigkill_resumes_to_the_same_grades(tmp_path):
    subs = tmp_path / "subs"
    small_class(subs, n=2)
    killed = tmp_path / "killed"
    grade(subs, killed, seed=77, jobs=2, limits=FAST, progress=False)  # an earlier, complete run
    old_csv = (killed / "grades.csv").read_text()
    small_class(subs, n=6, sleep=0.8)          # more learners arrive; alice and bob resubmit

    reference = tmp_path / "reference"
    grade(subs, reference, seed=77, jobs=2, limits=FAST, progress=False)  # never interrupted

    args = [sys.executable, "-m", "course_lib", "grade", str(subs), "--out", str(killed), "--jobs", "2", "-q",
            "--cell-timeout", "20", "--exercise-timeout", "20", "--notebook-timeout", "60"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    results = killed / "results"
    stamp = {p: p.stat().st_mtime_ns for p in results.iterdir()}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until some, not all, students are done
        done = [p for p in results.glob("*.json") if stamp.get(p) != p.stat().st_mtime_ns]
        if len(done) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(done) < 6
    # Killed mid-run: the old gradebook is still whole, and every result file is complete JSON.
    assert (killed / "grades.csv").read_text() == old_csv
    for p in results.glob("*.json"):
        json.loads(p.read_text())

    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)  # started again
    assert r.returncode == 0, r.stderr
    reused = int(r.stdout.split(" unchanged and reused")[0].rsplit(" ", 1)[-1])
    assert reused >= len(done)
    assert (killed / "grades.csv").read_text() == (reference / "grades.csv").read_text()
    assert not list(killed.rglob(".*.tmp"))
    assert not list((killed / ".grading").glob("tmp-*"))  # the killed run's scratch is gone too


def test_results_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "grades.csv"
    atomic_write(target, "student,total\nalice,11\n")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write(target, "student,total\nalice,0\n")
    assert target.read_text() == "student,total\nalice,11\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


# ---------------------------------------------------------------------------------------------------
# Limits and choices
# ---------------------------------------------------------------------------------------------------


SPIN = "import time\nt0 = time.process_time()\nwhile time.process_time() - t0 < {s}:\n    pass"


def test_per_notebook_limit_stops_a_notebook_not_the_class(tmp_path):
    """Four cells of 3 s of CPU each meet an 8 s CPU limit per notebook; a correct notebook never comes close."""
    subs, out = tmp_path / "subs", tmp_path / "out"
    write(subs, "slow", unit02(extra_before=[SPIN.format(s=3)] * 4))
    write(subs, "fine", unit02())
    s = grade(subs, out, seed=3, jobs=2, progress=False,
              limits=Limits(cell_timeout=10, exercise_timeout=10, notebook_timeout=8))
    by = {r["student"]: r for r in s.results}
    assert by["fine"]["total"] == 11
    slow = by["slow"]["exercises"]
    assert {e["status"] for e in slow.values()} == {"timeout"}
    assert all("8 s of CPU time" in e["message"] for e in slow.values()), [e["message"] for e in slow.values()]
    results = json.loads((out / "results" / "slow.json").read_text())
    nb = next(iter(results["notebooks"].values()))
    assert nb["cpu_seconds"] > 8  # the spinner used up the notebook's CPU budget (CPU time, not wall clock)
    assert isinstance(nb["seconds"], float)  # the wall clock is recorded beside it, never judged


def _busy(n: int) -> list:
    """n processes that spin until killed: every core of the machine busy with work that is not grading."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.slow
def test_grades_are_the_same_on_an_idle_and_a_busy_machine(tmp_path):
    """A small class graded twice with one seed: once as is, once with two spinning processes per core."""
    subs = tmp_path / "subs"
    small_class(subs, n=3)  # correct, partial (a known mistake and a stub), all stubs
    write(subs, "dave_broken", unit02({"02.stable_softmax": softmax_cell("return (x")}))
    write(subs, "erin_sleeper", unit02({"02.stable_softmax": softmax_cell("import time\ntime.sleep(10**6)")}))
    write(subs, "fred_spinner", unit02({"02.stable_softmax": softmax_cell("while True:\n    pass")},
                                       extra_before=[SPIN.format(s=0.5)]))
    limits = Limits(cell_timeout=5, exercise_timeout=1.5, notebook_timeout=60, wall_factor=10)
    idle = grade(subs, tmp_path / "idle", seed=11, jobs=2, limits=limits, progress=False)
    hogs = _busy(2 * (os.cpu_count() or 2))
    try:
        busy = grade(subs, tmp_path / "busy", seed=11, jobs=2, limits=limits, progress=False)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert (tmp_path / "idle" / "grades.csv").read_bytes() == (tmp_path / "busy" / "grades.csv").read_bytes()
    by = {r["student"]: r for r in busy.results}
    assert by["alice"]["total"] == 11 and 0 < by["bob"]["total"] < 11 and by["carol"]["total"] == 0
    sm = "02.stable_softmax"
    assert by["erin_sleeper"]["exercises"][sm]["status"] == "timeout"
    assert "wall-clock" in by["erin_sleeper"]["exercises"][sm]["message"]
    assert by["fred_spinner"]["exercises"][sm]["status"] == "timeout"
    assert "CPU time" in by["fred_spinner"]["exercises"][sm]["message"]
    assert by["dave_broken"]["exercises"][sm]["status"] == "error"


def test_same_seed_same_cases_different_seed_different_cases(tmp_path):
    from course_lib.grading.session import Plan

    ex = next(e for e in all_exercises() if e.id == "02.stable_softmax")
    a, b, c = Plan.build(ex, 1), Plan.build(ex, 1), Plan.build(ex, 2)
    assert a.blobs == b.blobs and a.blobs != c.blobs
    public = len(ex.cases(0, hidden=False))
    assert len(a.cases) > public


def test_output_inside_submissions_is_refused(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    with pytest.raises(UsageError, match="must not be inside"):
        grade(subs, subs / "out", progress=False)


def test_jobs_default_is_the_number_of_cores():
    from course_lib.cli import make_parser

    args = make_parser().parse_args(["grade", "x"])
    assert args.jobs == (os.cpu_count() or 1)


def test_a_broken_exercise_definition_does_not_stop_the_run(tmp_path, monkeypatch):
    import dataclasses

    from course_lib.exercises import get, registry

    def cases_that_fail(gen, hidden):
        raise RuntimeError("bug in make_cases")

    base = get("02.stable_softmax")
    broken = dataclasses.replace(base, id="02.zz_broken", function="zz_broken", make_cases=cases_that_fail)
    unsendable = dataclasses.replace(base, id="02.zz_unsendable", function="zz_unsendable",
                                     make_cases=lambda gen, hidden: [type(base.cases(0)[0])((object(),))])
    monkeypatch.setitem(registry._REGISTRY, broken.id, broken)
    monkeypatch.setitem(registry._REGISTRY, unsendable.id, unsendable)
    subs, out = tmp_path / "subs", tmp_path / "out"
    write(subs, "alice", unit02())
    s = grade(subs, out, seed=1, jobs=1, limits=FAST, progress=False)
    ex = s.results[0]["exercises"]
    assert ex["02.stable_softmax"]["status"] == "passed" and ex["02.cross_entropy"]["status"] == "passed"
    assert ex["02.zz_broken"]["status"] == "error" and "bug in make_cases" in ex["02.zz_broken"]["message"]
    assert ex["02.zz_unsendable"]["status"] == "error" and "by value" in ex["02.zz_unsendable"]["message"]
    assert any("02.zz_broken" in w for w in s.warnings) and any("02.zz_unsendable" in w for w in s.warnings)
    assert "02.zz_broken" in (out / "grades.csv").read_text().splitlines()[0]


def test_a_grader_error_costs_one_notebook_not_the_class(tmp_path, monkeypatch):
    from course_lib.grading import runner

    calls = []
    real = runner.grade_notebook

    def flaky(nb, exercises, ctx):
        calls.append(nb.filename)
        if len(calls) == 1:
            raise KeyError("simulated bug")
        return real(nb, exercises, ctx)

    monkeypatch.setattr(runner, "grade_notebook", flaky)
    subs, out = tmp_path / "subs", tmp_path / "out"
    write(subs, "alice", unit02())
    write(subs, "bob", unit02())
    s = grade(subs, out, seed=1, jobs=1, limits=FAST, progress=False)
    totals = sorted(r["total"] for r in s.results)
    assert totals == [0, 11]
    assert any("simulated bug" in w for w in s.warnings)
    victim = next(r for r in s.results if r["total"] == 0)
    assert {e["status"] for e in victim["exercises"].values()} == {"error"}
    assert "grader failed" in next(iter(victim["exercises"].values()))["message"]
