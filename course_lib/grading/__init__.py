"""The autograder: ``course grade SUBMISSIONS --out OUT``.

Modules, in the order a submission meets them:

* :mod:`.submissions` finds ``SUBMISSIONS/<student>/<NN_slug>.ipynb`` and parses notebooks without
  running them;
* :mod:`.runner` plans the run (seed, cache, parallel jobs) and writes the outputs;
* :mod:`.session` grades one notebook: it drives a worker through the learner's cells and the hidden
  calls, and judges the answers with the exercise's single definition in ``course_lib.exercises``;
* :mod:`.workers` starts worker processes (through :mod:`.sandbox`: bubblewrap or limits only) and talks
  to them with every wait bounded; :mod:`.worker` is what runs inside;
* :mod:`.wire` carries inputs and outputs by value (JSON plus raw bytes; never pickle);
* :mod:`.report` writes ``grades.csv``, ``results/``, ``feedback/`` and ``summary.png``;
* :mod:`.cli` is the command line.

Learner code only ever runs in a worker; the seed, the hidden cases' reference outputs and the
comparison stay in the grader.
"""

from .sandbox import Limits


def grade(*args, **kwargs):
    """See :func:`course_lib.grading.runner.grade`."""
    from .runner import grade as _grade

    return _grade(*args, **kwargs)


__all__ = ["grade", "Limits"]
