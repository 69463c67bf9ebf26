"""The syllabus table in lessons/README.md agrees with the exercise registry, and every unit has its files.

Times and points have one source each: the registry holds each exercise's points and minutes; the syllabus
row holds a unit's total time. The notebook headings and the lesson guides must say the same.
"""

import json
import re
from pathlib import Path

import pytest

from course_lib.exercises import all_exercises

ROOT = Path(__file__).resolve().parents[1]
ROW_RE = re.compile(
    r"^\| (\d\d) \| \[[^\]]+\]\((\d\d_[a-z0-9_]+)\.md\) \|[^|]*\| ~(\d+) min \| (\d+) \| ([\d.]+) \|$", re.M)
HEADING_RE = re.compile(r"^#+ Exercise (\d\d)\.\d+\s+\S+\s+(.+?) \((\d+(?:\.\d+)?) points?, ~(\d+) min\)\s*$", re.M)
# a row of a lesson guide's exercise table: the id somewhere in it, then "| points | ~M min |" at the end
LESSON_ROW_RE = re.compile(r"^\|[^\n]*?\b(\d\d\.[A-Za-z_][A-Za-z0-9_]*)\b[^\n]*\| (\d+(?:\.\d+)?) \| ~(\d+) min \|$", re.M)
LESSON_TIME_RE = re.compile(r"about (\d+) minutes")
NOTEBOOK_TIME_RE = re.compile(r"\*\*Time:\*\* about (\d+) minutes")


def _rows():
    text = (ROOT / "lessons" / "README.md").read_text()
    rows = {m.group(2): (int(m.group(4)), float(m.group(5)), int(m.group(3))) for m in ROW_RE.finditer(text)}
    return text, rows


UNITS = sorted(_rows()[1])


def _markdown(stem: str) -> str:
    nb = json.loads((ROOT / "solutions" / f"{stem}.ipynb").read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def _exercise_cells(stem: str) -> list:
    nb = json.loads((ROOT / "solutions" / f"{stem}.ipynb").read_text())
    ids = []
    for c in nb["cells"]:
        src = "".join(c["source"]).lstrip()
        m = re.match(r"#\s*EXERCISE:\s*(\S+)", src)
        if c["cell_type"] == "code" and m:
            ids.append(m.group(1))
    return ids


def test_syllabus_points_match_the_registry():
    text, rows = _rows()
    per_unit = {}
    for ex in all_exercises():
        n, pts = per_unit.get(ex.notebook, (0, 0.0))
        per_unit[ex.notebook] = (n + 1, pts + ex.points)
    assert {k: v[:2] for k, v in rows.items()} == per_unit
    total = sum(p for _, p in per_unit.values())
    assert f"**{total:g}**" in text


def test_syllabus_total_time_is_the_sum_of_the_units():
    text, rows = _rows()
    minutes = sum(v[2] for v in rows.values())
    h, m = divmod(minutes, 60)
    assert f"**~{h} h {m} min**" in text, f"the units add up to ~{h} h {m} min"


def test_every_unit_has_solution_notebook_lesson_and_exercises():
    _, rows = _rows()
    assert len(rows) >= 10
    assert [s[:2] for s in sorted(rows)] == [f"{i:02d}" for i in range(1, len(rows) + 1)]
    for stem, (n_exercises, _, _) in rows.items():
        assert (ROOT / "solutions" / f"{stem}.ipynb").exists(), stem
        assert (ROOT / "notebooks" / f"{stem}.ipynb").exists(), stem
        assert (ROOT / "lessons" / f"{stem}.md").exists(), stem
        assert 3 <= n_exercises <= 6, f"{stem} has {n_exercises} exercises"


@pytest.mark.parametrize("stem", UNITS)
def test_unit_time_has_one_source(stem):
    """The syllabus row, the lesson guide's header and the notebook's **Time:** line give the same time."""
    _, rows = _rows()
    minutes = rows[stem][2]
    lesson = (ROOT / "lessons" / f"{stem}.md").read_text()
    header = "\n".join(lesson.splitlines()[:6])
    said = [int(x) for x in LESSON_TIME_RE.findall(header)]
    assert said == [minutes], f"lessons/{stem}.md says {said} minutes, the syllabus ~{minutes} min"
    in_notebook = [int(x) for x in NOTEBOOK_TIME_RE.findall(_markdown(stem))]
    assert in_notebook == [minutes], f"solutions/{stem}.ipynb says {in_notebook} minutes, the syllabus ~{minutes} min"


@pytest.mark.parametrize("stem", UNITS)
def test_exercise_points_and_times_have_one_source(stem):
    """Each exercise's heading in the notebook and its row in the lesson guide match the registry."""
    exercises = [ex for ex in all_exercises() if ex.notebook == stem]
    by_id = {ex.id: ex for ex in exercises}
    cells = _exercise_cells(stem)
    assert sorted(cells) == sorted(by_id), f"exercise cells {cells} vs registry {sorted(by_id)}"
    headings = HEADING_RE.findall(_markdown(stem))
    assert len(headings) == len(exercises), f"{stem}: {len(headings)} exercise headings for {len(exercises)} exercises"
    # Headings come in the order of the exercise cells, each right before its cell.
    for ex_id, (unit, title, points, minutes) in zip(cells, headings):
        ex = by_id[ex_id]
        assert unit == ex.unit, f"heading '{title}' of unit {unit} in {stem}"
        assert float(points) == float(ex.points), f"{ex_id}: heading says {points} points, registry {ex.points}"
        assert int(minutes) == ex.minutes, f"{ex_id}: heading says ~{minutes} min, registry {ex.minutes}"
    lesson = (ROOT / "lessons" / f"{stem}.md").read_text()
    rows = {m.group(1): (float(m.group(2)), int(m.group(3))) for m in LESSON_ROW_RE.finditer(lesson)}
    assert set(rows) == set(by_id), f"lessons/{stem}.md lists {sorted(rows)}, registry {sorted(by_id)}"
    for ex_id, (points, minutes) in rows.items():
        ex = by_id[ex_id]
        assert (points, minutes) == (float(ex.points), ex.minutes), (
            f"lessons/{stem}.md: {ex_id} {points:g} points ~{minutes} min, registry {ex.points} points "
            f"~{ex.minutes} min")
