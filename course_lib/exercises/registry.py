"""The registry of every exercise in the course.

Each unit defines its exercises in a module ``course_lib/exercises/unitNN_<slug>.py`` that calls
:func:`register`; :func:`load_all` imports those modules, so adding a unit needs no edit here.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from .core import Exercise

_REGISTRY: dict = {}
_LOADED = False


def register(*exercises: Exercise) -> None:
    """Add exercises to the registry (ids must be unique)."""
    for ex in exercises:
        old = _REGISTRY.get(ex.id)
        if old is not None and old is not ex and old.reference is not ex.reference:
            raise ValueError(f"exercise id {ex.id!r} is defined twice")
        _REGISTRY[ex.id] = ex


def load_all() -> None:
    """Import every ``unitNN_*`` module of this package (once)."""
    global _LOADED
    if _LOADED:
        return
    from . import __path__ as pkg_path

    for info in sorted(pkgutil.iter_modules(pkg_path), key=lambda m: m.name):
        if info.name.startswith("unit"):
            importlib.import_module(f"{__package__}.{info.name}")
    _LOADED = True


def all_exercises() -> list:
    """Every exercise, ordered by id (unit first)."""
    load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(exercise_id: str) -> Exercise:
    """The exercise with this id; a ``KeyError`` that suggests close ids otherwise."""
    load_all()
    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        close = difflib.get_close_matches(str(exercise_id), list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown exercise id {exercise_id!r}{hint}") from None


def for_notebook(stem: str) -> list:
    """The exercises of one notebook (``"02_softmax_sampling"``), in id order."""
    return [ex for ex in all_exercises() if ex.notebook == stem]


def known_ids() -> set:
    load_all()
    return set(_REGISTRY)
