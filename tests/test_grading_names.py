"""Folder names the grader must survive: bytes that are not UTF-8 (an old zip, a Windows archive).

Python keeps such bytes as surrogates, which no UTF-8 file can hold: before, writing the learner's
results JSON raised UnicodeEncodeError and the whole class run stopped. The name is now recorded with
``\\xNN`` escapes, and the learner is graded like everyone else.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from course_lib.grading.submissions import find_class, printable_name

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "notebooks" / "02_softmax_sampling.ipynb"


def _class(tmp_path: Path) -> Path:
    subs = tmp_path / "subs"
    for raw in (b"Jos\xe9", b"ana"):
        folder = os.path.join(os.fsencode(subs), raw)
        os.makedirs(folder)
        shutil.copy(STUB, os.path.join(folder, b"02_softmax_sampling.ipynb"))
    return subs


def test_a_name_that_is_not_utf8_is_printable_and_distinct(tmp_path):
    subs = _class(tmp_path)
    (subs / "Jos\\xe9").mkdir()  # a folder literally named like the escaped form
    students, warnings, _ = find_class(subs, {"02_softmax_sampling"})
    names = [st.name for st in students]
    assert len(set(names)) == 3 and "ana" in names and "Jos\\xe9" in names, names
    for name in names:
        name.encode("utf-8")  # every name can be written
    assert any("not valid UTF-8" in w for w in warnings), warnings
    assert printable_name("Jos\udce9") == "Jos\\xe9" and printable_name("José") == "José"


def test_a_class_with_such_a_folder_is_graded_without_crashing(tmp_path):
    subs = _class(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "course_lib", "grade", str(subs), "--out", str(out), "--units", "02"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader((out / "grades.csv").open(encoding="utf-8")))
    assert sorted(row["student"] for row in rows) == ["Jos\\xe9", "ana"]
    results = [json.loads(p.read_text(encoding="utf-8")) for p in (out / "results").glob("*.json")]
    assert sorted(res["student"] for res in results) == ["Jos\\xe9", "ana"]
    assert len(list((out / "feedback").glob("*.html"))) == 2
