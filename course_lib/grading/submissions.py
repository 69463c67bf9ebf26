"""Finding and reading submissions.

Two layouts are found, and told apart per learner:

* one folder per learner: ``SUBMISSIONS/<student>/<NN_slug>.ipynb``;
* nbgrader's: ``submitted/<student>/<assignment>/<NN_slug>.ipynb``, what ``nbgrader collect`` writes
  (any assignment folder names; each holds nbgrader's ``timestamp.txt``, the time of the submission).

When one learner hands in the same course notebook more than once, one copy is graded, by a rule that
does not depend on the machine (sharded runs on different nodes must pick the same copy; file times
change when folders are copied, so they are not used):

1. a notebook directly in the learner's folder beats copies in sub-folders;
2. among assignment folders, the one whose ``timestamp.txt`` is the latest, when every competing folder
   has a readable one; otherwise the folder whose name sorts last (code-point order);
3. within one folder, the exactly named file beats a renamed one (``02_softmax_sampling (1).ipynb``).

The learner's feedback says which copy was graded and which were ignored.

Everything here reads untrusted files without running them: names are made safe for the output folder,
symbolic links are refused (a link to ``solutions/`` must not be graded as the learner's work), a file
that is not JSON or not a notebook becomes a clear message, an nbformat 3 notebook is converted.
"""

from __future__ import annotations

import datetime as dt
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
#: The file ``nbgrader submit`` writes into every submission (``nbgrader collect`` copies it along), holding
#: the submission's time in nbgrader's ``timestamp_format``, by default ``%Y-%m-%d %H:%M:%S.%f %Z`` in UTC.
NBGRADER_TIMESTAMP = "timestamp.txt"
_STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d(?:\.\d{1,6})?)\s*(UTC|GMT|Z|[+-]\d\d:?\d\d)?$")


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

    @property
    def in_assignment_folders(self) -> bool:
        """True when every notebook graded for this learner sits in a sub-folder (nbgrader's layout)."""
        return bool(self.notebooks) and all(len(p.relative_to(self.folder).parts) > 1
                                            for p in self.notebooks.values())


@dataclass
class Layout:
    """Which layout ``SUBMISSIONS`` has, for the one line a run prints about it."""

    kind: str                  # "nbgrader", "folders", "mixed", "no_notebooks" or "empty"
    root: Path
    students: int
    own_folder: int = 0        # learners whose notebooks sit in their own folder
    in_assignments: int = 0    # learners whose notebooks sit in assignment folders
    assignments: list = field(default_factory=list)   # the assignment folders' names, sorted

    def line(self) -> str:
        where = f"{self.root}/"
        if self.kind == "empty":
            return (f"Found no learner folders in {where} (expected {where}<student>/<NN_slug>.ipynb, or "
                    f"nbgrader's {where}<student>/<assignment>/<NN_slug>.ipynb)")
        if self.kind == "no_notebooks":
            return f"Found {self.students} learner folders in {where} but no course notebook in any of them"
        if self.kind == "folders":
            return f"Found one folder per learner: {self.students} students in {where}"
        shown = ", ".join(self.assignments[:6]) + (", ..." if len(self.assignments) > 6 else "")
        folders = f"{len(self.assignments)} assignment folder{'s' if len(self.assignments) != 1 else ''}: {shown}"
        if self.kind == "nbgrader":
            return f"Found nbgrader's layout: {self.students} students in {where} ({folders})"
        return (f"Found a mix of layouts: {self.students} students in {where}, {self.own_folder} with notebooks in "
                f"their own folder, {self.in_assignments} in assignment folders as nbgrader's ({folders})")


def nbgrader_course_folder(root: Path) -> Optional[str]:
    """Why ``root`` looks like an nbgrader course directory (whose ``submitted/`` should be graded), or None."""
    if not (root / "submitted").is_dir():
        return None
    markers = [m for m in ("nbgrader_config.py", "gradebook.db") if (root / m).is_file()]
    if not markers and (root / "source").is_dir() and (root / "release").is_dir():
        markers = ["source/", "release/"]
    return f"it has submitted/ and {' and '.join(markers)}" if markers else None


def safe_name(name: str) -> str:
    """A file name for ``name``: letters, digits, ``-``, ``_`` and ``.`` (never leading), plus a short hash
    when anything had to change, so two different names never collide."""
    norm = unicodedata.normalize("NFC", name)
    cleaned = re.sub(r"[^\w.\-]", "_", norm, flags=re.UNICODE).lstrip(".")[:80]
    if cleaned != name or not cleaned:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cleaned = f"{cleaned or 'student'}-{digest}"
    return cleaned


def printable_name(name: str) -> str:
    """A folder name as text every output can hold: bytes that are not UTF-8 (Python keeps them as
    surrogates) become ``\\xe9`` escapes, so results, CSV files and feedback pages can be written."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def find_students(root: Path, stems: set) -> tuple:
    """``(students, warnings)``: every folder in ``root`` with the course notebooks it holds."""
    students, warnings, _ = find_class(root, stems)
    return students, warnings


def find_class(root: Path, stems: set) -> tuple:
    """``(students, warnings, layout)``: every folder in ``root`` with the course notebooks it holds, and
    which layout the folders have (:class:`Layout`)."""
    students, warnings = [], []
    used: dict = {}
    names: set = set()
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
        name = printable_name(entry.name)
        if name != entry.name:
            if name in names:  # a folder literally named like the escaped form of another one
                name = f"{name}-{safe.rsplit('-', 1)[-1]}"
            warnings.append(f"{name}: the folder name is not valid UTF-8 (an old zip?); its other bytes are "
                            f"written as \\xNN escapes in the results")
        names.add(name)
        student = Student(name, safe, entry)
        _collect(student, stems)
        students.append(student)
    return students, warnings, _layout(root, students)


def _layout(root: Path, students: list) -> Layout:
    nested = [st for st in students if st.in_assignment_folders]
    flat = [st for st in students if st.notebooks and not st.in_assignment_folders]
    folders = sorted({p.relative_to(st.folder).parts[0] for st in nested for p in st.notebooks.values()})
    if not students:
        kind = "empty"
    elif not nested and not flat:
        kind = "no_notebooks"
    else:
        kind = "nbgrader" if not flat else "folders" if not nested else "mixed"
    return Layout(kind, root, len(students), len(flat), len(nested), folders)


def read_timestamp(folder: Path) -> Optional[dt.datetime]:
    """The time in nbgrader's ``timestamp.txt`` in ``folder`` (as UTC), or None when it is missing or not
    a time nbgrader writes (``2026-11-30 14:05:09.123456 UTC``; a named zone other than UTC is not
    guessed)."""
    path = folder / NBGRADER_TIMESTAMP
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 200:
            return None
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    m = _STAMP_RE.match(text)
    if not m:
        return None
    date, time_, zone = m.groups()
    try:
        stamp = dt.datetime.fromisoformat(f"{date}T{time_}")
    except ValueError:
        return None
    if zone and zone[0] in "+-":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        stamp -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return stamp


def _collect(student: Student, stems: set) -> None:
    """Map the student's files onto course notebooks (see the module docstring for which copy counts)."""
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
    copies: dict = {}    # stem -> [(path, exact name?)]
    for p in files:
        if p.stem in stems:
            copies.setdefault(p.stem, []).append((p, True))
            continue
        m = _UNIT_RE.match(p.stem)
        candidates = by_unit.get(m.group(1), []) if m else []
        if len(candidates) == 1:
            copies.setdefault(candidates[0], []).append((p, False))
        else:
            student.notes.append(f"{p.relative_to(student.folder)}: not one of the course notebooks, ignored")
    for stem in sorted(copies):
        chosen, why = _choose_copy(student.folder, copies[stem])
        student.notebooks[stem] = chosen
        rel = chosen.relative_to(student.folder).as_posix()
        if not dict(copies[stem])[chosen]:
            student.notes.append(f"graded {rel} as {stem}.ipynb")
        others = [p.relative_to(student.folder).as_posix() for p, _ in copies[stem] if p != chosen]
        if others:
            student.notes.append(f"{stem}: you handed in {len(others) + 1} copies; {rel} was graded ({why}) and "
                                 f"{', '.join(others)} ignored")


def _container(folder: Path, path: Path) -> str:
    """The sub-folder of the learner's folder that holds ``path`` ("" for the learner's folder itself)."""
    parts = path.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else ""


def _choose_copy(folder: Path, copies: list) -> tuple:
    """``(path, why)``: which of a learner's copies of one notebook is graded (rules 1-3 of the module
    docstring)."""
    if len(copies) == 1:
        return copies[0][0], ""
    by_folder: dict = {}
    for p, exact in copies:
        by_folder.setdefault(_container(folder, p), []).append((p, exact))
    names = sorted(by_folder)
    if "" in by_folder:
        pick, why = "", "it is directly in your folder"
    elif len(names) == 1:
        pick, why = names[0], ""
    else:
        stamps = {n: read_timestamp(folder / n) for n in names}
        if all(stamps.values()):
            pick = max(names, key=lambda n: (stamps[n], n))
            why = f"its {NBGRADER_TIMESTAMP}, {stamps[pick]:%Y-%m-%d %H:%M:%S} UTC, is the latest"
        else:
            pick = names[-1]
            lacking = [n for n in names if not stamps[n]]
            why = (f"{pick}/ is the last folder by name; {', '.join(n + '/' for n in lacking)} "
                   f"{'has' if len(lacking) == 1 else 'have'} no readable {NBGRADER_TIMESTAMP} to compare")
    def depth(c) -> int:
        return len(c[0].relative_to(folder).parts)

    inside = sorted(by_folder[pick], key=lambda c: (not c[1], depth(c), c[0].relative_to(folder).as_posix()))
    if len(inside) > 1:
        first, second = inside[:2]
        reason = ("its name is the course notebook's" if first[1] and not second[1] else
                  "it is the least deeply nested" if depth(first) < depth(second) else "its name sorts first")
        why = f"{why}; {reason}" if why else reason
    return inside[0][0], why


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
