"""What a grading run writes: results, feedback, the gradebook and the summary.

* ``results/<student>.json``: everything about one student (instructors; the cache reads it back);
* ``feedback/<student>.html``: the same, for the learner: status, points, message, the named mistake and
  the learner's own traceback per exercise; never the seed, hidden inputs or the grader's frames;
* ``grades.csv``: one row per student, one column per exercise, ``total`` and ``max_total``;
* ``summary.png`` and a table in the terminal: the score histogram and the pass rate per exercise.

Every file is written atomically (a temporary file in the same folder, then a rename), so a run that
is killed leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import statistics
import tempfile
from pathlib import Path
from typing import Iterable

from ..exercises.check import message_html, mistake_label  # `code` in messages as <code>, one line per line
from ..exercises.core import (ERROR, FAILED, FORBIDDEN, MISSING, NOT_ATTEMPTED, PARTIAL, PASSED, STATUSES,
                              TIMEOUT)


def atomic_write(path: Path, data, binary: bool = False) -> None:
    """Write ``data`` to ``path`` so that readers only ever see a complete file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fmt_points(x: float) -> str:
    """A number of points as a CSV cell: ``11``, ``9.5``, ``0`` (never escaped: importers read numbers)."""
    return f"{float(x):g}"


# A spreadsheet (Excel, LibreOffice, Google Sheets) opening a CSV file reads a cell that starts with one of
# these as a formula: OWASP's list for CSV injection (= + - @, tab, carriage return, line feed), plus the
# apostrophe that the escape itself adds (see spreadsheet_text).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "'")


def spreadsheet_text(text: str) -> str:
    """A text cell that a learner controls (a folder name), made safe for a spreadsheet.

    A learner can name their folder ``=HYPERLINK("http:evil.example","click")`` or ``@SUM(1+1)``; written
    as it is into ``grades.csv``, that cell becomes a live formula in the instructor's spreadsheet. As
    OWASP recommends, a cell starting with ``= + - @``, a tab, a carriage return or a line feed gets a
    leading apostrophe, which spreadsheets read as "this cell is text" (``'=1+1`` shows the text
    ``=1+1``). A cell that already starts with an apostrophe gets one too, so the escape can be undone
    (drop one leading apostrophe) and two different folders (``=x`` and ``'=x``) never give the same cell.

    Only text goes through here: points stay plain numbers (:func:`fmt_points`), so ``-2`` would stay
    ``-2`` and the LMS importers read every grade as a number. The escape is for the files written;
    learners are matched (roster, shards) by their real folder names.
    """
    return "'" + text if text.startswith(FORMULA_START) else text


# ---------------------------------------------------------------------------------------------------
# grades.csv
# ---------------------------------------------------------------------------------------------------


def grades_csv(results: list, exercise_ids: list) -> str:
    """The gradebook: ``student, <exercise ids...>, total, max_total``, students in name order (the
    folder name escaped for spreadsheets by :func:`spreadsheet_text`, the points plain numbers)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", *exercise_ids, "total", "max_total"])
    for r in sorted(results, key=lambda r: r["student"]):
        ex = r["exercises"]
        points = [fmt_points(ex[i]["points"]) if i in ex else "0" for i in exercise_ids]
        w.writerow([spreadsheet_text(r["student"]), *points, fmt_points(r["total"]), fmt_points(r["max_total"])])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# Feedback HTML
# ---------------------------------------------------------------------------------------------------

_STYLE = {
    PASSED: ("#1e7b34", "#e7f6ea", "passed"),
    PARTIAL: ("#9a6500", "#fff6e0", "partly right"),
    FAILED: ("#b3261e", "#fdecea", "not yet right"),
    ERROR: ("#b3261e", "#fdecea", "error"),
    TIMEOUT: ("#b3261e", "#fdecea", "too slow"),
    FORBIDDEN: ("#6a1b9a", "#f3e8fd", "shortcut not allowed"),
    NOT_ATTEMPTED: ("#5f6368", "#f1f3f4", "not attempted"),
    MISSING: ("#5f6368", "#f1f3f4", "missing"),
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#202124}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.total{font-size:1.1rem;color:#444} .ex{border-left:6px solid;border-radius:4px;padding:.6rem .9rem;margin:.7rem 0}
.head{display:flex;justify-content:space-between;font-weight:600} .badge{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em}
.msg{margin-top:.35rem} .mistake{margin-top:.4rem;padding:.4rem .6rem;background:#fff;border-radius:4px}
pre{background:#fff;border:1px solid #e0e0e0;padding:.5rem;overflow-x:auto;font-size:.85rem;white-space:pre-wrap}
details{margin-top:.4rem} summary{cursor:pointer;color:#444} .notes li{margin:.2rem 0} .small{color:#666;font-size:.85rem}
table{border-collapse:collapse} td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:left}
"""


def _exercise_html(e: dict) -> str:
    esc = html.escape
    fg, bg, label = _STYLE.get(e["status"], _STYLE[FAILED])
    parts = [f'<div class="ex" id="{esc(e["exercise"])}" data-status="{esc(e["status"])}" '
             f'style="border-color:{fg};background:{bg}">',
             f'<div class="head"><span>{esc(e["exercise"])} &mdash; {esc(e.get("title", ""))}</span>'
             f'<span>{fmt_points(e["points"])} / {fmt_points(e["max"])} points</span></div>',
             f'<div class="badge" style="color:{fg}">{esc(label)}</div>',
             f'<div class="msg">{message_html(e.get("message", ""))}</div>']
    if e.get("mistake"):
        parts.append(f'<div class="mistake"><b>{mistake_label(bool(e.get("diagnosed")))}: {esc(e["mistake"])}.</b> '
                     f'{message_html(e.get("mistake_message") or "")}</div>')
    details = [d for d in e.get("details", []) if not d.endswith(": ok") and not d.endswith(": holds")]
    if details and e["status"] not in (PASSED, NOT_ATTEMPTED, MISSING):
        items = "".join(f"<li>{esc(d)}</li>" for d in e["details"][:40])
        n_ok = e.get("cases_passed", 0)
        parts.append(f'<details><summary>All checks ({n_ok} of {e.get("cases_total", 0)} cases passed)</summary>'
                     f'<ul>{items}</ul></details>')
    if e.get("traceback"):
        parts.append(f'<details open><summary>Traceback (your code)</summary><pre>{esc(e["traceback"])}</pre></details>')
    parts.append("</div>")
    return "".join(parts)


def feedback_html(result: dict) -> str:
    """The learner's report: per notebook, per exercise; problems in their cells at the end of each part."""
    esc = html.escape
    pct = 100.0 * result["total"] / result["max_total"] if result["max_total"] else 0.0
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Feedback: {esc(result['student'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>Feedback for {esc(result['student'])}</h1>",
           f'<div class="total">Total: <b>{fmt_points(result["total"])} / {fmt_points(result["max_total"])}</b> '
           f"points ({pct:.0f}%)</div>"]
    for note in result.get("notes", []):
        out.append(f'<p class="small">{esc(note)}</p>')
    for stem, nb in result["notebooks"].items():
        pts = sum(e["points"] for e in nb["exercises"].values())
        mx = sum(e["max"] for e in nb["exercises"].values())
        out.append(f'<h2>{esc(stem)} <span class="small">({fmt_points(pts)} / {fmt_points(mx)} points)</span></h2>')
        for e in nb["exercises"].values():
            out.append(_exercise_html(e))
        notes = list(nb.get("notes", []))
        cells = nb.get("cells", {})
        for f in cells.get("fatal", []):
            notes.append(f"{f['reason']}; it was skipped and the rest of the notebook was graded without it")
        if cells.get("output_chars", 0) > 1_000_000:
            notes.append(f"your cells printed {cells['output_chars']:,} characters; printed output is not kept "
                         f"while grading")
        if notes:
            out.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        errors = cells.get("errors", [])
        if errors:
            out.append(f"<details><summary>{len(errors)} cell(s) raised an error while your notebook ran</summary>")
            for err in errors[:20]:
                out.append(f"<p><b>Cell {err['cell']}</b>: {esc(err['error'])}</p>")
                if err.get("traceback"):
                    out.append(f"<pre>{esc(err['traceback'])}</pre>")
            out.append("</details>")
    out.append('<p class="small">Graded automatically from the course\'s exercise definitions, on hidden '
               'inputs that differ from the ones in your notebook.</p></body></html>')
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# Summary: terminal table and summary.png
# ---------------------------------------------------------------------------------------------------

_COLS = [(PASSED, "pass"), (PARTIAL, "part"), (FAILED, "fail"), (ERROR, "err"), (TIMEOUT, "time"),
         (FORBIDDEN, "forb"), (NOT_ATTEMPTED, "n/a"), (MISSING, "miss")]


def exercise_stats(results: list, exercise_ids: list) -> list:
    """Per exercise: max points, mean points, counts per status, pass rate."""
    rows = []
    for ex_id in exercise_ids:
        entries = [r["exercises"][ex_id] for r in results if ex_id in r["exercises"]]
        counts = {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}
        mx = entries[0]["max"] if entries else 0
        mean = statistics.fmean(e["points"] for e in entries) if entries else 0.0
        rows.append({"exercise": ex_id, "max": mx, "mean": mean, "counts": counts,
                     "pass_rate": counts[PASSED] / len(entries) if entries else 0.0})
    return rows


def summary_table(results: list, exercise_ids: list, isolation: Iterable = ()) -> str:
    stats = exercise_stats(results, exercise_ids)
    width = max([len("exercise")] + [len(i) for i in exercise_ids])
    head = f"{'exercise':<{width}}  {'max':>4} {'mean':>6} " + " ".join(f"{c:>4}" for _, c in _COLS)
    lines = [head, "-" * len(head)]
    for s in stats:
        lines.append(f"{s['exercise']:<{width}}  {fmt_points(s['max']):>4} {s['mean']:>6.2f} "
                     + " ".join(f"{s['counts'][k]:>4}" for k, _ in _COLS))
    totals = [r["total"] for r in results]
    if totals:
        mx = results[0]["max_total"]
        lines.append("-" * len(head))
        lines.append(f"{len(results)} students; total out of {fmt_points(mx)}: mean {statistics.fmean(totals):.2f}, "
                     f"median {statistics.median(totals):g}, min {min(totals):g}, max {max(totals):g}")
    kinds = sorted({re.sub(r"; uid \d+", "", k) for k in isolation})
    if kinds:
        lines.append("isolation: " + " | ".join(kinds))
    return "\n".join(lines)


def summary_png(results: list, exercise_ids: list) -> bytes:
    """Score histogram and pass rate per exercise, as PNG bytes (matplotlib's Agg, no pyplot state)."""
    fig = summary_figure(results, exercise_ids)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def summary_figure(results: list, exercise_ids: list):
    """The figure of :func:`summary_png`: a histogram of scores (whole students on the y axis) and the
    pass/partial rate per exercise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    pct = [100.0 * r["total"] / r["max_total"] if r["max_total"] else 0.0 for r in results]
    ax1.hist(pct, bins=[i * 10 for i in range(11)], color="#4c72b0", edgecolor="white")
    ax1.set_xlabel("score (% of the maximum)")
    ax1.set_ylabel("students")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no "0.2 students"
    ax1.set_title(f"Scores ({len(results)} students)")
    stats = exercise_stats(results, exercise_ids)
    rates = [100 * s["pass_rate"] for s in stats]
    partial = [100 * s["counts"][PARTIAL] / max(1, sum(s["counts"].values())) for s in stats]
    y = list(range(len(stats)))
    ax2.barh(y, rates, color="#55a868", label="passed")
    ax2.barh(y, partial, left=rates, color="#dd8452", label="partial")
    ax2.set_yticks(y)
    ax2.set_yticklabels([s["exercise"] for s in stats], fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 100)
    ax2.set_xlabel("% of students")
    ax2.set_title("Pass rate per exercise")
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def result_json(result: dict) -> str:
    return json.dumps(result, indent=1, ensure_ascii=False, sort_keys=False, allow_nan=False) + "\n"
