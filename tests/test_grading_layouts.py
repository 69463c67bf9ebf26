"""nbgrader's exchange layout and the LMS gradebook (issue 15 §5).

* ``submitted/<student>/<assignment>/<NN_slug>.ipynb`` (what ``nbgrader collect`` writes) is found, named in
  one line, and when one learner has the same unit in two assignment folders, one copy counts by a
  documented rule (``timestamp.txt``, else the last folder by name) and the learner is told which;
* ``--roster roster.csv`` writes ``OUT/lms.csv`` (Canvas's and Moodle's grade import) and
  ``OUT/lms-unmatched.csv``; a bad roster is one line, exit 2, and nothing written.

Graded classes are small and unit 02 only: correct notebooks, stubs (recognised without a worker) and a
dropped exercise cell, so that every expected point is known exactly.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from course_lib.exercises import all_exercises
from course_lib.grading import Limits, grade
from course_lib.grading.lms import RosterError, load_roster
from course_lib.grading.merge import merge
from course_lib.grading.runner import UsageError
from course_lib.grading.submissions import find_class, read_timestamp
from tests.grading_fixtures.build import CORRECT, NB, stub, unit02, write

LIMITS = Limits(cell_timeout=30, exercise_timeout=30, notebook_timeout=120)
IDS = [ex.id for ex in all_exercises() if ex.notebook == NB]
POINTS = {ex.id: ex.points for ex in all_exercises() if ex.notebook == NB}
STEMS = {ex.notebook for ex in all_exercises()}
STUBS = {k: stub(k) for k in CORRECT}


def stamp(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timestamp.txt").write_text(text)


def nbgrader_class(submitted: Path) -> None:
    """What `nbgrader collect` leaves, for four learners and two assignment names per learner at most.

    ada:   a-late/ (timestamp 1 Dec, correct) and b-early/ (timestamp 30 Nov, stubs): the timestamp decides,
           against the order of the names;
    bob:   ps1/ (stubs, with a timestamp) and ps1_resubmit/ (correct, none): the last name decides;
    carol: ps1/ only, the cell of 02.stable_softmax deleted (8 of 11);
    hal:   ps1/ only, stubs.
    """
    write(submitted / "ada", "a-late", unit02())
    stamp(submitted / "ada" / "a-late", "2026-12-01 09:00:00.250000 UTC")
    write(submitted / "ada", "b-early", unit02(STUBS))
    stamp(submitted / "ada" / "b-early", "2026-11-30 18:30:00.000000 UTC")
    write(submitted / "bob", "ps1", unit02(STUBS))
    stamp(submitted / "bob" / "ps1", "2026-12-01 10:00:00.000000 UTC")
    write(submitted / "bob", "ps1_resubmit", unit02())
    write(submitted / "carol", "ps1", unit02({"02.stable_softmax": None}))
    stamp(submitted / "carol" / "ps1", "2026-11-29 08:00:00.000000 UTC")
    write(submitted / "hal", "ps1", unit02(STUBS))
    (submitted / "hal" / "ps1" / "submission_secret.txt").write_text("0123abcd")  # nbgrader >= 0.9 writes it


ROSTER = "folder,lms_id,name\nada,s1001,Ada Lovelace\nbob,s1002,\nerin,s1003,\"García, José\"\n"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layouts")
    submitted = tmp / "submitted"
    nbgrader_class(submitted)
    (tmp / "roster.csv").write_text(ROSTER, encoding="utf-8")
    said = io.StringIO()
    summary = grade(submitted, tmp / "out", seed=3, jobs=2, limits=LIMITS, progress=True, stream=said,
                    roster=tmp / "roster.csv")
    return dict(tmp=tmp, submitted=submitted, summary=summary, said=said.getvalue(),
                by={r["student"]: r for r in summary.results})


def row(student: str, points: dict) -> str:
    return ",".join([student, *[f"{points.get(i, 0):g}" for i in IDS], f"{sum(points.values()):g}", "11"])


# ---------------------------------------------------------------------------------------------------
# nbgrader's layout, graded
# ---------------------------------------------------------------------------------------------------


def test_the_run_says_it_found_nbgraders_layout(graded):
    line = f"Found nbgrader's layout: 4 students in {graded['submitted']}/ (3 assignment folders: a-late, ps1, ps1_resubmit)"
    assert graded["said"].splitlines()[0] == line
    assert graded["summary"].layout == line


def test_nbgrader_layout_grades_every_learner_from_the_copy_that_counts(graded):
    out = graded["tmp"] / "out"
    full = dict(POINTS)
    expected = "\n".join([
        ",".join(["student", *IDS, "total", "max_total"]),
        row("ada", full),                                    # a-late/: the later timestamp.txt
        row("bob", full),                                    # ps1_resubmit/: the last name (one has no timestamp)
        row("carol", {k: v for k, v in full.items() if k != "02.stable_softmax"}),
        row("hal", {}),
    ]) + "\n"
    assert (out / "grades.csv").read_text(encoding="utf-8") == expected


def test_the_learner_is_told_which_copy_was_graded_and_which_ignored(graded):
    out = graded["tmp"] / "out"
    ada = json.loads((out / "results" / "ada.json").read_text(encoding="utf-8"))
    assert ada["notebooks"][NB]["file"] == f"{NB}.ipynb"
    told = (f"{NB}: you handed in 2 copies; a-late/{NB}.ipynb was graded (its timestamp.txt, 2026-12-01 09:00:00 "
            f"UTC, is the latest) and b-early/{NB}.ipynb ignored")
    assert ada["notes"] == [told]
    assert told.replace("'", "&#x27;") in (out / "feedback" / "ada.html").read_text(encoding="utf-8")
    bob = json.loads((out / "results" / "bob.json").read_text(encoding="utf-8"))
    assert bob["notes"] == [f"{NB}: you handed in 2 copies; ps1_resubmit/{NB}.ipynb was graded (ps1_resubmit/ is the "
                            f"last folder by name; ps1_resubmit/ has no readable timestamp.txt to compare) and "
                            f"ps1/{NB}.ipynb ignored"]
    assert graded["by"]["carol"]["notes"] == [] and graded["by"]["hal"]["notes"] == []


# ---------------------------------------------------------------------------------------------------
# The LMS export
# ---------------------------------------------------------------------------------------------------


def test_lms_csv_has_every_roster_row_and_nothing_else(graded):
    out = graded["tmp"] / "out"
    assert (out / "lms.csv").read_text(encoding="utf-8") == (
        f"Student,ID,SIS User ID,SIS Login ID,Section,{NB}\n"
        "Ada Lovelace,,s1001,s1001,,11\n"
        "bob,,s1002,s1002,,11\n"          # no name on the roster: the folder's
        "\"García, José\",,s1003,s1003,,0\n")   # on the roster, no submission: 0 in every unit
    assert (out / "lms-unmatched.csv").read_text(encoding="utf-8") == f"folder,{NB}\ncarol,8\nhal,0\n"


def test_learners_missing_from_either_side_are_reported(graded):
    s, out = graded["summary"], graded["tmp"] / "out"
    assert s.lms.matched == 2 and [r.folder for r in s.lms.absent] == ["erin"]
    assert s.lms.unrostered == ["carol", "hal"]
    assert s.lms.line(out) == (f"{out}/lms.csv: 3 roster learners, 1 of them with no submission, 0 points ('erin'), "
                               f"2 graded learners not on the roster, written to {out}/lms-unmatched.csv instead "
                               f"('carol', 'hal')")
    assert [w for w in s.warnings if "roster" in w] == [
        f"2 graded learners have no row in {graded['tmp'] / 'roster.csv'}: 'carol', 'hal'; not in lms.csv but in "
        f"lms-unmatched.csv: add them to the roster and run the same command again (the grades are reused)"]


def test_a_fixed_roster_reuses_every_grade_and_a_run_without_one_warns(graded, tmp_path):
    tmp = graded["tmp"]
    fixed = tmp_path / "roster.csv"
    fixed.write_text(ROSTER + "carol,s1004,Carol\nhal,s1005,Hal\n", encoding="utf-8")
    run_json = tmp / "out" / ".grading" / "run.json"
    before = json.loads(run_json.read_text())
    again = grade(graded["submitted"], tmp / "out", jobs=2, limits=LIMITS, progress=False, roster=fixed)
    after = json.loads(run_json.read_text())
    # (Other engineers edit the grader and the exercises in this shared checkout while tests run; a changed
    # grader rightly grades again, so reuse is asserted only when the run's fingerprints are unchanged.)
    if (before["grader"], before["definitions"]) == (after["grader"], after["definitions"]):
        assert (again.graded_notebooks, again.reused_notebooks) == (0, 4)
    assert again.graded_notebooks + again.reused_notebooks == 4
    assert (tmp / "out" / "lms.csv").read_text(encoding="utf-8").splitlines()[-2:] == [
        "Carol,,s1004,s1004,,8", "Hal,,s1005,s1005,,0"]
    assert (tmp / "out" / "lms-unmatched.csv").read_text(encoding="utf-8") == f"folder,{NB}\n"
    assert not [w for w in again.warnings if "roster" in w]
    before = (tmp / "out" / "lms.csv").read_bytes()
    plain = grade(graded["submitted"], tmp / "out", jobs=2, limits=LIMITS, progress=False)
    assert any("lms.csv is from an earlier run with --roster and was not updated" in w for w in plain.warnings)
    assert (tmp / "out" / "lms.csv").read_bytes() == before


@pytest.mark.slow
def test_shards_merged_with_the_roster_give_the_single_runs_lms_csv(graded):
    tmp = graded["tmp"]
    fixed = tmp / "roster.csv"
    shards = [grade(graded["submitted"], tmp / f"shard{i}", seed=3, jobs=2, limits=LIMITS, progress=False,
                    shard=(i, 2)) for i in (1, 2)]
    assert [s.students for s in shards] == [1, 3]  # hal alone in shard 1 (a shard with nobody cannot be merged)
    with pytest.raises(UsageError, match="--roster goes with the merge of the shards"):
        grade(graded["submitted"], tmp / "shard1", seed=3, progress=False, shard=(1, 2), roster=fixed)
    single = grade(graded["submitted"], tmp / "single", seed=3, jobs=2, limits=LIMITS, progress=False, roster=fixed)
    m = merge([tmp / "shard1", tmp / "shard2"], tmp / "merged", roster=fixed)
    assert m.lms.unrostered == single.lms.unrostered == ["carol", "hal"]
    for name in ("grades.csv", "lms.csv", "lms-unmatched.csv"):
        assert (tmp / "merged" / name).read_bytes() == (tmp / "single" / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------------
# Bad rosters: one line, exit 2, nothing written
# ---------------------------------------------------------------------------------------------------


def cli(capsys, *args) -> tuple:
    from course_lib.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


BAD_ROSTERS = [
    ("folder,lms_id\nada,s1\nbob,s2\nada,s3\n", "roster.csv line 4: folder 'ada' again (first on line 2); one row per learner"),
    ("folder,lms_id\nada,s1\nbob,s1\n", "roster.csv line 3: lms_id 's1' again (first on line 2, folder 'ada'); two "
                                        "learners cannot share an LMS id"),
    ("folder,name\nada,Ada\n", "roster.csv: no column 'lms_id' in the header line (found: folder, name); expected "
                               "folder,lms_id and optionally name"),
    ("student,id\nada,s1\n", "no column 'folder' or 'lms_id' in the header line (found: student, id)"),
    ("folder;lms_id\nada;s1\n", "it seems separated by ';' or tabs: use commas"),
    ("folder,lms_id,folder\nada,s1,ada\n", "roster.csv: the column 'folder' appears twice in the header"),
    ("folder,lms_id\nada,\n", "roster.csv line 2: the lms_id of folder 'ada' is empty"),
    ("folder,lms_id\n,s1\n", "roster.csv line 2: the folder is empty (lms_id 's1')"),
    ("folder,lms_id\n\n", "roster.csv: a header (line 1) but no learners"),
    ("", "roster.csv: empty; expected a header line folder,lms_id[,name]"),
    (b"folder,lms_id\nJos\xe9,s1\n", "roster.csv: not UTF-8 text (byte 0xe9 at offset 17); save it as 'CSV UTF-8'"),
    ("folder,lms_id\n\"ada,s1\n", "roster.csv line 2: not readable as CSV (unexpected end of data)"),
    ("folder,lms_id\n\"ada\"x,s1\n", "roster.csv line 2: not readable as CSV (',' expected after '\"')"),
    ("folder,lms_id\nada,s1\x00\n", "roster.csv line 2: a control character in folder 'ada'\'s row"),
]


@pytest.mark.parametrize("content,text", BAD_ROSTERS)
def test_a_bad_roster_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, content, text):
    subs = tmp_path / "submitted"
    write(subs / "ada", "ps1", unit02(STUBS))
    roster = tmp_path / "roster.csv"
    roster.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code, out, err = cli(capsys, "grade", subs, "--out", tmp_path / "out", "--roster", roster, "--seed", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1 and text in err, err
    assert err.startswith(f"course grade: --roster {roster}")
    assert not (tmp_path / "out").exists()


def test_a_roster_that_cannot_be_read_and_a_roster_with_shards(tmp_path, capsys):
    subs = tmp_path / "submitted"
    write(subs / "ada", "ps1", unit02(STUBS))
    out = tmp_path / "out"
    for roster, text in ((tmp_path / "nope.csv", "cannot be read (No such file or directory)"),
                         (subs, "a folder, not a CSV file")):
        code, _, err = cli(capsys, "grade", subs, "--out", out, "--roster", roster)
        assert code == 2 and err.strip() == f"course grade: --roster {roster}: {text}", err
    good = tmp_path / "roster.csv"
    good.write_text("folder,lms_id\nada,s1\n")
    code, _, err = cli(capsys, "grade", subs, "--out", out, "--roster", good, "--shard", "1/2", "--seed", 1)
    assert code == 2 and "--roster goes with the merge of the shards" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "grade", "merge", tmp_path / "s1", "--out", tmp_path / "m", "--roster", good)
    assert code == 2 and "no such folder" in err  # the shards are checked first
    assert not out.exists() and not (tmp_path / "m").exists()


def test_a_bad_roster_leaves_an_earlier_lms_csv_alone(graded, tmp_path, capsys):
    out = graded["tmp"] / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = tmp_path / "roster.csv"
    bad.write_text("folder,lms_id\nada,s1\nada,s2\n")
    code, _, err = cli(capsys, "grade", graded["submitted"], "--out", out, "--roster", bad)
    assert code == 2 and "folder 'ada' again" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    shards = [graded["tmp"] / "shard1", graded["tmp"] / "shard2"]
    if all((s / ".grading" / "run.json").exists() for s in shards):  # after the (slow) shard test
        with pytest.raises(UsageError, match="folder 'ada' again"):
            merge(shards, tmp_path / "merged", roster=bad)
        assert not (tmp_path / "merged").exists()


def test_roster_cells_are_trimmed_a_bom_is_ignored_and_names_are_compared_nfc(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes("\ufeffName , Folder,LMS_ID,section\r\n Ada , ada , s1 ,A\r\n\r\nJosé,Jose\u0301,s2,B\r\n"
                  .encode("utf-8"))
    roster = load_roster(p)
    assert [(r.folder, r.lms_id, r.name, r.line) for r in roster.rows] == [("ada", "s1", "Ada", 2),
                                                                          ("Jose\u0301", "s2", "José", 4)]
    assert set(roster.by_key()) == {"ada", "Jos\u00e9"}  # a folder named in NFD (macOS) or NFC matches
    p.write_text("folder,lms_id\nJos\u00e9,s1\nJose\u0301,s2\n", encoding="utf-8")
    with pytest.raises(RosterError, match="line 3: folder 'Jose\u0301' again"):
        load_roster(p)


# ---------------------------------------------------------------------------------------------------
# Which copy counts, and the layout line (no grading: finding only)
# ---------------------------------------------------------------------------------------------------


def empty_nb(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path


def chosen(root: Path) -> dict:
    students, _, _ = find_class(root, STEMS)
    return {st.name: {s: p.relative_to(st.folder).as_posix() for s, p in st.notebooks.items()} for st in students}


def test_timestamps_are_compared_in_utc_and_a_tie_goes_to_the_last_name(tmp_path):
    a = tmp_path / "ada"
    empty_nb(a / "hw-x" / f"{NB}.ipynb")
    empty_nb(a / "hw-y" / f"{NB}.ipynb")
    stamp(a / "hw-x", "2026-12-01 10:30:00 +02:00")   # 08:30 UTC
    stamp(a / "hw-y", "2026-12-01 09:00:00.5 UTC")    # later in UTC, though earlier on the clock
    assert chosen(tmp_path)["ada"][NB] == f"hw-y/{NB}.ipynb"
    assert read_timestamp(a / "hw-x").isoformat() == "2026-12-01T08:30:00"
    stamp(a / "hw-x", "2026-12-01 09:00:00.5 UTC")    # the same instant: the last name
    assert chosen(tmp_path)["ada"][NB] == f"hw-y/{NB}.ipynb"
    stamp(a / "hw-x", "2026-12-01 09:00:00.500001 UTC")
    assert chosen(tmp_path)["ada"][NB] == f"hw-x/{NB}.ipynb"


def test_an_unreadable_timestamp_falls_back_to_the_last_name(tmp_path):
    a = tmp_path / "ada"
    empty_nb(a / "ps2" / f"{NB}.ipynb")
    empty_nb(a / "ps10" / f"{NB}.ipynb")
    stamp(a / "ps10", "2026-12-01 09:00:00 UTC")
    stamp(a / "ps2", "2026-11-01 09:00:00 EST")      # a named zone is not guessed
    students, _, _ = find_class(tmp_path, STEMS)
    assert chosen(tmp_path)["ada"][NB] == f"ps2/{NB}.ipynb"  # "ps2" > "ps10" by code points
    assert students[0].notes == [f"{NB}: you handed in 2 copies; ps2/{NB}.ipynb was graded (ps2/ is the last folder "
                                 f"by name; ps2/ has no readable timestamp.txt to compare) and ps10/{NB}.ipynb ignored"]
    for text in ("", "yesterday", "2026-13-01 09:00:00 UTC", "x" * 500):
        stamp(a / "ps2", text)
        assert read_timestamp(a / "ps2") is None, text


def test_file_times_do_not_decide(tmp_path):
    a = tmp_path / "ada"
    old = empty_nb(a / "b" / f"{NB}.ipynb")
    new = empty_nb(a / "a" / f"{NB}.ipynb")
    for when, path in ((10**9, old), (2 * 10**9, new)):
        os.utime(path, (when, when))
    first = chosen(tmp_path)
    for when, path in ((2 * 10**9, old), (10**9, new)):
        os.utime(path, (when, when))
    assert chosen(tmp_path) == first == {"ada": {NB: f"b/{NB}.ipynb"}}


def test_the_learners_own_folder_beats_sub_folders_and_the_exact_name_beats_a_renamed_copy(tmp_path):
    empty_nb(tmp_path / "ada" / f"{NB} (1).ipynb")
    empty_nb(tmp_path / "ada" / "zz" / f"{NB}.ipynb")
    stamp(tmp_path / "ada" / "zz", "2030-01-01 00:00:00 UTC")
    empty_nb(tmp_path / "bob" / "ps1" / f"{NB} (1).ipynb")
    empty_nb(tmp_path / "bob" / "ps1" / f"{NB}.ipynb")
    empty_nb(tmp_path / "cy" / "ps1" / "old" / f"{NB}.ipynb")
    empty_nb(tmp_path / "cy" / "ps1" / f"{NB}.ipynb")
    students, _, _ = find_class(tmp_path, STEMS)
    assert chosen(tmp_path) == {"ada": {NB: f"{NB} (1).ipynb"}, "bob": {NB: f"ps1/{NB}.ipynb"},
                                "cy": {NB: f"ps1/{NB}.ipynb"}}
    notes = {st.name: st.notes for st in students}
    assert notes["ada"][-1] == (f"{NB}: you handed in 2 copies; {NB} (1).ipynb was graded (it is directly in your "
                                f"folder) and zz/{NB}.ipynb ignored")
    assert notes["bob"] == [f"{NB}: you handed in 2 copies; ps1/{NB}.ipynb was graded (its name is the course "
                            f"notebook's) and ps1/{NB} (1).ipynb ignored"]
    assert notes["cy"] == [f"{NB}: you handed in 2 copies; ps1/{NB}.ipynb was graded (it is the least deeply "
                           f"nested) and ps1/old/{NB}.ipynb ignored"]


def test_the_layout_line_for_each_layout(tmp_path):
    def line(root):
        return find_class(root, STEMS)[2].line()

    (tmp_path / "empty").mkdir()
    assert line(tmp_path / "empty") == (f"Found no learner folders in {tmp_path}/empty/ (expected {tmp_path}/empty/"
                                        f"<student>/<NN_slug>.ipynb, or nbgrader's {tmp_path}/empty/<student>/"
                                        f"<assignment>/<NN_slug>.ipynb)")
    (tmp_path / "none" / "ada").mkdir(parents=True)
    (tmp_path / "none" / "ada" / "notes.txt").write_text("x")
    assert line(tmp_path / "none") == f"Found 1 learner folders in {tmp_path}/none/ but no course notebook in any of them"
    flat = tmp_path / "flat"
    for who in ("ada", "bob"):
        empty_nb(flat / who / f"{NB}.ipynb")
    (flat / "carl").mkdir()  # a learner who handed in nothing does not change the layout
    assert line(flat) == f"Found one folder per learner: 3 students in {flat}/"
    empty_nb(flat / "dee" / "week 2" / f"{NB}.ipynb")
    assert line(flat) == (f"Found a mix of layouts: 4 students in {flat}/, 2 with notebooks in their own folder, "
                          f"1 in assignment folders as nbgrader's (1 assignment folder: week 2)")


def test_an_nbgrader_course_directory_is_refused_with_the_folder_to_give(tmp_path):
    course = tmp_path / "course"
    empty_nb(course / "submitted" / "ada" / "ps1" / f"{NB}.ipynb")
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    with pytest.raises(UsageError) as e:
        grade(course, tmp_path / "out", progress=False)
    assert str(e.value) == (f"{course} is an nbgrader course directory (it has submitted/ and nbgrader_config.py): "
                            f"grade its submitted folder, course grade {course}/submitted --out OUT")
    assert chosen(course / "submitted") == {"ada": {NB: f"ps1/{NB}.ipynb"}}


def test_the_command_says_the_layout_and_the_lms_export_in_quiet_mode_too(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "out"
    for who in ("ada", "bob"):
        write(subs, who, unit02(STUBS))  # stubs: graded without starting a worker
    roster = tmp_path / "roster.csv"
    roster.write_text("folder,lms_id\nada,s1\n")
    code, said, err = cli(capsys, "grade", subs, "--out", out, "--roster", roster, "--seed", 1, "-q")
    assert code == 0, err
    lines = said.splitlines()
    assert lines[:2] == [f"Found one folder per learner: 2 students in {subs}/",
                         f"{out}/lms.csv: 1 roster learner, 1 graded learner not on the roster, written to "
                         f"{out}/lms-unmatched.csv instead ('bob')"]
    assert lines[2].startswith("course grade: 2 students, 2 notebooks graded") and len(lines) == 3
    assert err.strip() == (f"warning: 1 graded learner has no row in {roster}: 'bob'; not in lms.csv but in "
                           f"lms-unmatched.csv: add them to the roster and run the same command again (the grades "
                           f"are reused)")
    assert (out / "lms.csv").read_text() == f"Student,ID,SIS User ID,SIS Login ID,Section,{NB}\nada,,s1,s1,,0\n"
