"""The learner's experience in a real browser: JupyterLab + Chromium, driven by Playwright.

For every unit: open the learner notebook, run all cells, and check that no cell shows an error,
every exercise check says "not attempted", figures render as images and the widget explorer renders; move
its slider (or pick another entry of its menu) and see the figure change. In unit 02, type one correct answer and one known mistake into the
editor and see the check pass and name the mistake. Full-page screenshots are saved under
``test-artifacts/browser/`` (or $COURSE_ARTIFACTS) for a person to look at.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package. Without them the tests skip,
unless COURSE_REQUIRE_TOOLS=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("COURSE_ARTIFACTS", ROOT / "test-artifacts" / "browser"))
TOKEN = "browser-test-token"
UNITS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]

pytestmark = [pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab started the way `make lab` starts it, on a temporary copy of notebooks/."""
    require_tool("chromium", os.path.exists(CHROMIUM), "apt-get install chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require_tool("playwright", False, "pip install playwright")
    work = tmp_path_factory.mktemp("lab")
    nbdir = work / "course"
    shutil.copytree(ROOT / "notebooks", nbdir)
    settings = work / "settings"
    # Show every cell in the DOM (no windowing) and no news toast, so the page is what a learner reads.
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = _free_port()
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={TOKEN} "
            f"--LabApp.user_settings_dir={settings} --LabApp.workspaces_dir={work / 'ws'}")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(work / "rt"))
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}", f"NOTEBOOK_DIR={nbdir}", f"LAB_ARGS={args}"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, 15)
                pytest.fail("JupyterLab did not start: " + (work / "lab.log").read_text()[-2000:])
            time.sleep(0.5)
    yield {"base": base, "dir": nbdir}
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _open(browser, lab, name):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    # A workspace of its own per page, so no notebook of an earlier test is restored next to it.
    page.goto(f"{lab['base']}/lab/workspaces/{name.replace('_', '-')}/tree/{name}.ipynb?token={TOKEN}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    _wait_kernel_connected(lab, name)
    _wait_idle(page)
    return page


def _wait_kernel_connected(lab, name, timeout=90):
    """Wait until the notebook's kernel is up and this page holds a connection to it.

    The page's execution indicator says "idle" from the first paint, seconds before a kernel exists;
    "Run All Cells" pressed in that window runs nothing (CI saw exactly that). The server knows better.
    """
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        with urllib.request.urlopen(f"{lab['base']}/api/sessions?token={TOKEN}", timeout=5) as r:
            sessions = json.load(r)
        kernels = [s["kernel"] for s in sessions if s.get("path", "").endswith(f"{name}.ipynb") and s.get("kernel")]
        last = kernels
        if any(k.get("execution_state") == "idle" and k.get("connections", 0) >= 1 for k in kernels):
            time.sleep(0.5)  # let the page's own status catch up with the server's
            return
        time.sleep(0.3)
    raise AssertionError(f"{name}: no connected, idle kernel after {timeout} s; sessions: {last}")


def _wait_idle(page, timeout=120):
    """Wait until the kernel is idle and no cell is queued or running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = page.evaluate(
            """() => {
                const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt')];
                const running = prompts.some(p => p.textContent.includes('*'));
                const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
                const kbusy = status && status.getAttribute('data-status') === 'busy';
                return running || kbusy;
            }""")
        if not busy:
            time.sleep(0.5)
            return
        time.sleep(0.5)
    raise AssertionError("the notebook was still running after %d s" % timeout)


def _run_all(page, timeout=600):
    """Run > Run All Cells, then wait until every code cell ran or one of them raised."""
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).first.click()
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        state = page.evaluate(
            f"""() => {{
                const cells = [...document.querySelectorAll('{PANEL} .jp-CodeCell')]
                    .filter(c => (c.querySelector('.cm-content') || {{textContent: ''}}).textContent.trim() !== '');
                const prompt = c => (c.querySelector('.jp-InputPrompt') || {{textContent: ''}}).textContent;
                return {{
                    total: cells.length,
                    done: cells.filter(c => /\\[\\d+\\]/.test(prompt(c))).length,
                    running: cells.some(c => prompt(c).includes('*')),
                    raised: [...document.querySelectorAll('{PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                        .some(o => /Traceback/.test(o.textContent)),
                }};
            }}""")
        if not state["running"] and (state["done"] == state["total"] or state["raised"]):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Run All Cells did not finish in {timeout} s: {state}")
    _wait_idle(page)


def _screenshots(page, name):
    """Full-page screenshots: the notebook panel scrolls, so capture it page by page.

    JupyterLab renders cells lazily and its scroll height is an estimate that grows as cells render, so
    the height is re-read after every scroll, and the loop stops when a scroll no longer moves (the end),
    instead of scrolling to a precomputed height past the last cell (a blank page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{name}-[0-9][0-9].png"):  # pages of an earlier, longer run
        old.unlink()
    scroller = f"document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')"
    view = page.evaluate(f"() => {scroller}.clientHeight")
    step = max(view - 80, 200)
    shots, top, last = [], 0, -1
    while len(shots) <= 40:
        page.evaluate(f"() => {scroller}.scrollTo(0, {top})")
        time.sleep(0.3)
        actual = page.evaluate(f"() => {scroller}.scrollTop")
        if actual <= last:  # the panel did not move: the previous page was the end
            break
        # JupyterLab lets the notebook scroll past its last cell: a page with no cell on it is the end.
        visible = (f"() => {{ const r = {scroller}.getBoundingClientRect(); return [...{scroller}"
                   f".querySelectorAll('.jp-Cell')].some(c => {{ const b = c.getBoundingClientRect(); "
                   f"return b.height > 0 && b.bottom > r.top + 40 && b.top < r.bottom; }}); }}")
        if not page.evaluate(visible):
            time.sleep(1.0)  # lazily rendered cells may still be on their way
            if not page.evaluate(visible):
                break
        path = ARTIFACTS / f"{name}-{len(shots) + 1:02d}.png"
        page.screenshot(path=str(path))
        shots.append(path)
        last, top = actual, actual + step
    return shots


def _check_statuses(page):
    return page.evaluate(
        f"() => [...document.querySelectorAll('{PANEL} .course-check')].map(e => [e.dataset.exercise, e.dataset.status])")


@pytest.mark.parametrize("name", UNITS)
def test_learner_notebook_runs_in_jupyterlab(browser, lab, name):
    from course_lib.exercises import for_notebook

    page = _open(browser, lab, name)
    try:
        _run_all(page)
        errors = page.evaluate(
            """() => [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                   .map(e => e.textContent).filter(t => /Traceback|Error/.test(t))""")
        assert not errors, f"{name}: cells show errors: {errors[:2]}"
        statuses = _check_statuses(page)
        expected = {ex.id for ex in for_notebook(name)}
        assert {s[0] for s in statuses} == expected, statuses
        assert all(s[1] == "not_attempted" for s in statuses), statuses
        n_images = page.evaluate(
            "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img')]"
            ".filter(i => i.naturalWidth > 0).length")
        assert n_images >= 2, f"{name}: only {n_images} rendered figures"
        _explorer_changes_figure(page, name)
        shots = _screenshots(page, name)
        print(f"screenshots of {name}: {shots[0].parent} ({len(shots)} pages)")
    finally:
        page.close()
        _shut_down_kernels(lab, name)


def _shut_down_kernels(lab, name):
    """Closing the page leaves its kernel running; shut it down so later notebooks get the CPU."""
    try:
        with urllib.request.urlopen(f"{lab['base']}/api/sessions?token={TOKEN}", timeout=10) as r:
            sessions = json.load(r)
        for s in sessions:
            if s.get("path", "").endswith(f"{name}.ipynb"):
                req = urllib.request.Request(f"{lab['base']}/api/sessions/{s['id']}?token={TOKEN}", method="DELETE")
                urllib.request.urlopen(req, timeout=30).close()
    except OSError as e:  # a kernel left running slows later tests; it does not change their verdict
        print(f"could not shut down the kernel of {name}: {e}")


def _explorer_changes_figure(page, name):
    """Move the first explorer's slider, or pick another entry of its menu; its figure must change."""
    sliders = page.locator(f"{PANEL} .jp-OutputArea-output .widget-slider")
    menus = page.locator(f"{PANEL} .jp-OutputArea-output .widget-dropdown select")
    assert sliders.count() + menus.count() >= 1, f"{name}: no ipywidgets slider or menu rendered"
    control = sliders.first if sliders.count() else menus.first
    control.scroll_into_view_if_needed()
    widget_area = control.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')][1]")
    img = widget_area.locator("img").first
    before = img.get_attribute("src")
    if sliders.count():
        handle = control.locator(".noUi-handle, .ui-slider-handle, [role=slider]").first
        handle.click()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
            time.sleep(0.2)
    else:
        options = control.locator("option")
        assert options.count() >= 2, f"{name}: the explorer's menu has one entry"
        current = control.input_value()
        values = [options.nth(i).get_attribute("value") for i in range(options.count())]
        control.select_option(next(v for v in values if v != current))
    deadline = time.time() + 20
    after = before
    while time.time() < deadline:
        after = widget_area.locator("img").first.get_attribute("src")
        if after != before:
            break
        time.sleep(0.3)
    assert after != before, f"{name}: changing the explorer did not change the figure"


def _cell_index_of(page, marker: str) -> int:
    return page.evaluate(
        """(marker) => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')]
               .findIndex(c => (c.querySelector('.cm-content') || {textContent: ''}).textContent.includes(marker))""",
        marker)


def _type_into_exercise(page, exercise_id: str, lines: list):
    idx = _cell_index_of(page, f"# EXERCISE: {exercise_id}")
    assert idx >= 0, f"no exercise cell {exercise_id}"
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(idx)
    editor = cell.locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    for i, line in enumerate(lines):
        # Type as a person does: CodeMirror indents after "def ...:" by itself.
        page.keyboard.type(line.strip(), delay=5)
        if i < len(lines) - 1:
            page.keyboard.press("Enter")
    page.keyboard.press("Shift+Enter")  # run the exercise cell; focus moves to the check cell
    _wait_idle(page)
    page.keyboard.press("Shift+Enter")  # run the check cell
    _wait_idle(page)
    statuses = dict(_check_statuses(page))
    return statuses.get(exercise_id)


def _wait_saved(page, path: Path, timeout: float = 30):
    """Wait until the saved file holds the check outputs (JupyterLab saves asynchronously)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = path.read_text()
        if '"status": "passed"' in text:
            return
        time.sleep(0.5)
    raise AssertionError(f"{path.name} was not saved with the new check results")


def test_typing_a_correct_answer_and_a_known_mistake(browser, lab):
    page = _open(browser, lab, "02_softmax_sampling")
    try:
        _run_all(page)
        status = _type_into_exercise(page, "02.softmax_with_temperature", [
            "# EXERCISE: 02.softmax_with_temperature",
            "def softmax_with_temperature(logits, temperature):",
            "return softmax(logits / temperature, dim=-1)",
        ])
        assert status == "passed"
        status = _type_into_exercise(page, "02.stable_softmax", [
            "# EXERCISE: 02.stable_softmax",
            "def stable_softmax(x, dim=-1):",
            "e = torch.exp(x)",
            "return e / e.sum(dim=dim, keepdim=True)",
        ])
        assert status == "partial"
        text = page.locator(f'{PANEL} .course-check[data-exercise="02.stable_softmax"]').inner_text()
        assert "Known mistake: no max subtraction" in text
        _screenshots(page, "02_softmax_sampling-answers")
        # Save, then `course progress` in a terminal must show what the checks show in the page.
        shown = dict(_check_statuses(page))
        page.keyboard.press("Control+s")
        _wait_saved(page, lab["dir"] / "02_softmax_sampling.ipynb")
        out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "course_lib", "progress", str(lab["dir"])],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for exercise_id, status in shown.items():
            line = next(ln for ln in out.stdout.splitlines() if ln.startswith(exercise_id + " "))
            assert status.replace("_", " ") in line, (exercise_id, status, line)
    finally:
        page.close()
        _shut_down_kernels(lab, "02_softmax_sampling")
