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
import re
from typing import Any, Callable

from .core import (ERROR, FAILED, FORBIDDEN, NOT_ATTEMPTED, PARTIAL, PASSED, PUBLIC_SEED, TIMEOUT, Report,
                   run_local, what_is)
from .registry import get

METADATA_KEY = "course_lib"

# Icons are characters that every font has (no emoji, which some browsers draw as coloured pictures
# and some fonts lack).
_STYLE = {
    PASSED: ("#e7f6ea", "#1e7b34", "\u2714", "Passed"),
    PARTIAL: ("#fff6e0", "#9a6500", "\u25d1", "Partly right"),
    FAILED: ("#fdecea", "#b3261e", "\u2718", "Not yet right"),
    ERROR: ("#fdecea", "#b3261e", "\u2718", "Your code raised an error"),
    TIMEOUT: ("#fdecea", "#b3261e", "\u25d4", "Too slow"),
    FORBIDDEN: ("#f3e8fd", "#6a1b9a", "!", "Shortcut not allowed here"),
    NOT_ATTEMPTED: ("#f1f3f4", "#5f6368", "\u2026", "Not attempted yet"),
}

#: How many other failing cases a check lists after its message (properties are never cut off: every
#: failing one is in the message).
MAX_OTHER_CASES = 4

_CODE = re.compile(r"`([^`\n]+)`")


def message_html(text: str) -> str:
    """A message as HTML: escaped, `backticks` as <code>, one line per line. The grader's feedback uses it too."""
    out = []
    for line in str(text).split("\n"):
        pieces = _CODE.split(line)  # even indices: text, odd: code
        out.append("".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p)
                           for i, p in enumerate(pieces)))
    return "<br>".join(out)


def mistake_label(diagnosed: bool) -> str:
    """How a named mistake is introduced: a listed one is known; a pattern is what the output shows."""
    return "What your output shows" if diagnosed else "Known mistake"


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

    def _other_failures(self) -> list:
        """Failing case lines that the message does not already show."""
        r = self.report
        if r.status in (PASSED, NOT_ATTEMPTED, FORBIDDEN):
            return []
        shown = r.message.split("\n")
        if shown[0].endswith("(on every case)") or shown[0].startswith("every case raised"):
            return []  # one clear line says it all
        seen = {line.split("): ", 1)[-1] for line in shown}
        out = []
        for d in r.details:
            if d.endswith(": ok") or d.startswith("property '") or d in shown:
                continue
            problem = d.split("): ", 1)[-1]
            if problem not in seen:  # the same problem on another case adds nothing
                seen.add(problem)
                out.append(d)
        return out

    # -- text ---------------------------------------------------------------------------------------

    def text(self) -> str:
        r = self.report
        head = _STYLE.get(r.status, _STYLE[FAILED])[3]
        pts = f"{_pts(r.points)}/{_pts(r.max_points)} points"
        title = f" ({self.title})" if self.title else ""
        lines = [f"[{r.status}] {r.exercise_id}{title}: {head} ({pts})"]
        if r.mistake:
            lines.append(f"  {mistake_label(r.diagnosed)}: {r.mistake}. {r.mistake_message}")
        lines += [f"  {ln}" for ln in r.message.split("\n")]
        others = self._other_failures()
        if others:
            lines.append("  Other failing cases:")
            shown = others if len(others) <= MAX_OTHER_CASES + 1 else others[:MAX_OTHER_CASES]  # never "1 more"
            lines += [f"  - {d}" for d in shown]
            if len(others) > len(shown):
                lines.append(f"  - ... and {len(others) - len(shown)} more")
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
        title = (f' &middot; <span class="course-check-title">{esc(self.title)}</span>' if self.title else "")
        parts = [
            f'<div class="course-check course-check-{r.status}" data-exercise="{esc(r.exercise_id)}" '
            f'data-status="{r.status}" style="border-left:6px solid {fg};background:{bg};'
            f'padding:8px 12px;margin:4px 0;border-radius:4px;font-family:sans-serif;color:#202124">',
            f'<div style="font-weight:600;color:{fg}">{icon} {esc(head)} &mdash; '
            f'<code class="course-check-id">{esc(r.exercise_id)}</code>{title} '
            f'<span style="float:right">{_pts(r.points)}/{_pts(r.max_points)} points</span></div>',
        ]
        if r.mistake:
            parts.append(f'<div style="margin-top:6px"><b>{mistake_label(r.diagnosed)}: {esc(r.mistake)}.</b> '
                         f'{message_html(r.mistake_message or "")}</div>')
        parts.append(f'<div style="margin-top:4px">{message_html(r.message)}</div>')
        if r.status not in (PASSED, NOT_ATTEMPTED, FORBIDDEN) and r.details:
            items = "".join(f"<li>{message_html(d)}</li>" for d in r.details)
            parts.append(f'<details style="margin-top:6px"><summary>All cases and properties</summary>'
                         f'<ul>{items}</ul></details>')
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
    if not isinstance(exercise_id, str):
        return CheckResult(Report(str(getattr(exercise_id, "__name__", exercise_id)), ERROR, 0.0, 0.0,
                                  'check() takes the exercise id first, then your function, e.g. '
                                  '`check("02.stable_softmax", stable_softmax)`'))
    try:
        ex = get(exercise_id)
    except KeyError as e:
        return CheckResult(Report(str(exercise_id), ERROR, 0.0, 0.0, str(e.args[0])))
    if obj is None or not callable(obj):
        if obj is None:
            msg = f"pass your function to check(): `check({ex.id!r}, {ex.function})`"
        else:
            msg = (f"pass your {'class' if ex.kind == 'module' else 'function'} `{ex.function}` itself to check(), "
                   f"not the result of calling it; got {what_is(obj)}")
        return CheckResult(Report(ex.id, ERROR, 0.0, float(ex.points), msg), ex.title)
    try:
        report = run_local(ex, obj, seed=seed)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - the check must never raise into the notebook
        report = Report(ex.id, ERROR, 0.0, float(ex.points), f"the check itself failed: {type(e).__name__}: {e}")
    return CheckResult(report, ex.title)


def status_of(result: Any) -> str:
    return result.report.status if isinstance(result, CheckResult) else ERROR
