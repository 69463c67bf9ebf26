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
    port, token = _free_port(), "test-token-123"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token} --allow-root "
            f"--LabApp.news_url=None")
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token={token}"
        listing = None
        deadline = time.time() + 60
        while time.time() < deadline and listing is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    listing = json.load(r)
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer within 60 s"
        names = {item["name"] for item in listing["content"]}
        expected = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert expected and expected <= names, f"served {sorted(names)}, expected {sorted(expected)}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=5) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
