"""The syllabus table in lessons/README.md agrees with the exercise registry, and every unit has its files."""

import re
from pathlib import Path

from course_lib.exercises import all_exercises

ROOT = Path(__file__).resolve().parents[1]


def _rows():
    text = (ROOT / "lessons" / "README.md").read_text()
    rows = {}
    for m in re.finditer(r"^\| (\d\d) \| \[[^\]]+\]\((\d\d_[a-z0-9_]+)\.md\) \|[^|]*\|[^|]*\| (\d+) \| ([\d.]+) \|$", text, re.M):
        rows[m.group(2)] = (int(m.group(3)), float(m.group(4)))
    return text, rows


def test_syllabus_points_match_the_registry():
    text, rows = _rows()
    per_unit = {}
    for ex in all_exercises():
        n, pts = per_unit.get(ex.notebook, (0, 0.0))
        per_unit[ex.notebook] = (n + 1, pts + ex.points)
    assert rows == per_unit
    total = sum(p for _, p in per_unit.values())
    assert f"**{total:g}**" in text


def test_every_unit_has_solution_notebook_lesson_and_exercises():
    _, rows = _rows()
    assert len(rows) == 10
    for stem, (n_exercises, _) in rows.items():
        assert (ROOT / "solutions" / f"{stem}.ipynb").exists(), stem
        assert (ROOT / "notebooks" / f"{stem}.ipynb").exists(), stem
        assert (ROOT / "lessons" / f"{stem}.md").exists(), stem
        assert 3 <= n_exercises <= 5, f"{stem} has {n_exercises} exercises"
