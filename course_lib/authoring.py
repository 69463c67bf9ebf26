"""Authoring: ``solutions/`` is the source, ``notebooks/`` is built from it (``course build``).

Rules (the markers are nbgrader's):

* An **exercise cell** is a code cell whose first non-blank line is ``# EXERCISE: <id>`` with an id
  from the registry (``course grade --list-exercises`` lists them).
* Inside an exercise cell, the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is
  replaced by a stub that raises ``NotImplementedError`` naming the exercise, indented like the marker.
  Every exercise cell has at least one such region; regions never nest and are always closed.
* Markers anywhere else are an error (they would leak the solution).
* Cells tagged ``solution-only`` are dropped; every output and execution count is cleared.

The build is all-or-nothing: every source is parsed and transformed in memory first, and only then are
the learner notebooks written (each through a temporary file and an atomic rename), so an error leaves
``notebooks/`` as it was. Building twice gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
EXERCISE_RE = re.compile(r"^#\s*EXERCISE:\s*(\S+)\s*$")
NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
SOLUTION_ONLY_TAG = "solution-only"
#: Cells with one of these tags are skipped by nbval and by the autograder (slow or networked).
SKIP_TAGS = ("nbval-skip", "slow", "network")


class BuildError(Exception):
    """A problem in a source notebook, reported as one line naming the file (and cell)."""


@dataclass
class Built:
    """One generated notebook: where it goes and its exact text."""

    name: str
    text: str


def exercise_id_of(source: str) -> Optional[str]:
    """The id in a cell's ``# EXERCISE: <id>`` header, or ``None``."""
    for line in source.splitlines():
        if line.strip():
            m = EXERCISE_RE.match(line.strip())
            return m.group(1) if m else None
    return None


def stub_lines(exercise_id: str, indent: str) -> list:
    return [
        f"{indent}# YOUR CODE HERE (exercise {exercise_id})",
        f'{indent}raise NotImplementedError("exercise {exercise_id}: replace this line with your code")',
    ]


def strip_solution(source: str, exercise_id: str, where: str) -> str:
    """Replace each BEGIN/END SOLUTION region by a stub; ``where`` names file and cell in errors."""
    out: list = []
    open_at: Optional[int] = None
    regions = 0
    for n, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if open_at is not None:
                raise BuildError(f"{where}: nested '{BEGIN}' at line {n} (the one at line {open_at} is not closed)")
            open_at = n
            out.extend(stub_lines(exercise_id, line[: len(line) - len(line.lstrip())]))
        elif stripped == END:
            if open_at is None:
                raise BuildError(f"{where}: '{END}' at line {n} without a matching '{BEGIN}'")
            open_at = None
            regions += 1
        elif _looks_like_marker(stripped):
            raise BuildError(f"{where}: malformed marker at line {n}: {stripped!r} (use '{BEGIN}' / '{END}')")
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise BuildError(f"{where}: '{BEGIN}' at line {open_at} is never closed with '{END}'")
    if regions == 0:
        raise BuildError(f"{where}: exercise cell {exercise_id} has no '{BEGIN}' ... '{END}' region")
    return "\n".join(out)


def _looks_like_marker(stripped_line: str) -> bool:
    """A line meant as a marker: starts with '#' and says BEGIN/END ... SOLUTION (any spelling)."""
    upper = stripped_line.upper()
    return stripped_line.startswith("#") and "SOLUTION" in upper and ("BEGIN" in upper or "END" in upper)


def _has_marker(source: str) -> bool:
    return any(_looks_like_marker(line.strip()) for line in source.splitlines())


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Parse a notebook, turning every problem into a one-line :class:`BuildError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BuildError(f"{path}: cannot read: {e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise BuildError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(raw, dict) or raw.get("nbformat") != 4:
        raise BuildError(f"{path}: not an nbformat 4 notebook")
    try:
        nb = nbformat.reads(text, as_version=4)  # also joins multi-line sources into strings
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises several kinds of validation errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BuildError(f"{path}: not a valid notebook: {first}") from None
    return nb


def build_notebook(nb: nbformat.NotebookNode, path: Path, known_ids: set) -> nbformat.NotebookNode:
    """The learner version of one solution notebook."""
    cells = []
    for number, cell in enumerate(nb.cells, start=1):
        where = f"{path}: cell {number}"
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_ONLY_TAG in tags:
            continue
        source = cell.source
        if cell.cell_type == "code":
            ex_id = exercise_id_of(source)
            if ex_id is not None:
                if ex_id not in known_ids:
                    raise BuildError(f"{where}: unknown exercise id {ex_id!r} (see `course grade --list-exercises`)")
                source = strip_solution(source, ex_id, where)
            elif _has_marker(source):
                raise BuildError(f"{where}: solution markers outside an exercise cell "
                                 f"(start the cell with '# EXERCISE: <id>')")
        elif _has_marker(source):
            raise BuildError(f"{where}: solution markers in a {cell.cell_type} cell")
        new = nbformat.from_dict(dict(cell))
        new.source = source
        if new.cell_type == "code":
            new.outputs = []
            new.execution_count = None
        md = dict(new.get("metadata", {}))
        md.pop("execution", None)
        new.metadata = nbformat.from_dict(md)
        cells.append(new)
    out = nbformat.v4.new_notebook()
    out.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")})
    out.nbformat, out.nbformat_minor = nb.nbformat, nb.nbformat_minor
    out.cells = cells
    return out


def notebook_text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def build_all(src: Path, known_ids: Optional[set] = None) -> list:
    """Every learner notebook built from ``src`` (in memory; nothing is written)."""
    src = Path(src)
    if not src.is_dir():
        raise BuildError(f"{src}: no such folder (expected the solutions folder)")
    if known_ids is None:
        from .exercises import known_ids as _known

        known_ids = _known()
    sources = sorted(p for p in src.glob("*.ipynb") if NOTEBOOK_RE.match(p.name))
    if not sources:
        raise BuildError(f"{src}: no NN_slug.ipynb notebooks found")
    return [Built(p.name, notebook_text(build_notebook(read_notebook(p), p, known_ids))) for p in sources]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_all(built: list, dst: Path) -> list:
    """Write the built notebooks into ``dst``; remove generated notebooks whose source is gone."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    changed = []
    names = {b.name for b in built}
    for b in built:
        target = dst / b.name
        if not target.exists() or target.read_text(encoding="utf-8") != b.text:
            _atomic_write(target, b.text)
            changed.append(b.name)
    for old in dst.glob("*.ipynb"):
        if NOTEBOOK_RE.match(old.name) and old.name not in names:
            old.unlink()
            changed.append(f"{old.name} (removed)")
    return changed


def first_difference(built: list, dst: Path) -> Optional[str]:
    """``None`` when ``dst`` holds exactly what the build makes, else the first difference."""
    dst = Path(dst)
    names = {b.name for b in built}
    for b in built:
        target = dst / b.name
        if not target.exists():
            return f"{target} is missing"
        have = target.read_text(encoding="utf-8")
        if have != b.text:
            return f"{target} differs from the build: {_describe_diff(have, b.text)}"
    if dst.is_dir():
        for old in sorted(dst.glob("*.ipynb")):
            if NOTEBOOK_RE.match(old.name) and old.name not in names:
                return f"{old} has no source in the solutions folder"
    return None


def _describe_diff(have: str, want: str) -> str:
    try:
        a, b = json.loads(have), json.loads(want)
    except json.JSONDecodeError:
        return "not valid JSON"
    ca, cb = a.get("cells", []), b.get("cells", [])
    for i, (x, y) in enumerate(zip(ca, cb), start=1):
        if x != y:
            key = next((k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)), "?")
            return f"cell {i} ({key})"
    if len(ca) != len(cb):
        return f"{len(ca)} cells, the build makes {len(cb)}"
    return "notebook metadata or formatting"


def quiet_kernel_env(folder: Path) -> dict:
    """Environment variables that keep kernel start-up chatter out of stored outputs.

    ipykernel logs a warning about its TCP transport at start-up, and that text can land in whichever cell
    is running when it is flushed, which would make stored outputs unstable. A private IPython directory
    with ``IPKernelApp.log_level = ERROR`` silences it (the learner's own IPython settings are untouched).
    """
    profile = Path(folder) / "ipython" / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text("c.IPKernelApp.log_level = 40  # ERROR\n")
    return {"IPYTHONDIR": str(Path(folder) / "ipython"), "PYTHONHASHSEED": "0"}


def execute_solutions(paths: list, timeout: int = 600) -> list:
    """Run solution notebooks top to bottom and store their outputs (``make execute``).

    Cells tagged ``nbval-skip``, ``slow`` or ``network`` are skipped (their stored output is cleared), so
    stored outputs never depend on the network. Returns ``(name, seconds)`` per notebook.
    """
    import time

    from nbclient import NotebookClient

    results = []
    for path in paths:
        path = Path(path)
        nb = read_notebook(path)
        skipped = {}
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and set(cell.metadata.get("tags", [])) & set(SKIP_TAGS):
                skipped[i] = cell.source
                cell.source = ""
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            saved = {k: os.environ.get(k) for k in ("IPYTHONDIR", "PYTHONHASHSEED")}
            os.environ.update(quiet_kernel_env(Path(tmp)))
            try:
                client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                        resources={"metadata": {"path": str(path.parent.resolve())}})
                client.execute()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        seconds = time.perf_counter() - start
        for i, src in skipped.items():
            nb.cells[i].source = src
            nb.cells[i].outputs = []
            nb.cells[i].execution_count = None
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        nb.metadata.pop("widgets", None)
        _atomic_write(path, notebook_text(nb))
        results.append((path.name, seconds))
    return results
