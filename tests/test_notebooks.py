"""Every notebook runs: nbval on solutions/ (stored outputs must match), nbval-lax on notebooks/.

Each notebook is one test that runs nbval in a subprocess with its own kernel, so that one pytest
session (and pytest-xdist) covers unit tests and notebooks alike, and a failure shows nbval's report.
Cells tagged nbval-skip (optional downloads) are skipped by nbval itself.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _nbval(path: Path, mode: str, tmp_path: Path) -> subprocess.CompletedProcess:
    from course_lib.authoring import quiet_kernel_env

    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), **quiet_kernel_env(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", mode,
         "--nbval-current-env", "--nbval-cell-timeout=300", "-o", "addopts=", "--rootdir", str(tmp_path), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_notebook_matches_its_stored_outputs(path, tmp_path):
    r = _nbval(path, "--nbval", tmp_path)
    assert r.returncode == 0, f"nbval failed for solutions/{path.name}:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_learner_notebook_runs_top_to_bottom(path, tmp_path):
    r = _nbval(path, "--nbval-lax", tmp_path)
    assert r.returncode == 0, f"learner notebook notebooks/{path.name} fails:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"


def test_there_is_a_learner_notebook_for_every_solution():
    assert [p.name for p in SOLUTIONS] == [p.name for p in NOTEBOOKS]
    assert len(SOLUTIONS) >= 1


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_learner_notebook_checks_all_say_not_attempted(path, tmp_path):
    """Run the learner notebook and read every check's status from its outputs."""
    import nbformat
    from nbclient import NotebookClient

    from course_lib.authoring import SKIP_TAGS
    from course_lib.exercises import for_notebook
    from course_lib.progress import _check_status

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if not set(c.metadata.get("tags", [])) & set(SKIP_TAGS)]
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name}: {out.ename}: {out.evalue}"
    statuses = _check_status(nb)
    expected = {ex.id for ex in for_notebook(path.stem)}
    assert set(statuses) == expected, f"checks shown {sorted(statuses)}, exercises {sorted(expected)}"
    assert all(s == "not_attempted" for s, _ in statuses.values()), statuses
