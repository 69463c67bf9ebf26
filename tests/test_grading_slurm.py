"""Slurm, for real (issue 15 §2): the course's own `examples/slurm/` scripts on a single-node Slurm cluster.

`examples/slurm/submit.sh` queues `grade.sbatch` as an array job (one shard per array task,
SLURM_ARRAY_TASK_ID -> `--shard I/N`) and `merge.sbatch` with `--dependency=afterok`; the merged
`grades.csv` must be byte for byte that of one unsharded run with the same seed, a second submission
(a re-grade after a learner resubmitted) must replace the merge, and a failing shard must keep the merge
from running.

The cluster: a Slurm already answering `sinfo` is used as it is (set COURSE_SLURM_SHARED to a folder
its nodes can all write if it has more than one node). Otherwise, as root, `scripts/slurm_local.sh`
starts a private one (munged, slurmctld, slurmd with their own slurm.conf, key, socket and ports in a
temporary folder) and stops it afterwards. Not root and no Slurm: skipped, or failed under
COURSE_REQUIRE_TOOLS=1 (CI, which installs slurm-wlm and munge in .ci/run).

Jobs may queue behind others on a busy machine: every wait is bounded by COURSE_SLURM_TIMEOUT seconds
(default 1800) and nothing here asserts how long anything took.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from course_lib.grading.runner import shard_of
from tests.conftest import require_tool
from tests.grading_fixtures.build import CORRECT, stub, unit02, write
from tests.grading_fixtures.faults import softmax_cell

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "examples" / "slurm"
LOCAL = ROOT / "scripts" / "slurm_local.sh"
PYTHON = ROOT / ".venv" / "bin" / "python"
SHARDS, SEED = 2, 7
TIMEOUT = float(os.environ.get("COURSE_SLURM_TIMEOUT", "1800"))
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/bin/sinfo")

pytestmark = [pytest.mark.slow]


def _slurm_answers(env: dict) -> bool:
    """Whether a configured Slurm controller answers (sinfo lists at least one node)."""
    if not shutil.which("sinfo", path=env.get("PATH")):
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0 and bool(r.stdout.strip())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The environment (SLURM_CONF, ...) for sbatch and friends, and a shared folder for the jobs."""
    env = dict(os.environ)
    env.pop("COURSE", None)  # the scripts' default command (the checkout's venv) is what instructors get
    shared = os.environ.get("COURSE_SLURM_SHARED")
    if _slurm_answers(env):
        base = Path(tempfile.mkdtemp(prefix="course-slurm-test-", dir=shared)) if shared else \
            tmp_path_factory.mktemp("slurm")
        yield dict(env=env, base=base, private=False)
        return
    if os.geteuid() != 0:
        require_tool("a running Slurm cluster", False,
                     "none answers sinfo, and only root can start the private one of scripts/slurm_local.sh")
    missing = [p for p in DAEMONS if not os.access(p, os.X_OK)]
    require_tool("Slurm and munge", not missing, f"missing {', '.join(missing)}: apt-get install slurm-wlm munge")
    # munged wants its socket's folder and every parent searchable by all, so not under pytest's 0700 tmp.
    where = Path(tempfile.mkdtemp(prefix="course-slurm-", dir="/tmp"))
    try:
        started = subprocess.run(["bash", str(LOCAL), "start", str(where)], capture_output=True, text=True,
                                 timeout=180)
        if started.returncode != 0:
            pytest.fail(f"scripts/slurm_local.sh start {where} failed (exit {started.returncode}):\n"
                        f"{started.stdout}{started.stderr}")
        env["SLURM_CONF"] = str(where / "slurm.conf")
        yield dict(env=env, base=tmp_path_factory.mktemp("slurm"), private=True)
    finally:
        stopped = subprocess.run(["bash", str(LOCAL), "stop", str(where)], capture_output=True, text=True,
                                 timeout=120)
        if stopped.returncode == 0:
            shutil.rmtree(where, ignore_errors=True)
        else:
            print(f"scripts/slurm_local.sh stop {where} failed:\n{stopped.stdout}{stopped.stderr}")


def small_class(subs: Path) -> dict:
    """Eight learners over the shards: a correct notebook, a known mistake, stubs, nothing handed in."""
    everything_stubbed = unit02({k: stub(k) for k in CORRECT})
    write(subs, "ada", unit02())
    write(subs, "José García", unit02({"02.stable_softmax": softmax_cell("e = x.exp()\nreturn e / e.sum(dim=dim, keepdim=True)")}))
    write(subs, "Zoë", unit02({"02.cross_entropy": stub("02.cross_entropy")}))
    for name in ("learner 02", "learner 03", "learner 05", "learner 06"):
        write(subs, name, everything_stubbed)
    (subs / "empty 07").mkdir()
    names = sorted(p.name for p in subs.iterdir())
    by_shard = {i: sorted(n for n in names if shard_of(n, SHARDS) == i) for i in range(1, SHARDS + 1)}
    assert all(by_shard.values()), f"every shard needs a learner: {by_shard}"
    return by_shard


def snapshot_course(dest: Path) -> dict:
    """A copy of course_lib, put first on PYTHONPATH, so that every job grades with the same grader.

    (Colleagues edit course_lib in this checkout while tests run; the merge rightly refuses shards graded by
    different grader versions, so without a snapshot an edit between two array tasks fails the merge.)
    """
    shutil.copytree(ROOT / "course_lib", dest / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(dest)}


def single_run(subs: Path, out: Path, env: dict) -> bytes:
    r = subprocess.run([str(PYTHON), "-m", "course_lib", "grade", str(subs), "--out", str(out), "--seed", str(SEED),
                        "--jobs", "2", "--quiet"], cwd=out.parent, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    return (out / "grades.csv").read_bytes()


def submit(subs: Path, work: Path, env: dict, seed=SEED) -> tuple:
    r = subprocess.run(["bash", str(SLURM / "submit.sh"), str(subs), str(work), str(SHARDS), str(seed)],
                       cwd=work.parent, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"submit.sh failed (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    array = re.search(r"^grade array job: (\d+)", r.stdout, re.M)
    merge = re.search(r"^merge job: (\d+)", r.stdout, re.M)
    assert array and merge, r.stdout
    return array.group(1), merge.group(1)


FIELDS = ("JobId", "ArrayTaskId", "JobState", "Reason", "ExitCode", "StartTime", "EndTime")


def records(job: str, env: dict) -> list:
    """`scontrol show job -o JOB`, one dict per job (an array: per task, pending tasks as one range)."""
    r = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"scontrol show job {job}: {r.stderr.strip()}"
    return [{k: m.group(1) for k in FIELDS if (m := re.search(rf"(?:^| ){k}=(\S*)", line))}
            for line in r.stdout.splitlines() if line.strip()]


def tasks_ended(recs: list) -> bool:
    ids = sorted(int(t["ArrayTaskId"]) for t in recs if t.get("ArrayTaskId", "").isdigit())
    return ids == list(range(1, SHARDS + 1)) and all(t["JobState"] in ENDED for t in recs)


def diagnosis(jobs: tuple, work: Path, env: dict) -> str:
    out = [subprocess.run(["scontrol", "show", "job", "-o", j], env=env, capture_output=True, text=True,
                          timeout=60).stdout for j in jobs]
    out.append(subprocess.run(["sinfo"], env=env, capture_output=True, text=True, timeout=60).stdout)
    for log in sorted((work / "logs").glob("*.log")):
        out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
    return "\n".join(out)


def wait(jobs: tuple, work: Path, env: dict, deadline: float, done) -> tuple:
    """Poll until done(array records, merge records); on the deadline cancel both jobs and fail."""
    while True:
        array, merge = records(jobs[0], env), records(jobs[1], env)
        if done(array, merge):
            return array, merge
        if time.monotonic() > deadline:
            report = diagnosis(jobs, work, env)
            subprocess.run(["scancel", *jobs], env=env, timeout=60)
            pytest.fail(f"the jobs {jobs} had not ended after COURSE_SLURM_TIMEOUT={TIMEOUT:.0f}s "
                        f"(a busy cluster? raise it):\n{report}")
        time.sleep(2)


def merge_ended(array, merge):
    return tasks_ended(array) and merge[0]["JobState"] in ENDED


def assert_succeeded(jobs, array, merge, work, env):
    bad = [t for t in array + merge if (t["JobState"], t["ExitCode"]) != ("COMPLETED", "0:0")]
    assert not bad, f"jobs that did not complete: {bad}\n{diagnosis(jobs, work, env)}"
    # afterok held: the merge started once the last shard had ended (Slurm's timestamps, whole seconds)
    assert merge[0]["StartTime"] >= max(t["EndTime"] for t in array), (array, merge)


def totals(csv_bytes: bytes) -> dict:
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode())))
    return {r["student"]: (float(r["total"]), float(r["max_total"])) for r in rows}


def test_slurm_array_and_merge_equal_a_single_run_and_a_resubmission_regrades(cluster, tmp_path):
    env, base = cluster["env"], cluster["base"]
    deadline = time.monotonic() + TIMEOUT
    env = dict(env, **snapshot_course(base))
    subs, work = base / "submissions", base / "work"
    by_shard = small_class(subs)
    names = sorted(n for ns in by_shard.values() for n in ns)

    t0 = time.monotonic()
    single = single_run(subs, base / "single", env)
    t1 = time.monotonic()
    jobs = submit(subs, work, env)
    array, merge = wait(jobs, work, env, deadline, merge_ended)
    t2 = time.monotonic()
    assert_succeeded(jobs, array, merge, work, env)

    # each array task graded the shard named by its SLURM_ARRAY_TASK_ID, and only that shard
    for i, members in by_shard.items():
        run = json.loads((work / f"shard-{i}" / ".grading" / "run.json").read_text())
        assert run["shard"] == [i, SHARDS] and sorted(run["students"]) == members, (i, run)
    merged = (work / "merged" / "grades.csv").read_bytes()
    assert merged == single, f"merged:\n{merged.decode()}\nsingle run:\n{single.decode()}"
    got = totals(merged)
    assert sorted(got) == names
    assert got["ada"][0] == got["ada"][1] > 0 and 0 < got["José García"][0] < got["José García"][1]
    assert got["learner 05"][0] == 0 and got["empty 07"][0] == 0
    assert sorted(p.name for p in (work / "merged" / "feedback").iterdir()) == \
        sorted(p.name for p in (base / "single" / "feedback").iterdir())
    logs = sorted(p.name for p in (work / "logs").iterdir())
    assert logs == sorted([f"course-grade-{jobs[0]}_{i}.log" for i in range(1, SHARDS + 1)] +
                          [f"course-grade-merge-{jobs[1]}.log"]), logs

    # A learner resubmits; the same submit.sh again re-grades only them and replaces the merge.
    write(subs, "learner 05", unit02())
    single2 = single_run(subs, base / "single", env)
    t3 = time.monotonic()
    jobs2 = submit(subs, work, env)
    array2, merge2 = wait(jobs2, work, env, deadline, merge_ended)
    t4 = time.monotonic()
    assert_succeeded(jobs2, array2, merge2, work, env)
    merged2 = (work / "merged" / "grades.csv").read_bytes()
    assert merged2 == single2 != single
    assert totals(merged2)["learner 05"] == totals(merged2)["ada"]
    assert not list(work.glob("merged.before-*")), "the previous merge is removed once the new one is in place"
    changed = shard_of("learner 05", SHARDS)
    for i in range(1, SHARDS + 1):
        line = (work / "logs" / f"course-grade-{jobs2[0]}_{i}.log").read_text()
        graded = int(re.search(r"(\d+) notebooks graded", line).group(1))
        assert graded == (1 if i == changed else 0), (i, line)
    print(f"\nslurm: {len(names)} learners, {SHARDS} shards + merge; single run {t1 - t0:.0f}s, first submission "
          f"{t2 - t1:.0f}s, re-grade submission {t4 - t3:.0f}s (private cluster: {cluster['private']})")


def test_a_failed_shard_keeps_the_merge_from_running(cluster):
    env, base = cluster["env"], cluster["base"]
    subs, work = base / "bad-submissions", base / "bad-work"
    small_class(subs)
    jobs = submit(subs, work, env, seed="not-a-number")  # every shard exits 2 on the bad --seed

    def never(array, merge):
        # the merge ended without running (kill_invalid_depend), or waits on a dependency that cannot be met
        return tasks_ended(array) and (merge[0]["JobState"] in ENDED or
                                       merge[0]["Reason"] == "DependencyNeverSatisfied")

    array, merge = wait(jobs, work, env, time.monotonic() + TIMEOUT, never)
    subprocess.run(["scancel", jobs[1]], env=env, timeout=60)
    assert all(t["JobState"] == "FAILED" and t["ExitCode"] == "2:0" for t in array), array
    assert merge[0]["Reason"] == "DependencyNeverSatisfied" or merge[0]["JobState"] == "CANCELLED", merge
    assert not (work / "merged").exists()
    assert not (work / "logs" / f"course-grade-merge-{jobs[1]}.log").exists(), "the merge job never started"
    log = (work / "logs" / f"course-grade-{jobs[0]}_1.log").read_text()
    assert "--seed" in log and "not-a-number" in log, log


@pytest.mark.parametrize("args,text", [
    (["SUBS", "WORK", "0", "7"], "SHARDS must be a whole number >= 1, not '0'"),
    (["SUBS", "WORK", "two", "7"], "SHARDS must be a whole number >= 1, not 'two'"),
    (["nowhere", "WORK", "2", "7"], "SUBMISSIONS: no such folder: nowhere"),
    (["SUBS", "WORK", "2"], "usage:"),
])
def test_submit_sh_refuses_bad_arguments_before_queueing_anything(tmp_path, args, text):
    (tmp_path / "SUBS").mkdir()
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    (tmp_path / "bin").mkdir()
    sbatch = tmp_path / "bin" / "sbatch"  # a stand-in that records being called: it must not be
    sbatch.write_text(f"#!/bin/sh\ntouch {tmp_path / 'called'}\n")
    sbatch.chmod(0o755)
    r = subprocess.run(["bash", str(SLURM / "submit.sh"), *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "called").exists() and not (tmp_path / "WORK").exists()
