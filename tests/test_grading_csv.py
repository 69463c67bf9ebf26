"""Learners name their own folders: no folder name becomes a formula in a spreadsheet.

Every CSV file the grader writes (``grades.csv``, ``lms.csv``, ``lms-unmatched.csv``) is opened in Excel,
LibreOffice or Google Sheets by somebody. A learner folder named ``=HYPERLINK(...)`` or ``@SUM(1+1)``
must arrive there as text (OWASP's rule: a leading apostrophe before ``= + - @``, tab, CR, LF), while
the points stay plain numbers that the LMS importers read, and the roster still matches the learner by
the real folder name. The class is graded once (unit 02; stubs need no worker, so only two notebooks run).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from course_lib.exercises import all_exercises
from course_lib.grading import Limits, grade
from course_lib.grading.merge import merge
from course_lib.grading.report import grades_csv, spreadsheet_text
from tests.grading_fixtures.build import CORRECT, NB, stub, unit02, write

LIMITS = Limits(cell_timeout=30, exercise_timeout=30, notebook_timeout=120)
IDS = [ex.id for ex in all_exercises() if ex.notebook == NB]
STUBS = {k: stub(k) for k in CORRECT}

# Folder names a learner can choose (no '/': it cannot be in a folder name).
LINK = '=HYPERLINK("http:evil.example","click")'
DDE = "+cmd|' -C calc'!A0"
AT = "@SUM(1+1)"
MINUS = "-2+3"
TAB = "\t=1+1"
QUOTE = "'=1+1"            # already starts with the escape character
PLAIN = "José García"
FOLDERS = {MINUS: unit02(),                                   # 11 points
           AT: unit02({"02.stable_softmax": None}),           # 8 points: the exercise cell is gone
           LINK: unit02(STUBS), DDE: unit02(STUBS), TAB: unit02(STUBS), QUOTE: unit02(STUBS),
           PLAIN: unit02(STUBS)}
TOTALS = {MINUS: "11", AT: "8"}
ROSTER = f"folder,lms_id,name\n{MINUS},s1001,\n{AT},s1002,\n{PLAIN},s1003,{PLAIN}\nnobody,s1004,=Evil Name\n"
NUMBER = re.compile(r"-?\d+(\.\d+)?")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csv")
    subs = tmp / "subs"
    for name, cells in FOLDERS.items():
        write(subs, name, cells)
    (tmp / "roster.csv").write_text(ROSTER, encoding="utf-8")
    summary = grade(subs, tmp / "out", seed=8, jobs=2, limits=LIMITS, progress=False, roster=tmp / "roster.csv")
    return dict(tmp=tmp, subs=subs, out=tmp / "out", summary=summary)


def rows(path: Path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [LINK, DDE, AT, MINUS, TAB, "\r=1+1", "\n=1+1", "=", "-", QUOTE, "''"])
def test_a_cell_a_spreadsheet_would_evaluate_gets_an_apostrophe(text):
    assert spreadsheet_text(text) == "'" + text
    assert spreadsheet_text(text)[1:] == text  # reversible: drop one apostrophe


@pytest.mark.parametrize("text", ["ada", PLAIN, "Ada Lovelace", "1e3", "9.5", "a=b", "x-1", "ana@example.org",
                                  " =1+1", ""])
def test_other_text_is_left_as_it_is(text):
    assert spreadsheet_text(text) == text


def test_two_different_folders_never_give_the_same_cell():
    names = [QUOTE, QUOTE[1:], "''=1+1", MINUS, "'" + MINUS, "ada", "'ada"]
    assert len({spreadsheet_text(n) for n in names}) == len(names)


def test_points_are_numbers_even_negative_and_only_the_name_is_escaped():
    """grades.csv from results: a (hypothetical) negative total stays a bare number, unlike the name."""
    result = {"student": MINUS, "total": -1.5, "max_total": 11.0,
              "exercises": {IDS[0]: {"points": -1.5}, IDS[1]: {"points": 0.25}}}
    text = grades_csv([result], IDS[:2])
    assert text.splitlines()[1] == f"'{MINUS},-1.5,0.25,-1.5,11"


# ---------------------------------------------------------------------------------------------------
# A graded class whose folder names are payloads
# ---------------------------------------------------------------------------------------------------


def test_grades_csv_neutralises_every_payload_and_keeps_the_points(graded):
    table = rows(graded["out"] / "grades.csv")
    assert table[0] == ["student", *IDS, "total", "max_total"]
    by_cell = {r[0]: r for r in table[1:]}
    expected = {("'" + n if n != PLAIN else n) for n in FOLDERS}
    assert set(by_cell) == expected
    for name in FOLDERS:
        cells = by_cell[spreadsheet_text(name)]
        assert cells[-2] == TOTALS.get(name, "0") and cells[-1] == "11"
        assert all(NUMBER.fullmatch(c) for c in cells[1:]), cells
    # The results and feedback keep the real folder name (no apostrophe).
    assert sorted(r["student"] for r in graded["summary"].results) == sorted(FOLDERS)


def test_every_csv_the_run_wrote_starts_no_text_cell_with_a_formula_character(graded):
    written = sorted(p.name for p in graded["out"].glob("*.csv"))
    assert written == ["grades.csv", "lms-unmatched.csv", "lms.csv"]
    for name in written:
        for cells in rows(graded["out"] / name):
            for c in cells:
                assert not c.startswith(("=", "+", "@", "\t", "\r", "\n")), (name, c)
                assert not c.startswith("-") or NUMBER.fullmatch(c), (name, c)


def test_the_roster_matches_folders_starting_with_minus_or_at_and_lms_csv_is_safe(graded):
    s, out = graded["summary"], graded["out"]
    assert s.lms.matched == 3 and [r.folder for r in s.lms.absent] == ["nobody"]
    assert sorted(s.lms.unrostered) == sorted([LINK, DDE, TAB, QUOTE])  # the real names, for the warning
    assert (out / "lms.csv").read_text(encoding="utf-8") == (
        f"Student,ID,SIS User ID,SIS Login ID,Section,{NB}\n"
        f"'{MINUS},,s1001,s1001,,11\n"       # no name on the roster: the folder, escaped
        f"'{AT},,s1002,s1002,,8\n"
        f"{PLAIN},,s1003,s1003,,0\n"
        f"'=Evil Name,,s1004,s1004,,0\n")    # a name from the roster is escaped too
    unmatched = rows(out / "lms-unmatched.csv")
    assert unmatched[0] == ["folder", NB]
    assert sorted(unmatched[1:]) == sorted([["'" + n, "0"] for n in (LINK, DDE, TAB, QUOTE)])


@pytest.mark.slow
def test_merged_shards_give_the_single_runs_files_byte_for_byte(graded):
    tmp, out = graded["tmp"], graded["out"]
    # Other engineers edit course_lib in this shared checkout while tests run, and the merge rightly refuses
    # shards of different grader versions: the single run (reused when nothing changed) and the shards are
    # repeated until all three were graded by the same code.
    for _ in range(4):
        grade(graded["subs"], out, seed=8, jobs=2, limits=LIMITS, progress=False, roster=tmp / "roster.csv")
        shards = [grade(graded["subs"], tmp / f"shard{i}", seed=8, jobs=2, limits=LIMITS, progress=False,
                        shard=(i, 2)) for i in (1, 2)]
        versions = {tuple(json.loads((d / ".grading" / "run.json").read_text())[k] for k in ("grader", "definitions"))
                    for d in (out, tmp / "shard1", tmp / "shard2")}
        if len(versions) == 1:
            break
    assert sum(s.students for s in shards) == len(FOLDERS) and all(s.students for s in shards)
    merge([tmp / "shard1", tmp / "shard2"], tmp / "merged", roster=tmp / "roster.csv")
    for name in ("grades.csv", "lms.csv", "lms-unmatched.csv"):
        assert (tmp / "merged" / name).read_bytes() == (graded["out"] / name).read_bytes(), name
