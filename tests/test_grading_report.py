"""The class summary figure: counts of students are whole numbers on the histogram's axis."""
from course_lib.exercises.core import FAILED, PASSED
from course_lib.grading.report import summary_figure, summary_png


def _results(totals, max_total=3):
    return [{"student": f"s{i}", "total": t, "max_total": max_total,
             "exercises": {"02.stable_softmax": {"status": PASSED if t == max_total else FAILED,
                                                 "points": t, "max": max_total}}}
            for i, t in enumerate(totals)]


def test_histogram_counts_whole_students():
    # Two students: matplotlib's default locator would put ticks at 0.0, 0.2, ..., 1.0 ("0.2 students").
    fig = summary_figure(_results([3, 1]), ["02.stable_softmax"])
    hist = fig.axes[0]
    ticks = [t for t in hist.get_yticks() if hist.get_ylim()[0] <= t <= hist.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert hist.get_ylabel() == "students"
    assert summary_png(_results([3, 1]), ["02.stable_softmax"])[:8] == b"\x89PNG\r\n\x1a\n"
