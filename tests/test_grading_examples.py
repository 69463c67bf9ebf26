"""The Slurm and Kubernetes examples (issue 15 §2-3) call `course grade` with options it accepts.

Each example's command line is expanded by the shell it runs in (with the variables the scheduler sets)
and handed to a shim in place of `course`; the arguments it receives must parse with `course grade`'s
own parser and name the right shard.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from course_lib.cli import make_parser

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"


@pytest.fixture
def shim(tmp_path):
    """An executable that records its arguments (one JSON list per line) in ``calls.jsonl``."""
    log = tmp_path / "calls.jsonl"
    path = tmp_path / "course-shim"
    path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return path, calls


def parse(argv: list):
    assert argv[0] == "grade", argv
    return make_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown option


def test_slurm_array_task_grades_its_shard(shim, tmp_path):
    path, calls = shim
    env = dict(os.environ, COURSE=str(path), SHARDS="3", SEED="77", SUBMISSIONS="/s", WORK=str(tmp_path),
               SLURM_ARRAY_TASK_ID="2", SLURM_CPUS_PER_TASK="2")
    subprocess.run(["bash", str(EX / "slurm" / "grade.sbatch")], env=env, check=True, timeout=60)
    subprocess.run(["bash", str(EX / "slurm" / "merge.sbatch")], env=env, check=True, timeout=60)
    grade_call, merge_call = calls()
    a = parse(grade_call)
    assert a.submissions == ["/s"] and a.shard == "2/3" and a.seed == 77 and a.out == f"{tmp_path}/shard-2"
    m = parse(merge_call)
    assert m.submissions == ["merge"] + [f"{tmp_path}/shard-{i}" for i in (1, 2, 3)]
    assert m.out == f"{tmp_path}/merged"
    text = (EX / "slurm" / "submit.sh").read_text()
    assert "--array=\"1-$SHARDS\"" in text and "--dependency=\"afterok:$array\"" in text


def test_kubernetes_indexed_job_and_merge_job(shim):
    path, calls = shim
    docs = list(yaml.safe_load_all((EX / "kubernetes" / "grade-job.yaml").read_text()))
    grade_job, merge_job = docs
    spec = grade_job["spec"]
    assert grade_job["kind"] == merge_job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    n = int(env["SHARDS"])
    assert spec["completions"] == n
    script = container["args"][0].replace(".venv/bin/python -m course_lib", str(path))
    for k in range(n):
        subprocess.run([*container["command"], script], env=dict(os.environ, JOB_COMPLETION_INDEX=str(k), **env),
                       check=True, timeout=60)
    shards = [parse(c) for c in calls()]
    assert [a.shard for a in shards] == [f"{k + 1}/{n}" for k in range(n)]
    assert {a.seed for a in shards} == {int(env["SEED"])}
    outs = [a.out for a in shards]
    cmd = merge_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:3] == [".venv/bin/python", "-m", "course_lib"]
    m = parse(cmd[3:])
    assert m.submissions == ["merge", *outs], "the merge names exactly the shards' output folders"
