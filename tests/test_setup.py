"""The set-up: pyproject.toml and environment.yml agree; `make lab` serves notebooks/."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name
NOT_IN_PYPROJECT = {"python", "pip"}


def _split(req: str):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    name, spec = m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")
    return CONDA_NAMES.get(name, name), spec


def _pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    proj = data["project"]
    deps = dict(_split(r) for r in proj["dependencies"])
    deps.update(dict(_split(r) for r in proj["optional-dependencies"]["dev"]))
    return proj, deps


def _conda():
    deps, pip_section = {}, []
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        if in_deps and re.match(r"^  - pip:\s*$", line):
            pip_section.append(line)
            continue
        m = re.match(r"^  - (\S.*)$", line) if in_deps else None
        if m:
            name, spec = _split(m.group(1))
            deps[name] = spec
    return deps, pip_section


def test_environment_yml_matches_pyproject():
    proj, py_deps = _pyproject()
    conda_deps, pip_section = _conda()
    assert pip_section, "environment.yml must install the course itself (pip: -e .)"
    conda_pkgs = {k: v for k, v in conda_deps.items() if k not in NOT_IN_PYPROJECT}
    missing = sorted(set(py_deps) - set(conda_pkgs))
    extra = sorted(set(conda_pkgs) - set(py_deps))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"
    differ = {k: (py_deps[k], conda_pkgs[k]) for k in py_deps if py_deps[k] != conda_pkgs[k]}
    assert not differ, f"version ranges differ (pyproject, conda): {differ}"
    assert conda_deps["python"] == proj["requires-python"].replace(" ", "")


def test_python_range_and_core_packages():
    proj, deps = _pyproject()
    assert proj["requires-python"].replace(" ", "") == ">=3.10,<3.14"
    for core in ("jupyterlab", "numpy", "torch", "matplotlib", "nbval", "ipywidgets", "nbformat", "nbclient", "tqdm"):
        assert core in deps, core
        assert deps[core].startswith(">="), f"{core} must be a range, not a pin"


def test_makefile_has_the_documented_targets():
    text = (ROOT / "Makefile").read_text()
    for target in ("lab", "test", "notebooks", "execute", "grade"):
        assert re.search(rf"^{target}:", text, re.M), target


def test_readme_states_the_two_commands_first():
    text = (ROOT / "README.md").read_text()
    first = text.find("make lab"), text.find("make test")
    assert 0 < first[0] < 1500 and 0 < first[1] < 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs the .venv made by make")
def test_make_lab_serves_the_notebooks_folder(tmp_path):
    """`make lab` exactly as the README says it, no arguments, as whoever runs the tests (root in CI).

    JupyterLab picks the next free port when 8888 is taken and prints its address with a token; the test
    reads that line and asks the server for the folder listing.
    """
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["make", "lab"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        address = None
        deadline = time.time() + 90
        while time.time() < deadline and address is None:
            m = re.search(r"(http://(?:localhost|127\.0\.0\.1):\d+)/lab\?token=([0-9a-f]+)", log_path.read_text())
            if m:
                address = m.groups()
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.5)
        assert address is not None, f"`make lab` did not start JupyterLab:\n{log_path.read_text()[-3000:]}"
        base, token = address
        listing = None
        while time.time() < deadline and listing is None:
            try:
                with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=2) as r:
                    listing = json.load(r)
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "JupyterLab printed its address but did not answer"
        names = {item["name"] for item in listing["content"]}
        expected = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert expected and expected <= names, f"served {sorted(names)}, expected {sorted(expected)}"
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=5) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


def test_make_lab_adds_allow_root_only_for_root():
    """The flag is in the command for uid 0 and absent for anyone else (`make -n` prints the command)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (and setpriv) to compare root with another user")
    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "jupyter lab" in out.stdout and "--allow-root" in out.stdout, out.stdout + out.stderr
    other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "make", "-n", "lab"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "jupyter lab" in other.stdout and "--allow-root" not in other.stdout, other.stdout + other.stderr
