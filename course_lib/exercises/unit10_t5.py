"""Exercise of unit 10's "What T5 changed" section: T5's relative position buckets.

``relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)`` maps each
relative position ``j - i`` (key minus query) to one of ``num_buckets`` buckets; the model learns one bias
per head and bucket (:mod:`course_lib.relative_position`, whose function is the reference).
"""

from __future__ import annotations

import math

import torch

from ..relative_position import relative_position_bucket, relative_positions
from .core import Alternative, Case, Exercise, KnownMistake
from .registry import register

NOTEBOOK = "10_encoder_decoder_t5"


# ---------------------------------------------------------------------------------------------------
# Known mistakes: each is the reference with one thing wrong
# ---------------------------------------------------------------------------------------------------


def _log_bucket(n: torch.Tensor, max_exact: int, buckets: int, max_distance: int, extra: int = 0,
                rounding=None, cap: bool = True) -> torch.Tensor:
    """The log-spaced bucket of distances n >= max_exact (the reference's formula with knobs for mistakes)."""
    ratio = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact) * (buckets - max_exact)
    ratio = ratio if rounding is None else rounding(ratio)
    large = max_exact + extra + ratio.long()
    return large.clamp(max=buckets - 1) if cap else large


def _bucket(rel, bidirectional, num_buckets, max_distance, *, symmetric_halves=True, swap_halves=False,
            halve=True, decoder_abs=False, decoder_ahead=False, sign=1, extra=0, rounding=None, cap=True,
            exact_limit=None):
    rel = sign * rel.long()
    if bidirectional:
        half = num_buckets // 2 if halve else num_buckets
        if not symmetric_halves:
            side = torch.zeros_like(rel)
        else:
            side = ((rel < 0) if swap_halves else (rel > 0)).long() * half
        n = rel.abs()
        buckets = half
    else:
        side = torch.zeros_like(rel)
        n = rel.abs() if decoder_abs else rel.clamp(min=0) if decoder_ahead else (-rel).clamp(min=0)
        buckets = num_buckets
    max_exact = buckets // 2 if exact_limit is None else exact_limit(buckets)
    large = _log_bucket(n, max_exact, buckets, max_distance, extra, rounding, cap)
    return side + torch.where(n < max_exact, n, large)


def no_direction(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, symmetric_halves=False)


def halves_swapped(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, swap_halves=True)


def not_halved(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, halve=False)


def decoder_sees_ahead(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, decoder_abs=True)


def decoder_counts_ahead(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, decoder_ahead=True)


def log_rounded_up(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, rounding=torch.ceil)


def exact_before_halving(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """max_exact = num_buckets // 2 computed from the whole table, before the encoder halves it."""
    return _bucket(relative_position, bidirectional, num_buckets, max_distance,
                   exact_limit=lambda buckets: num_buckets // 2)


def query_minus_key(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, sign=-1)


def log_off_by_one(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, extra=1)


def log_rounded(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, rounding=torch.round)


def no_cap(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, cap=False)


def all_exact(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Every bucket exact (no log spacing): distance n -> bucket min(n, buckets - 1)."""
    return _bucket(relative_position, bidirectional, num_buckets, max_distance, exact_limit=lambda b: b)


# ---------------------------------------------------------------------------------------------------
# Alternatives: right answers written differently
# ---------------------------------------------------------------------------------------------------


def loop_with_math_log(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """One Python int at a time, with math.log (float64): the formula as written on paper."""
    out = []
    for r in relative_position.flatten().tolist():
        buckets, offset = (num_buckets // 2, num_buckets // 2 if r > 0 else 0) if bidirectional else (num_buckets, 0)
        n = abs(r) if bidirectional else max(-r, 0)
        exact = buckets // 2
        if n < exact:
            out.append(offset + n)
        else:
            log_bucket = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (buckets - exact))
            out.append(offset + min(log_bucket, buckets - 1))
    return torch.tensor(out, dtype=torch.long).reshape(relative_position.shape)


def lookup_table(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Bucket of every distance up to the largest one, computed once, then indexed (torch.where for the side)."""
    buckets = num_buckets // 2 if bidirectional else num_buckets
    exact = buckets // 2
    rel = relative_position.long()
    n = rel.abs() if bidirectional else torch.relu(-rel)
    largest = int(n.max()) if n.numel() else 0
    table = []
    for d in range(largest + 1):
        if d < exact:
            table.append(d)
        else:
            steps = math.floor(math.log(d / exact) / math.log(max_distance / exact) * (buckets - exact))
            table.append(min(exact + steps, buckets - 1))
    by_distance = torch.tensor(table, dtype=torch.long)[n]
    if not bidirectional:
        return by_distance
    return torch.where(rel > 0, by_distance + buckets, by_distance)


# ---------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------


def _ramp(reach: int) -> torch.Tensor:
    return torch.arange(-reach, reach + 1)  # (2 reach + 1,) every distance, both directions


def _cases(gen: torch.Generator, hidden: bool) -> list:
    cases = []
    # T5's defaults: every distance from -150 to 150 (exact, log-spaced and "128 or more" on both sides).
    # The decoder first: a sign error shows there as itself (in the encoder it looks like swapped halves).
    for bidirectional, group in ((False, "decoder (causal)"), (True, "encoder (bidirectional)")):
        cases.append(Case((_ramp(150), bidirectional, 32, 128), {}, group, "T5's 32 buckets, distances -150..150"))
        # a small table: 8 buckets, max distance 12 (so few exact buckets that every kind shows early)
        cases.append(Case((relative_positions(10, 24), bidirectional, 8, 12), {}, group,
                          "8 buckets, max_distance 12, a (10, 24) matrix of key - query"))
    if hidden:
        for bidirectional, group in ((False, "decoder (causal)"), (True, "encoder (bidirectional)")):
            for nb, md in ((16, 64), (10, 40), (12, 30)):
                rel = torch.randint(-3 * md, 3 * md + 1, (int(torch.randint(20, 60, (1,), generator=gen)),),
                                    generator=gen)
                cases.append(Case((rel, bidirectional, nb, md), {}, group,
                                  f"{nb} buckets, max_distance {md}, random distances"))
            T_q = int(torch.randint(5, 30, (1,), generator=gen))
            cases.append(Case((relative_positions(T_q, T_q + 7, offset=3), bidirectional, 32, 128), {}, group,
                              f"T5's buckets, a ({T_q}, {T_q + 7}) matrix"))
            cases.append(Case((_ramp(300), bidirectional, 64, 256), {}, group, "64 buckets, max_distance 256"))
    return cases


MESSAGE_SIDE = ("In the encoder, half of the buckets are for keys to the LEFT of the query (j - i <= 0) and the other "
                "half, starting at num_buckets // 2, for keys to the RIGHT (j - i > 0).")

RELATIVE_POSITION_BUCKET = Exercise(
    id="10.relative_position_bucket", notebook=NOTEBOOK, function="relative_position_bucket", points=3,
    title="T5's relative position buckets", minutes=20,
    reference=relative_position_bucket, make_cases=_cases,
    mistakes=[
        KnownMistake("buckets not symmetric in the encoder",
                     "Your encoder buckets ignore the direction: 'two words before' and 'two words after' get the "
                     "same bucket, so the model cannot tell left from right. " + MESSAGE_SIDE + " Add "
                     "`(relative_position > 0).long() * (num_buckets // 2)`.",
                     no_direction),
        KnownMistake("encoder halves swapped",
                     "Your halves are the wrong way round: keys to the left (j - i < 0) got the upper half. "
                     + MESSAGE_SIDE,
                     halves_swapped),
        KnownMistake("query minus key instead of key minus query",
                     "Your buckets are those of -relative_position: the input is already key minus query (j - i; "
                     "-1 = the previous token), use it as it is. In the decoder the past (j - i < 0) must get "
                     "the buckets 0, 1, 2, ... and keys ahead bucket 0.",
                     query_minus_key),
        KnownMistake("decoder counts keys ahead instead of behind",
                     "In the decoder the distance is how far BACK the key is: max(-(j - i), 0) = max(i - j, 0). "
                     "Yours is max(j - i, 0), so every key in the past falls in bucket 0 and the model cannot "
                     "tell the previous word from one ten words back.",
                     decoder_counts_ahead),
        KnownMistake("num_buckets not halved in the encoder",
                     "Your encoder uses num_buckets buckets for EACH direction, so buckets go up to "
                     "2 * num_buckets - 1. Bidirectional: num_buckets // 2 per direction (and half of those exact).",
                     not_halved),
        KnownMistake("decoder treats keys ahead like keys behind",
                     "In the decoder (bidirectional=False) only the past gets buckets: the distance is "
                     "max(-(j - i), 0), so keys ahead (j - i > 0, masked anyway) all fall in bucket 0. You used "
                     "|j - i|.",
                     decoder_sees_ahead),
        KnownMistake("log-spaced buckets off by one",
                     "Your log-spaced buckets start one too high: distance max_exact must get bucket max_exact "
                     "(log(1) = 0), so the first log bucket is max_exact + floor(...), not max_exact + 1 + floor(...).",
                     log_off_by_one),
        KnownMistake("log-spaced bucket rounded instead of floored",
                     "Your log-spaced buckets round to the nearest integer; T5 takes the integer part (floor): "
                     "`(...).long()` or `math.floor`, not `round`.",
                     log_rounded),
        KnownMistake("log-spaced bucket rounded up",
                     "Your log-spaced buckets round UP (ceil); T5 takes the integer part (floor): `(...).long()` "
                     "or `math.floor`.",
                     log_rounded_up),
        KnownMistake("exact buckets counted before halving",
                     "In the encoder, max_exact is half of the buckets of ONE direction: (num_buckets // 2) // 2. "
                     "Yours is num_buckets // 2, computed before halving, so too many distances got exact "
                     "buckets. Halve num_buckets first, then take half of that.",
                     exact_before_halving),
        KnownMistake("no cap at the last bucket",
                     "Distances at max_distance or beyond must all share the LAST bucket; yours keep counting past "
                     "it. Cap the log-spaced bucket at (buckets per direction) - 1, e.g. with `.clamp(max=...)`.",
                     no_cap),
        KnownMistake("every bucket exact",
                     "Your buckets are all exact (one per distance, up to the last): only HALF of the buckets of "
                     "each direction are exact (distances < max_exact = buckets // 2); the rest are log-spaced "
                     "up to max_distance.",
                     all_exact),
    ],
    alternatives=[Alternative("a Python loop with math.log (float64)", loop_with_math_log),
                  Alternative("a lookup table by distance, torch.where for the side", lookup_table)],
)

register(RELATIVE_POSITION_BUCKET)
