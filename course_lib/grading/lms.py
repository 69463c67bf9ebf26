"""The gradebook for the LMS: ``course grade ... --roster roster.csv`` writes ``OUT/lms.csv``.

The roster maps each learner's folder to their id in the LMS::

    folder,lms_id,name
    ada,s1001,Ada Lovelace
    José García,s1002,José García

(``name`` is optional; other columns are ignored; a UTF-8 file, with or without Excel's byte-order mark.)

``lms.csv`` is one file that both Canvas's Gradebook import and Moodle's "Import grades: CSV file" accept::

    Student,ID,SIS User ID,SIS Login ID,Section,02_softmax_sampling,03_attention
    Ada Lovelace,,s1001,s1001,,11,9.5

* The first five columns are Canvas's student columns, in the order of a Canvas gradebook export (Canvas's
  importer requires ``Student`` and ``ID`` first and ``Section`` last). ``ID`` (Canvas's internal user id)
  is left empty: Canvas then finds the learner by ``SIS User ID``, else by ``SIS Login ID``, both
  holding ``lms_id``, so the roster may carry either one. (Putting ``lms_id`` into ``ID`` could match a
  different learner whose internal id happens to equal a numeric student number.)
* Then one column per unit graded in the run, headed by the notebook's name, in points (a unit's maximum
  is in ``course grade --list-exercises``). There is no total column: Moodle refuses imported grades
  above 100 by default and the course has more points than that; both LMS add the units up themselves.
* One row per roster row, in the roster's order. A roster learner with no submission folder gets 0 in
  every unit column, as ``grades.csv`` gives 0 for a notebook that was not handed in. An empty cell
  would mean "no grade" to both: Moodle clears a grade already there, and Canvas's current score leaves
  ungraded work out, so a learner who handed in nothing would not lose the unit's points.
* No other rows: no "Points Possible" row (Moodle would read it as a learner), and no row for a graded
  learner whose folder is not on the roster: Moodle aborts a whole import at a row whose user it cannot
  find, and a row with an empty id would be read as the previous learner's. Those learners are written
  to ``OUT/lms-unmatched.csv`` (``folder`` and their unit points) and named on the terminal, so that
  they can be added to the roster; a run again with the fixed roster reuses every grade.

A name or folder that a spreadsheet would read as a formula (starting with ``= + - @``, a tab or a line
break; a learner may name their folder so) is written with a leading apostrophe
(:func:`.report.spreadsheet_text`), in ``Student`` and in ``lms-unmatched.csv``. The roster is still
matched on the real folder names. Neither LMS needs ``Student`` to be exact: Moodle reads only the
column mapped to a user field, and Canvas finds the learner by the id columns, falling back to the
name only when no id matches. The id columns are written exactly as the roster has them (the LMS
matches on them; the roster is the instructor's file), and the points are plain numbers (Canvas reads
a grade cell as a number only when it is one, such as ``9.5`` or ``-2``, never ``'9.5``).

In Moodle, choose "Identify user by": map from ``SIS User ID`` to the user field ``lms_id`` holds (ID
number, username or email), and map each unit column to its grade item. In Canvas, import the file in
the Gradebook; a column whose name matches no assignment creates one (set its points possible).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REQUIRED = ("folder", "lms_id")
OPTIONAL = ("name",)
STUDENT_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
LMS_FILE = "lms.csv"
UNMATCHED_FILE = "lms-unmatched.csv"
MAX_ROSTER_BYTES = 20 * 2**20


class RosterError(ValueError):
    """The roster cannot be used; the message is one line naming the file (and the line) and the fix."""


@dataclass(frozen=True)
class RosterRow:
    folder: str
    lms_id: str
    name: str
    line: int        # the line of the roster file the row ends on (what an editor shows)


@dataclass
class Roster:
    path: Path
    rows: list = field(default_factory=list)

    def by_key(self) -> dict:
        return {folder_key(r.folder): r for r in self.rows}


def folder_key(name: str) -> str:
    """How roster folders and learner folders are compared: NFC-normalised (macOS writes names in NFD),
    surrounding spaces ignored, case kept."""
    return unicodedata.normalize("NFC", name).strip()


def load_roster(path) -> Roster:
    """Read and check a roster; any problem is a :class:`RosterError`, before anything is graded or written."""
    path = Path(path)
    where = f"--roster {path}"
    try:
        if path.is_dir():
            raise RosterError(f"{where}: a folder, not a CSV file")
        if path.stat().st_size > MAX_ROSTER_BYTES:
            raise RosterError(f"{where}: larger than {MAX_ROSTER_BYTES >> 20} MB; is it really a roster?")
        data = path.read_bytes()
    except OSError as e:
        raise RosterError(f"{where}: cannot be read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RosterError(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          f"save it as 'CSV UTF-8'") from None
    if not text.strip():
        raise RosterError(f"{where}: empty; expected a header line {','.join(REQUIRED)}[,name] and one line per learner")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        header_at = reader.line_num
        columns = [h.strip().lower() for h in header]
        for c in columns:
            if c and columns.count(c) > 1:
                raise RosterError(f"{where}: the column '{c}' appears twice in the header")
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            found = ", ".join(h.strip() for h in header if h.strip()) or "nothing"
            hint = ("; it seems separated by ';' or tabs: use commas" if len(header) == 1 and
                    any(sep in header[0] for sep in ";\t") else "")
            raise RosterError(f"{where}: no column {' or '.join(repr(c) for c in missing)} in the header line "
                              f"(found: {found}); expected {','.join(REQUIRED)} and optionally name{hint}")
        index = {c: columns.index(c) for c in (*REQUIRED, *OPTIONAL) if c in columns}
        roster, seen_folder, seen_id = Roster(path), {}, {}
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # a blank line

            def cell(c: str) -> str:
                i = index.get(c)
                return cells[i].strip() if i is not None and i < len(cells) else ""

            row = RosterRow(cell("folder"), cell("lms_id"), cell("name"), line)
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in row.folder + row.lms_id + row.name):
                raise RosterError(f"{where} line {line}: a control character in folder {row.folder!r}'s row; "
                                  f"is it really a text CSV file?")
            if not row.folder:
                raise RosterError(f"{where} line {line}: the folder is empty (lms_id {row.lms_id!r})")
            if not row.lms_id:
                raise RosterError(f"{where} line {line}: the lms_id of folder {row.folder!r} is empty; every "
                                  f"learner on the roster needs their LMS id")
            key = folder_key(row.folder)
            if key in seen_folder:
                raise RosterError(f"{where} line {line}: folder {row.folder!r} again (first on line "
                                  f"{seen_folder[key].line}); one row per learner")
            if row.lms_id in seen_id:
                first = seen_id[row.lms_id]
                raise RosterError(f"{where} line {line}: lms_id {row.lms_id!r} again (first on line {first.line}, "
                                  f"folder {first.folder!r}); two learners cannot share an LMS id")
            seen_folder[key] = seen_id[row.lms_id] = row
            roster.rows.append(row)
    except csv.Error as e:
        raise RosterError(f"{where} line {reader.line_num}: not readable as CSV ({e})") from None
    if not roster.rows:
        raise RosterError(f"{where}: a header (line {header_at}) but no learners")
    return roster


# ---------------------------------------------------------------------------------------------------
# The export
# ---------------------------------------------------------------------------------------------------


@dataclass
class LmsExport:
    text: str                     # lms.csv
    unmatched_text: str           # lms-unmatched.csv
    matched: int                  # roster learners with a graded folder
    absent: list                  # roster rows with no graded folder (0 points in lms.csv)
    unrostered: list              # graded folders with no roster row (only in lms-unmatched.csv)

    def line(self, out) -> str:
        """One line for the terminal."""
        parts = [f"{out}/{LMS_FILE}: {_count(self.matched + len(self.absent), 'roster learner')}"]
        if self.absent:
            parts.append(f"{len(self.absent)} of them with no submission, 0 points ({_names(r.folder for r in self.absent)})")
        if self.unrostered:
            parts.append(f"{_count(len(self.unrostered), 'graded learner')} not on the roster, written to "
                         f"{out}/{UNMATCHED_FILE} instead ({_names(self.unrostered)})")
        return ", ".join(parts)

    def warning(self, roster_path, again: str = "run the same command again (the grades are reused)") -> Optional[str]:
        if not self.unrostered:
            return None
        n = len(self.unrostered)
        return (f"{_count(n, 'graded learner')} {'has' if n == 1 else 'have'} no row in {roster_path}: "
                f"{_names(self.unrostered)}; not in {LMS_FILE} but in {UNMATCHED_FILE}: add them to the roster "
                f"and {again}")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(names, limit: int = 5) -> str:
    names = list(names)
    return ", ".join(repr(n) for n in names[:limit]) + (", ..." if len(names) > limit else "")


def unit_points(result: dict, stem: str) -> float:
    """A learner's points in one unit (notebook): the sum over its exercises."""
    nb = result.get("notebooks", {}).get(stem, {})
    return round(sum(e["points"] for e in nb.get("exercises", {}).values()), 4)


def build_export(roster: Roster, results: list, stems: list) -> LmsExport:
    """``lms.csv`` and ``lms-unmatched.csv`` for ``results`` (one per graded learner) and the units ``stems``."""
    from .report import fmt_points, spreadsheet_text

    stems = sorted(stems)
    by_learner = {folder_key(r["student"]): r for r in results}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*STUDENT_COLUMNS, *stems])
    absent = []
    for row in roster.rows:
        res = by_learner.get(folder_key(row.folder))
        if res is None:
            absent.append(row)
        points = [fmt_points(unit_points(res, s)) if res else "0" for s in stems]
        w.writerow([spreadsheet_text(row.name or row.folder), "", row.lms_id, row.lms_id, "", *points])
    rostered = roster.by_key()
    unrostered = sorted((r for r in results if folder_key(r["student"]) not in rostered), key=lambda r: r["student"])
    extra = io.StringIO()
    u = csv.writer(extra, lineterminator="\n")
    u.writerow(["folder", *stems])
    for r in unrostered:
        u.writerow([spreadsheet_text(r["student"]), *[fmt_points(unit_points(r, s)) for s in stems]])
    return LmsExport(buf.getvalue(), extra.getvalue(), len(roster.rows) - len(absent), absent,
                     [r["student"] for r in unrostered])


def write_export(out: Path, export: LmsExport) -> None:
    """Write both files atomically (a reader sees the old file or the new one, never half of one)."""
    from .report import atomic_write

    atomic_write(Path(out) / UNMATCHED_FILE, export.unmatched_text)
    atomic_write(Path(out) / LMS_FILE, export.text)
