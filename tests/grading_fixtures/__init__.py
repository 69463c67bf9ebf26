"""Synthetic learner notebooks for the autograder tests (built with nbformat, unit 02 exercise ids)."""


def require_bwrap() -> None:
    """Skip when bubblewrap is unusable; a failure instead when COURSE_REQUIRE_TOOLS=1 (CI)."""
    from course_lib.grading.sandbox import find_bwrap
    from tests.conftest import require_tool

    path, why = find_bwrap()
    require_tool("bubblewrap", path is not None, f"{why}; apt-get install bubblewrap")
