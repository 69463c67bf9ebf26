"""`course build`: solutions/ -> notebooks/, stable, all-or-nothing, with one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.authoring import BuildError, build_all, first_difference, write_all

ROOT = Path(__file__).resolve().parents[1]


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nb.cells = list(cells)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"
    return nb


EXERCISE_SRC = """# EXERCISE: 02.stable_softmax
def stable_softmax(x, dim=-1):
    \"\"\"doc\"\"\"
    ### BEGIN SOLUTION
    m = x.amax(dim=dim, keepdim=True)
    e = (x - m).exp()
    return e / e.sum(dim=dim, keepdim=True)
    ### END SOLUTION
"""


def _write(folder: Path, name: str, nb) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    nbformat.write(nb, p)
    return p


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _run(*args, cwd):
    """`course ARGS` in this process (a subprocess per test would import torch each time)."""
    import contextlib
    import io
    import os

    from course_lib.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return _Result(code, out.getvalue(), err.getvalue())


def test_the_command_line_entry_point_works():
    r = subprocess.run([sys.executable, "-m", "course_lib", "build", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout


def _good(tmp_path):
    code = nbformat.v4.new_code_cell(EXERCISE_SRC)
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    code.execution_count = 3
    only = nbformat.v4.new_code_cell("print('answer key')", metadata={"tags": ["solution-only"]})
    _write(tmp_path / "solutions", "02_softmax_sampling.ipynb",
           _nb(nbformat.v4.new_markdown_cell("# Unit"), code, only,
               nbformat.v4.new_code_cell('check("02.stable_softmax", stable_softmax)')))


def test_build_replaces_solutions_clears_outputs_and_drops_solution_only_cells(tmp_path):
    _good(tmp_path)
    r = _run("build", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    nb = nbformat.read(tmp_path / "notebooks" / "02_softmax_sampling.ipynb", as_version=4)
    assert len(nb.cells) == 3
    ex = nb.cells[1]
    assert "amax" not in ex.source and "BEGIN SOLUTION" not in ex.source
    assert 'raise NotImplementedError("exercise 02.stable_softmax' in ex.source
    assert "    raise NotImplementedError" in ex.source  # indented like the marker
    assert ex.source.startswith("# EXERCISE: 02.stable_softmax\ndef stable_softmax(x, dim=-1):")
    assert ex.outputs == [] and ex.execution_count is None
    assert "answer key" not in json.dumps(nb)


def test_build_is_stable_and_check_detects_staleness(tmp_path):
    _good(tmp_path)
    assert _run("build", cwd=tmp_path).returncode == 0
    target = tmp_path / "notebooks" / "02_softmax_sampling.ipynb"
    first = target.read_bytes()
    r = _run("build", cwd=tmp_path)
    assert r.returncode == 0 and "0 changed" in r.stdout
    assert target.read_bytes() == first
    assert _run("build", "--check", cwd=tmp_path).returncode == 0
    nb = nbformat.read(target, as_version=4)
    nb.cells[0].source = "# edited by hand"
    nbformat.write(nb, target)
    r = _run("build", "--check", cwd=tmp_path)
    assert r.returncode != 0
    assert "02_softmax_sampling.ipynb" in r.stderr and "cell 1" in r.stderr


def test_check_reports_missing_and_orphan_notebooks(tmp_path):
    _good(tmp_path)
    built = build_all(tmp_path / "solutions")
    assert "missing" in first_difference(built, tmp_path / "notebooks")
    write_all(built, tmp_path / "notebooks")
    (tmp_path / "notebooks" / "99_orphan.ipynb").write_text("{}")
    assert "99_orphan" in first_difference(built, tmp_path / "notebooks")


@pytest.mark.parametrize("source,expected", [
    (EXERCISE_SRC.replace("    ### END SOLUTION\n", ""), "never closed"),
    (EXERCISE_SRC.replace("    m = x", "    ### BEGIN SOLUTION\n    m = x"), "nested"),
    (EXERCISE_SRC.replace("    ### BEGIN SOLUTION\n", ""), "without a matching"),
    (EXERCISE_SRC.replace("# EXERCISE: 02.stable_softmax\n", ""), "outside an exercise cell"),
    (EXERCISE_SRC.replace("02.stable_softmax", "02.no_such_exercise"), "unknown exercise id"),
    (EXERCISE_SRC.replace("### BEGIN SOLUTION", "### Begin Solution"), "malformed marker"),
    ("# EXERCISE: 02.stable_softmax\ndef stable_softmax(x, dim=-1):\n    pass\n", "has no"),
])
def test_malformed_sources_name_file_and_cell_and_write_nothing(tmp_path, source, expected):
    _good(tmp_path)
    assert _run("build", cwd=tmp_path).returncode == 0
    before = (tmp_path / "notebooks" / "02_softmax_sampling.ipynb").read_bytes()
    _write(tmp_path / "solutions", "03_attention.ipynb",
           _nb(nbformat.v4.new_markdown_cell("# Unit 3"), nbformat.v4.new_code_cell(source)))
    r = _run("build", cwd=tmp_path)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "03_attention.ipynb: cell 2" in line and expected in line
    assert not (tmp_path / "notebooks" / "03_attention.ipynb").exists()
    assert (tmp_path / "notebooks" / "02_softmax_sampling.ipynb").read_bytes() == before


def test_markers_in_markdown_are_rejected(tmp_path):
    _write(tmp_path / "solutions", "02_softmax_sampling.ipynb",
           _nb(nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nsecret\n### END SOLUTION")))
    with pytest.raises(BuildError, match="cell 1: solution markers in a markdown cell"):
        build_all(tmp_path / "solutions")


def test_missing_folder_and_invalid_json_give_one_line(tmp_path):
    r = _run("build", "--src", "nowhere", cwd=tmp_path)
    assert r.returncode != 0 and "nowhere: no such folder" in r.stderr
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "02_softmax_sampling.ipynb").write_text('{"cells": [ oops')
    r = _run("build", cwd=tmp_path)
    assert r.returncode != 0
    assert "02_softmax_sampling.ipynb: not valid JSON (line 1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "notebooks").exists()


def test_nbformat3_is_rejected(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "02_softmax_sampling.ipynb").write_text(
        json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}))
    with pytest.raises(BuildError, match="not an nbformat 4 notebook"):
        build_all(tmp_path / "solutions")


def test_repository_notebooks_are_what_the_build_makes():
    built = build_all(ROOT / "solutions")
    assert first_difference(built, ROOT / "notebooks") is None


def test_every_registered_exercise_appears_in_its_solution_notebook():
    from course_lib.authoring import exercise_id_of
    from course_lib.exercises import all_exercises

    present = {}
    for p in (ROOT / "solutions").glob("*.ipynb"):
        nb = nbformat.read(p, as_version=4)
        for c in nb.cells:
            if c.cell_type == "code" and exercise_id_of(c.source):
                present[exercise_id_of(c.source)] = p.stem
    for ex in all_exercises():
        if (ROOT / "solutions" / f"{ex.notebook}.ipynb").exists():
            assert present.get(ex.id) == ex.notebook, f"{ex.id} has no exercise cell in solutions/{ex.notebook}.ipynb"
            assert f'check("{ex.id}", {ex.function})' in (ROOT / "solutions" / f"{ex.notebook}.ipynb").read_text().replace('\\"', '"'), \
                f"{ex.id}: no check cell"
