"""The benchmarks still run and print their tables (tiny sizes; their numbers are measured by hand).

Timing is never asserted here (the machines are noisy); what is asserted is that each script runs,
prints the rows it promises, and refuses bad arguments with a clear message.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _shakespeare_like(tmp_path: Path) -> Path:
    """About 20k characters of verse-shaped text (the benchmark only needs characters)."""
    lines = [f"KING {i % 7}:\nWhat say you, lord {i % 13}? the {('night', 'day', 'sea')[i % 3]} is long.\n\n"
             for i in range(400)]
    path = tmp_path / "tiny.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_train_char_gpt_prints_one_row_per_recipe_and_the_reference(tmp_path):
    r = _bench("bench/train_char_gpt.py", _shakespeare_like(tmp_path), "--steps", 20, "--no-progress", "--threads", 1)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.split()}
    assert {"nanogpt", "course", "nanoGPT"} <= set(rows), r.stdout
    for recipe, lr in (("nanogpt", "1e-03"), ("course", "4e-03")):
        fields = rows[recipe].split()
        assert fields[1] == lr
        seconds, ratio = float(fields[2]), float(fields[3])
        assert abs(seconds / 99.0 - ratio) < 0.006  # the ratio column is time / 99 s
        val, val_ratio, whole = float(fields[4]), float(fields[5]), float(fields[6])
        assert abs(val / 1.89 - val_ratio) < 0.0006
        assert 0.5 < val < 4.5 and 0.5 < whole < 4.5  # about log(vocab) after 20 steps, finite
        verdict = lambda v: "met" if v <= 1.89 else "NOT met"  # noqa: E731
        assert rows[recipe].endswith(f"{verdict(val)} / {verdict(whole)}")
    assert "20 steps of 12x64" in r.stdout


def test_train_char_gpt_one_recipe_and_a_custom_learning_rate(tmp_path):
    r = _bench("bench/train_char_gpt.py", _shakespeare_like(tmp_path), "--steps", 20, "--no-progress",
               "--threads", 1, "--recipe", "course", "--lr", "2e-3")
    assert r.returncode == 0, r.stderr
    recipes = [line.split()[0] for line in r.stdout.splitlines() if re.match(r"(nanogpt|course) ", line)]
    assert recipes == ["course"]
    assert "2e-03" in r.stdout


def test_train_char_gpt_missing_file_is_a_one_line_error(tmp_path):
    r = _bench("bench/train_char_gpt.py", tmp_path / "nope.txt", "--steps", 20)
    assert r.returncode == 2
    assert "no text file at" in r.stderr and "nope.txt" in r.stderr
    assert "Traceback" not in r.stderr


def test_train_char_gpt_too_few_steps_is_a_one_line_error(tmp_path):
    r = _bench("bench/train_char_gpt.py", _shakespeare_like(tmp_path), "--steps", 5)
    assert r.returncode == 2
    assert "--steps must be at least 20, got 5" in r.stderr
    assert "Traceback" not in r.stderr


def test_generation_bench_reports_identical_tokens_and_a_speed_up():
    r = _bench("bench/generation.py", "--new-tokens", 24, "--repeats", 1, "--threads", 1)
    assert r.returncode == 0, r.stderr
    assert "identical outputs: True" in r.stdout, r.stdout
    assert re.search(r"speed-up \d+\.\dx", r.stdout), r.stdout
