"""The benchmarks still run and print their tables (tiny sizes; their numbers are measured by hand).

Timing is never asserted here (the machines are noisy); what is asserted is that each script runs,
prints the rows it promises, and refuses bad arguments with a clear message.
"""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import torch

from course_lib.blocks import LayerNorm
from course_lib.models import GPT, GPTConfig
from course_lib.params import count_parameters

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
    assert {"nanogpt", "course", "baseline", "nanoGPT"} <= set(rows), r.stdout
    base_seconds = float(rows["baseline"].split()[2])
    assert base_seconds > 0, rows["baseline"]
    for recipe, lr in (("nanogpt", "1e-03"), ("course", "4e-03"), ("baseline", "1e-03")):
        fields = rows[recipe].split()
        assert fields[1] == lr
        seconds, to_base, ratio = float(fields[2]), float(fields[3]), float(fields[4])
        assert abs(seconds / 99.0 - ratio) < 0.006  # the "/ 99 s" column is time / 99 s
        # the "/ base" column is time / the baseline's time, from the unrounded times: it lies
        # within what the times printed to 0.1 s allow, give or take its own rounding to 0.01
        low, high = (seconds - 0.05) / (base_seconds + 0.05), (seconds + 0.05) / (base_seconds - 0.05)
        assert low - 0.005 <= to_base <= high + 0.005, rows[recipe]
        val, val_ratio, whole = float(fields[5]), float(fields[6]), float(fields[7])
        train_loss = float(fields[9])
        assert abs(val / 1.89 - val_ratio) < 0.0006
        assert 0.5 < val < 4.5 and 0.5 < whole < 4.5  # about log(vocab) after 20 steps, finite
        assert math.isfinite(train_loss)
        verdict = lambda v: "met" if v <= 1.89 else "NOT met"  # noqa: E731
        assert rows[recipe].endswith(f"{verdict(val)} / {verdict(whole)}")
    assert rows["baseline"].split()[3] == "1.00"
    assert "20 steps of 12x64" in r.stdout


def test_train_char_gpt_one_recipe_and_a_custom_learning_rate(tmp_path):
    r = _bench("bench/train_char_gpt.py", _shakespeare_like(tmp_path), "--steps", 20, "--no-progress",
               "--threads", 1, "--recipe", "course", "--lr", "2e-3")
    assert r.returncode == 0, r.stderr
    recipes = [line.split()[0] for line in r.stdout.splitlines() if re.match(r"(nanogpt|course|baseline) ", line)]
    assert recipes == ["course"]
    assert "2e-03" in r.stdout
    course_row = next(line for line in r.stdout.splitlines() if line.startswith("course "))
    assert course_row.split()[3] == "-"  # no baseline row in this run, so no ratio to it


def _train_char_gpt_module():
    """bench/train_char_gpt.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_char_gpt", ROOT / "bench" / "train_char_gpt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


CHAR_GPT_CONFIG = dict(vocab_size=65, block_size=64, n_layers=4, n_heads=4, d_model=128, dropout=0.0, bias=False,
                       activation="gelu")


def test_baseline_gpt_has_the_course_gpt_parameters_but_the_layernorm_biases():
    """Same matrices; the one difference is that the course's LayerNorm always has a bias
    (GPTConfig.bias switches only the projections' biases), nn.LayerNorm(bias=False) has none."""
    BaselineGPT = _train_char_gpt_module().BaselineGPT
    course, baseline = GPT(GPTConfig(**CHAR_GPT_CONFIG)), BaselineGPT(GPTConfig(**CHAR_GPT_CONFIG))
    layernorm_biases = [m.bias.numel() for m in course.modules() if isinstance(m, LayerNorm)]
    assert layernorm_biases == [128] * 9  # ln1, ln2 of 4 blocks and ln_f
    assert count_parameters(baseline) == 804_096
    assert count_parameters(course) == 805_248 == count_parameters(baseline) + sum(layernorm_biases)
    assert baseline.lm_head.weight is baseline.wte.weight  # tied, counted once


def test_baseline_gpt_is_causal_and_returns_logits_and_loss():
    BaselineGPT = _train_char_gpt_module().BaselineGPT
    torch.manual_seed(0)
    model = BaselineGPT(GPTConfig(**CHAR_GPT_CONFIG)).eval()
    idx = torch.randint(65, (2, 64))
    t = 37
    changed = idx.clone()
    changed[:, t] = (idx[:, t] + 1) % 65
    with torch.no_grad():
        logits, loss = model(idx, idx)
        logits_changed, _ = model(changed, idx)
    assert logits.shape == (2, 64, 65)
    torch.testing.assert_close(logits_changed[:, :t], logits[:, :t], rtol=0, atol=1e-6)  # the past does not see t
    assert (logits_changed[:, t:] - logits[:, t:]).abs().amax(dim=-1).min() > 1e-4  # t and later do
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 65), idx.reshape(-1))
    torch.testing.assert_close(loss, expected)


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


def test_attention_bench_refuses_bad_arguments_with_one_line():
    r = _bench("bench/attention.py", "--threads", 0)
    assert r.returncode == 2 and "--threads must be at least 1, got 0" in r.stderr
    r = _bench("bench/attention.py", "--allocator", "jemalloc")
    assert r.returncode == 2 and "invalid choice: 'jemalloc'" in r.stderr
    assert "Traceback" not in r.stderr


def _tiny_notebook(path: Path, cells) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_notebooks_bench_prints_measured_time_beside_each_claim(tmp_path):
    src = tmp_path / "solutions"
    src.mkdir()
    _tiny_notebook(src / "01_quick.ipynb", [
        ("md", "# Unit 01\nIn this unit you train a model in under 30 seconds.", ()),
        ("code", "import time\ntime.sleep(0.2)", ("train",)),
        ("md", "The next cell takes 1 to 2 seconds.", ()),
        ("code", "x = sum(range(1000))", ()),
        ("code", "raise SystemExit('network cell must be skipped')", ("network",)),
    ])
    _tiny_notebook(src / "02_broken.ipynb", [("code", "1/0", ())])
    r = _bench("bench/notebooks.py", "--src", src, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = next(line for line in lines if line.startswith("01_quick"))
    wall, cpu, train = (float(x) for x in row.split()[1:4])
    assert 0.2 <= train <= wall  # the sleeping train cell, within the whole run
    assert row.split()[4:6] == ["60", "within"] and row.endswith("target: a minute")
    training = next(line for line in lines if "training In this unit" in line)
    assert training.split()[:2] == ["30", "within"]
    broken = next(line for line in lines if line.startswith("02_broken"))
    assert "ERROR" in broken and any("ZeroDivisionError" in line for line in lines)
    cell_row = next(line for line in lines if line.startswith("01_quick") and "1 to 2 seconds" in line)
    assert cell_row.split()[1] == "3" and float(cell_row.split()[2]) >= 0  # claim bound to the next code cell
    assert cell_row.split()[3] == "2"


def test_notebooks_bench_refuses_bad_units(tmp_path):
    r = _bench("bench/notebooks.py", "9", timeout=60)
    assert r.returncode == 2 and "two digits" in r.stderr


def test_grading_bench_prints_the_unit_table_the_class_ratio_and_the_shards():
    """One learner, one unit: grades, grades again in 2 shards and merges, executes with nbclient."""
    r = _bench("bench/grading.py", "--learners", 1, "--units", "05", "--shards", 2, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert "class: 1 learners x 1 units (05) = 1 notebooks" in lines
    graded = next(line for line in lines if line.startswith("graded in "))
    from course_lib.exercises import all_exercises

    n_exercises = sum(ex.notebook.startswith("05_") for ex in all_exercises())
    assert graded.endswith(f"statuses: {{'passed': {n_exercises}}}"), graded  # learner 0 is the correct profile
    row = next(line.split() for line in lines if line.startswith("05 ") and len(line.split()) == 5)
    wall, to_median, cpu, cpu_to_median = (float(x) for x in row[1:])
    assert wall > 0 and cpu > 0 and to_median == cpu_to_median == 1.0  # one unit is its own median
    assert any(line.startswith("units 05: slowest unit 05 at 1.00x") for line in lines)
    shard = next(line.split() for line in lines if line.startswith(" 2 "))
    assert shard[-3:] == ["byte-identical", "to", "N=1"], shard  # 1 learner: one shard is empty
    assert sorted(shard[1:3]) == ["0,", "1"] or sorted(shard[1:3]) == ["0", "1,"], shard
    plain = next(line.split() for line in lines if line.startswith("05 ") and len(line.split()) == 4)
    assert float(plain[1]) > 0 and abs(float(plain[2]) / float(plain[1]) - float(plain[3])) < 0.01
    ratio = next(line for line in lines if line.startswith("ratio grading / plain execution: "))
    assert "(target <= 0.25: " in ratio
    assert "(estimated from 1 executed notebooks (1 per unit))" in r.stdout
    assert re.search(r"load average \(1 min\) while measuring: min \d+\.\d, mean \d+\.\d, max \d+\.\d", r.stdout)


def test_grading_bench_refuses_bad_arguments_with_one_line():
    for args, message in ((("--learners", 0), "--learners must be at least 1, got 0"),
                          (("--shards", 0), "--shards must be at least 1, got 0"),
                          (("--jobs", 0), "--jobs must be at least 1, got 0"),
                          (("--units", "99"), "no unit with exercises among --units 99")):
        r = _bench("bench/grading.py", *args, timeout=120)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
