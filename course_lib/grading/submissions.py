"""Finding and reading submissions: ``SUBMISSIONS/<student>/<NN_slug>.ipynb``.

Everything here reads untrusted files without running them: names are made safe for the output folder,
symbolic links are refused (a link to ``solutions/`` must not be graded as the learner's work), a file
that is not JSON or not a notebook becomes a clear message, an nbformat 3 notebook is converted.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..authoring import SKIP_TAGS, exercise_id_of

MAX_NOTEBOOK_BYTES = 50 * 2**20
#: Cells the grader does not run: nbval's skip tags (slow, networked) and ``train``, the cells that train a
#: model for the lesson's demos (no exercise depends on them; skipping them keeps units 08-10 fast).
TRAIN_TAG = "train"
GRADER_SKIP_TAGS = (*SKIP_TAGS, TRAIN_TAG)
_UNIT_RE = re.compile(r"^(\d\d)[_\- ]")


@dataclass
class CodeCell:
    index: int            # 1-based position among all cells of the notebook (what Jupyter users count)
    source: str
    tags: list
    exercise_id: Optional[str] = None

    @property
    def skip_tags(self) -> list:
        return [t for t in self.tags if t in GRADER_SKIP_TAGS]

    @property
    def skipped(self) -> bool:
        return bool(self.skip_tags)


@dataclass
class NotebookFile:
    """One submitted notebook, parsed but not run."""

    stem: str                 # the course notebook it stands for ("02_softmax_sampling")
    filename: str             # the file's name as submitted
    sha256: Optional[str]
    error: Optional[str] = None
    notes: list = field(default_factory=list)
    code_cells: list = field(default_factory=list)
    exercise_cells: dict = field(default_factory=dict)

    def cell(self, index: int) -> CodeCell:
        return next(c for c in self.code_cells if c.index == index)


@dataclass
class Student:
    name: str                      # the folder name, as is
    safe: str                      # a file name for results/ and feedback/
    folder: Path
    notebooks: dict = field(default_factory=dict)   # stem -> Path
    notes: list = field(default_factory=list)
    refused: dict = field(default_factory=dict)     # stem -> why the file for it is not graded


def safe_name(name: str) -> str:
    """A file name for ``name``: letters, digits, ``-``, ``_`` and ``.`` (never leading), plus a short hash
    when anything had to change, so two different names never collide."""
    norm = unicodedata.normalize("NFC", name)
    cleaned = re.sub(r"[^\w.\-]", "_", norm, flags=re.UNICODE).lstrip(".")[:80]
    if cleaned != name or not cleaned:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cleaned = f"{cleaned or 'student'}-{digest}"
    return cleaned


def find_students(root: Path, stems: set) -> tuple:
    """``(students, warnings)``: every folder in ``root`` with the course notebooks it holds."""
    students, warnings = [], []
    used: dict = {}
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") and entry.name in (".", "..", ".ipynb_checkpoints", ".DS_Store"):
            continue
        if entry.is_symlink():
            warnings.append(f"{entry.name}: a symbolic link, skipped (copy the folder itself)")
            continue
        if not entry.is_dir():
            if entry.suffix == ".ipynb":
                warnings.append(f"{entry.name}: a notebook outside a student folder, skipped "
                                f"(expected SUBMISSIONS/<student>/<NN_slug>.ipynb)")
            continue
        safe = safe_name(entry.name)
        if safe.lower() in used:
            safe = f"{safe}-{hashlib.sha256(entry.name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        used[safe.lower()] = entry.name
        student = Student(entry.name, safe, entry)
        _collect(student, stems)
        students.append(student)
    return students, warnings


def _collect(student: Student, stems: set) -> None:
    """Map the student's files onto course notebooks (exact names first, then ``NN_...`` look-alikes)."""
    files = []
    for p in sorted(student.folder.rglob("*.ipynb")):
        rel = p.relative_to(student.folder)
        if any(part.startswith(".") for part in rel.parts) or len(rel.parts) > 3:
            continue
        if p.is_symlink() or any(q.is_symlink() for q in p.parents if student.folder in q.parents):
            why = f"{rel} is a symbolic link, which is not graded; submit the notebook file itself"
            student.notes.append(why)
            if p.stem in stems:
                student.refused[p.stem] = why
            continue
        files.append(p)
    by_unit: dict = {}
    for stem in stems:
        by_unit.setdefault(stem[:2], []).append(stem)
    for p in files:
        if p.stem in stems and p.stem not in student.notebooks:
            student.notebooks[p.stem] = p
    for p in files:
        if p.stem in stems:
            continue
        m = _UNIT_RE.match(p.stem)
        candidates = by_unit.get(m.group(1), []) if m else []
        if len(candidates) == 1 and candidates[0] not in student.notebooks:
            student.notebooks[candidates[0]] = p
            student.notes.append(f"graded {p.relative_to(student.folder)} as {candidates[0]}.ipynb")
        else:
            student.notes.append(f"{p.relative_to(student.folder)}: not one of the course notebooks, ignored")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_notebook(path: Path, stem: str) -> NotebookFile:
    """Parse a submitted notebook; problems become ``error`` (one line a learner can act on)."""
    nb = NotebookFile(stem=stem, filename=path.name, sha256=None)
    hint = "download it again from Jupyter (File > Download) and resubmit"
    try:
        size = path.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            nb.error = f"{path.name} is {size / 2**20:.0f} MB, more than {MAX_NOTEBOOK_BYTES >> 20} MB; clear the outputs"
            return nb
        data = path.read_bytes()
    except OSError as e:
        nb.error = f"{path.name} cannot be read: {e.strerror or e}"
        return nb
    nb.sha256 = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        nb.error = f"{path.name} is not a text (UTF-8) file, so not a notebook; {hint}"
        return nb
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        where = f" (line {e.lineno}, column {e.colno}: {e.msg})" if isinstance(e, json.JSONDecodeError) else ""
        nb.error = f"{path.name} is not valid JSON{where}, so Jupyter cannot open it either; {hint}"
        return nb
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        nb.error = f"{path.name} is JSON but not a notebook (no cells); {hint}"
        return nb
    version = raw.get("nbformat")
    if version == 3 or (version is None and "worksheets" in raw):
        try:
            import nbformat

            raw = json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))
            nb.notes.append(f"{path.name} is in the old nbformat 3; it was converted to nbformat 4 for grading")
        except Exception as e:  # noqa: BLE001 - nbformat raises many kinds
            nb.error = f"{path.name} is an nbformat 3 notebook that could not be converted ({type(e).__name__}); {hint}"
            return nb
    elif version != 4:
        nb.error = f"{path.name} has nbformat {version!r}; only nbformat 4 (and 3, converted) can be graded"
        return nb
    cells = raw.get("cells")
    if not isinstance(cells, list):
        nb.error = f"{path.name}: 'cells' is not a list; {hint}"
        return nb
    for i, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        if isinstance(src, list) and all(isinstance(s, str) for s in src):
            src = "".join(src)
        if not isinstance(src, str):
            nb.notes.append(f"cell {i} has a malformed source and was left out")
            continue
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        tags = [t for t in tags if isinstance(t, str)]
        code = CodeCell(i, src, tags, exercise_id_of(src))
        nb.code_cells.append(code)
        if code.exercise_id:
            nb.exercise_cells.setdefault(code.exercise_id, []).append(code)
    return nb
