"""Cells tagged `train` (model training for the lesson's demos) are carried into notebooks/ and not run by
the grader (issue 13 §4); a function that needs a name only such a cell defines gets one line naming it.

(The idle-versus-busy load test of §3 is in tests/test_grading_run.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from course_lib.grading import Limits, grade
from tests.grading_fixtures.build import NB, unit02, write
from tests.grading_fixtures.faults import SOFTMAX, softmax_cell

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow]


def test_train_cells_are_skipped_and_a_name_they_define_is_explained(tmp_path):
    """A `train` cell is not run (its spin would use up the CPU limit); a function that uses a name only
    that cell defines fails with one line naming the cell."""
    subs, out = tmp_path / "subs", tmp_path / "out"
    uses_model = softmax_cell("return trained_scale * 0 + (x - x.amax(dim=dim, keepdim=True)).exp() / "
                              "(x - x.amax(dim=dim, keepdim=True)).exp().sum(dim=dim, keepdim=True)")
    cells = unit02({SOFTMAX: uses_model}, extra_before=["while True:  # 'training'\n    pass\ntrained_scale = 1.0"])
    write(subs, "learner", cells, tags={2: ["train"]})  # list index 2 = cell 3
    s = grade(subs, out, seed=5, jobs=1, progress=False, limits=Limits(cell_timeout=20, exercise_timeout=20,
                                                                        notebook_timeout=60))
    r = s.results[0]
    nb = r["notebooks"][NB]
    assert nb["cells"]["skipped_by_tag"] == [3]
    e = r["exercises"][SOFTMAX]
    assert e["status"] == "error" and e["points"] == 0
    assert e["message"] == ("`trained_scale` is defined only in cell 3, tagged `train`, which the grader does not "
                            "run; define what your code needs in the exercise cell or another untagged cell")
    assert all(v["status"] == "passed" for k, v in r["exercises"].items() if k != SOFTMAX)


def test_course_build_carries_the_train_tag_into_notebooks():
    from course_lib.authoring import build_all

    built = build_all(ROOT / "solutions")
    sources = {p.stem: json.loads(p.read_text()) for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    tagged_somewhere = 0
    for b in built:
        stem = Path(b.name).stem
        want = [c["source"] for c in sources[stem]["cells"] if "train" in c.get("metadata", {}).get("tags", [])]
        got = [c["source"] for c in json.loads(b.text)["cells"] if "train" in c.get("metadata", {}).get("tags", [])]
        assert len(got) == len(want), f"{stem}: {len(want)} train cells in solutions/, {len(got)} in notebooks/"
        tagged_somewhere += len(got)
    assert tagged_somewhere > 0
