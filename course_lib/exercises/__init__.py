"""Exercises: defined once (``core``), registered per unit (``unitNN_*.py``), checked inline (``check``).

In a notebook::

    from course_lib.exercises import check
    check("02.stable_softmax", stable_softmax)
"""

from .check import CheckResult, check
from .core import (PUBLIC_SEED, STATUSES, Alternative, Call, Case, Exercise, Forbidden, GeneratorSeed, KnownMistake,
                   ModuleInputs, Outcome, Property, Report, compare, run_local)
from .registry import all_exercises, for_notebook, get, known_ids, load_all, register

__all__ = [
    "check", "CheckResult", "Exercise", "Alternative", "Case", "Call", "KnownMistake", "Property", "Forbidden",
    "GeneratorSeed", "ModuleInputs", "Outcome", "Report", "compare", "run_local", "PUBLIC_SEED", "STATUSES",
    "all_exercises", "for_notebook", "get", "known_ids", "load_all", "register",
]
