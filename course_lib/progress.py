"""``course progress [FOLDER]``: a learner's progress over their saved notebooks.

It reads what the inline checks last showed: each check's output carries
``{"course_lib": {"exercise", "status", "points", "max"}}`` metadata. An exercise whose function still
holds the stub counts as "not attempted"; one whose check has not been run since is "not checked".
So the table says what the notebooks say, without running any code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .authoring import NOTEBOOK_RE, exercise_id_of
from .exercises import all_exercises
from .exercises.check import METADATA_KEY

NOT_CHECKED = "not_checked"
NO_NOTEBOOK = "no_notebook"
STUB_TEXT = "raise NotImplementedError(\"exercise "


@dataclass
class Row:
    notebook: str
    exercise: str
    title: str
    status: str
    points: float
    max_points: float


def _check_status(nb: dict) -> dict:
    """exercise id -> (status, points) from the last check output of each exercise."""
    found = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            meta = (out.get("metadata") or {}).get(METADATA_KEY)
            if isinstance(meta, dict) and "exercise" in meta:
                found[meta["exercise"]] = (str(meta.get("status", NOT_CHECKED)), float(meta.get("points", 0)))
    return found


def _stubbed(nb: dict) -> set:
    out = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        ex_id = exercise_id_of(src)
        if ex_id and STUB_TEXT + ex_id in src:
            out.add(ex_id)
    return out


def progress(folder: Path) -> list:
    """One :class:`Row` per exercise of the course."""
    folder = Path(folder)
    notebooks = {p.stem: p for p in folder.glob("*.ipynb") if NOTEBOOK_RE.match(p.name)}
    cache: dict = {}
    rows = []
    for ex in all_exercises():
        path = notebooks.get(ex.notebook)
        if path is None:
            rows.append(Row(ex.notebook, ex.id, ex.title, NO_NOTEBOOK, 0.0, float(ex.points)))
            continue
        if ex.notebook not in cache:
            try:
                nb = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                nb = {}
            cache[ex.notebook] = (_check_status(nb), _stubbed(nb))
        checks, stubs = cache[ex.notebook]
        if ex.id in stubs:
            status, pts = "not_attempted", 0.0
        else:
            status, pts = checks.get(ex.id, (NOT_CHECKED, 0.0))
        rows.append(Row(ex.notebook, ex.id, ex.title, status, pts, float(ex.points)))
    return rows


def format_table(rows: list, folder: Optional[Path] = None) -> str:
    head = ("exercise", "title", "status", "points")
    body = [(r.exercise, r.title, r.status.replace("_", " "), f"{r.points:g}/{r.max_points:g}") for r in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(4)]
    line = lambda t: "  ".join(x.ljust(w) for x, w in zip(t, widths)).rstrip()
    out = []
    if folder is not None:
        out.append(f"Progress in {folder}")
    out += [line(head), line(tuple("-" * w for w in widths))]
    out += [line(b) for b in body]
    done = sum(1 for r in rows if r.status == "passed")
    earned = sum(r.points for r in rows)
    total = sum(r.max_points for r in rows)
    out.append(f"{done}/{len(rows)} exercises passed, {earned:g}/{total:g} points "
               f"(as last checked in the saved notebooks)")
    return "\n".join(out)
