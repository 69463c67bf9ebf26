"""Optional online cells fail fast and quietly (issue 12 §4).

``course_lib.online.can_download`` is checked against servers on loopback; then every cell tagged
``network`` in ``solutions/`` runs on its own, in a fresh Python with ``transformers`` importable, inside a
network namespace with no network at all (bubblewrap's ``--unshare-net``). Each unit may spend at most
5 s in those cells, print exactly one line per cell that says what it skipped, and nothing on stderr.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib import online

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_BUDGET_S = 5.0


@pytest.fixture(autouse=True)
def _fresh_probes(monkeypatch):
    monkeypatch.delenv(online.OFFLINE_ENV, raising=False)
    online.forget()
    yield
    online.forget()


def test_reachable_host_says_yes_and_prints_nothing(capsys):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert online.can_download("a file", host="127.0.0.1", port=port) is True
    assert capsys.readouterr().out == ""


def test_closed_port_says_no_in_one_line(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        assert online.can_download("GPT-2's weights", host="127.0.0.1", port=port) is False
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("Skipping GPT-2's weights: offline: cannot reach 127.0.0.1")
    assert "The rest of the notebook runs without it." in out


def test_answer_is_remembered_per_host(monkeypatch):
    calls = []
    real = socket.getaddrinfo

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    for _ in range(3):
        online.can_download("x", host="127.0.0.1", port=9, quiet=True)
    assert calls == ["127.0.0.1"]


def test_missing_package_is_named_with_its_install_command(capsys):
    assert online.can_download("weights", host="127.0.0.1", needs=("no_such_package_xyz",)) is False
    assert "it needs no_such_package_xyz (pip install no_such_package_xyz)" in capsys.readouterr().out


def test_offline_switch(monkeypatch, capsys):
    monkeypatch.setenv(online.OFFLINE_ENV, "1")
    assert online.can_download("data", host="127.0.0.1") is False
    assert f"{online.OFFLINE_ENV}=1 is set" in capsys.readouterr().out


def test_unresolvable_host_is_reported_not_raised(capsys):
    assert online.can_download("data", host="no-such-host.invalid", timeout=2.0) is False
    assert "Skipping data: offline" in capsys.readouterr().out


def _network_cells():
    cells = []
    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        for i, c in enumerate(nb["cells"]):
            if c["cell_type"] == "code" and "network" in c.get("metadata", {}).get("tags", []):
                cells.append((path.stem, i, "".join(c["source"])))
    return cells


NETWORK_CELLS = _network_cells()
UNITS = sorted({stem for stem, _, _ in NETWORK_CELLS})


def test_optional_download_cells_ask_first():
    """Every network cell goes through can_download (which is what makes it fail fast)."""
    assert NETWORK_CELLS, "no cell is tagged network"
    for stem, i, src in NETWORK_CELLS:
        assert "can_download(" in src, f"solutions/{stem}.ipynb cell {i} downloads without can_download"


def _offline_python() -> list:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if os.environ.get("COURSE_REQUIRE_TOOLS") == "1":
            pytest.fail("bubblewrap (bwrap) is required to cut the network for this test")
        pytest.skip("needs bubblewrap to run cells without a network")
    return [bwrap, "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", sys.executable]


@pytest.mark.parametrize("stem", UNITS)
def test_network_cells_fail_fast_and_quietly_offline(stem, tmp_path):
    pytest.importorskip("transformers")
    prefix = _offline_python()
    total = 0.0
    for s, i, src in NETWORK_CELLS:
        if s != stem:
            continue
        script = tmp_path / f"cell{i}.py"
        # IPython magics and shell escapes do not belong in an optional cell run on its own
        script.write_text(src)
        env = {k: v for k, v in os.environ.items() if k != online.OFFLINE_ENV}
        env.update(MPLBACKEND="Agg", PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
        start = time.monotonic()
        r = subprocess.run(prefix + [str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
        total += time.monotonic() - start
        where = f"solutions/{stem}.ipynb cell {i}"
        assert r.returncode == 0, f"{where} fails offline:\n{r.stderr[-3000:]}"
        assert r.stderr.strip() == "", f"{where} writes to stderr offline:\n{r.stderr[-3000:]}"
        lines = r.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Skipping "), f"{where} printed offline:\n{r.stdout}"
    # No time is asserted (these machines are noisy): a retrying download announces each retry on stderr,
    # which the checks above refuse. The time is printed for the record.
    print(f"{stem}: optional cells took {total:.1f} s offline")
