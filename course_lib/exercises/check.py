"""The inline check that closes every exercise in the notebooks.

``check("02.stable_softmax", stable_softmax)`` runs the public cases of one exercise on the learner's
function, in the learner's kernel, and shows a friendly result: a rich box in Jupyter, plain text
elsewhere. It never raises into the notebook, so a fresh notebook with every exercise still a stub runs
from top to bottom.

The displayed output carries machine-readable metadata (``{"course_lib": {"exercise", "status", ...}}``)
that ``course progress`` reads back from saved notebooks.
"""

from __future__ import annotations

import html
from typing import Any, Callable

from .core import (ERROR, FAILED, FORBIDDEN, NOT_ATTEMPTED, PARTIAL, PASSED, PUBLIC_SEED, TIMEOUT, Report,
                   run_local)
from .registry import get

METADATA_KEY = "course_lib"

_STYLE = {
    PASSED: ("#e7f6ea", "#1e7b34", "\u2714", "Passed"),
    PARTIAL: ("#fff6e0", "#9a6500", "\u25d1", "Partly right"),
    FAILED: ("#fdecea", "#b3261e", "\u2718", "Not yet right"),
    ERROR: ("#fdecea", "#b3261e", "\u2718", "Your code raised an error"),
    TIMEOUT: ("#fdecea", "#b3261e", "\u231b", "Too slow"),
    FORBIDDEN: ("#f3e8fd", "#6a1b9a", "\u26d4", "Shortcut not allowed here"),
    NOT_ATTEMPTED: ("#f1f3f4", "#5f6368", "\u2026", "Not attempted yet"),
}


class CheckResult:
    """What ``check`` returns: shows itself as HTML in Jupyter and as text anywhere else."""

    def __init__(self, report: Report, title: str = ""):
        self.report = report
        self.title = title

    @property
    def status(self) -> str:
        return self.report.status

    @property
    def passed(self) -> bool:
        return self.report.status == PASSED

    # -- text ---------------------------------------------------------------------------------------

    def text(self) -> str:
        r = self.report
        head = _STYLE.get(r.status, _STYLE[FAILED])[3]
        pts = f"{_pts(r.points)}/{_pts(r.max_points)} points"
        lines = [f"[{r.status}] {r.exercise_id} {self.title}: {head} ({pts})", f"  {r.message}"]
        if r.mistake:
            lines.append(f"  Known mistake: {r.mistake}. {r.mistake_message}")
        if r.status not in (PASSED, NOT_ATTEMPTED, FORBIDDEN):
            shown = [d for d in r.details if not d.endswith(": ok") and not d.endswith(": holds")][:4]
            lines += [f"  - {d}" for d in shown if d != r.message and not r.message.endswith(d)]
        if r.traceback and r.status in (ERROR, FAILED, PARTIAL):
            lines.append("  Traceback (your code):")
            lines += ["    " + ln for ln in r.traceback.rstrip().splitlines()[-8:]]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    # -- rich ---------------------------------------------------------------------------------------

    def html(self) -> str:
        r = self.report
        bg, fg, icon, head = _STYLE.get(r.status, _STYLE[FAILED])
        esc = html.escape
        parts = [
            f'<div class="course-check course-check-{r.status}" data-exercise="{esc(r.exercise_id)}" '
            f'data-status="{r.status}" style="border-left:6px solid {fg};background:{bg};'
            f'padding:8px 12px;margin:4px 0;border-radius:4px;font-family:sans-serif;color:#202124">',
            f'<div style="font-weight:600;color:{fg}">{icon} {esc(head)} &mdash; {esc(r.exercise_id)} '
            f'{esc(self.title)} <span style="float:right">{_pts(r.points)}/{_pts(r.max_points)} points</span></div>',
            f'<div style="margin-top:4px">{esc(r.message)}</div>',
        ]
        if r.mistake:
            parts.append(f'<div style="margin-top:6px"><b>Known mistake: {esc(r.mistake)}.</b> '
                         f'{esc(r.mistake_message or "")}</div>')
        if r.status not in (PASSED, NOT_ATTEMPTED, FORBIDDEN) and r.details:
            items = "".join(f"<li>{esc(d)}</li>" for d in r.details[:12])
            parts.append(f'<details style="margin-top:6px"><summary>All cases</summary><ul>{items}</ul></details>')
        if r.traceback and r.status in (ERROR, FAILED, PARTIAL):
            parts.append(f'<pre style="background:#fff;padding:6px;overflow-x:auto">{esc(r.traceback)}</pre>')
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"text/plain": self.text(), "text/html": self.html()}
        meta = {METADATA_KEY: {"exercise": self.report.exercise_id, "status": self.report.status,
                               "points": self.report.points, "max": self.report.max_points}}
        return data, meta


def _pts(x: float) -> str:
    return f"{x:g}"


def check(exercise_id: str, obj: Callable = None, seed: int = PUBLIC_SEED) -> CheckResult:
    """Check your function (or class) for one exercise on the public cases and show the result.

    Never raises: a stub reports "not attempted yet", an error in your code is shown with your own
    traceback, a mistake that many learners make is named.
    """
    try:
        ex = get(exercise_id)
    except KeyError as e:
        return CheckResult(Report(str(exercise_id), ERROR, 0.0, 0.0, str(e.args[0])))
    if obj is None or not callable(obj):
        what = "nothing" if obj is None else type(obj).__name__
        return CheckResult(Report(ex.id, ERROR, 0.0, float(ex.points),
                                  f"pass your function `{ex.function}` to check(); got {what}"), ex.title)
    try:
        report = run_local(ex, obj, seed=seed)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - the check must never raise into the notebook
        report = Report(ex.id, ERROR, 0.0, float(ex.points), f"the check itself failed: {type(e).__name__}: {e}")
    return CheckResult(report, ex.title)


def status_of(result: Any) -> str:
    return result.report.status if isinstance(result, CheckResult) else ERROR
