"""Exercise of unit 10's "What T5 changed" section: T5's relative position buckets.

``relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)`` maps each
relative position ``j - i`` (key minus query) to one of ``num_buckets`` buckets; the model learns one bias
per head and bucket (:mod:`course_lib.relative_position`, whose function is the reference).
"""

from __future__ import annotations

import math

import torch

from ..relative_position import relative_position_bucket, relative_positions
from .core import Alternative, Case, Exercise, Forbidden, KnownMistake
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


def float64_scale_first(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """float64 tensors, the constant (B - e) / ln(max_distance / e) computed first: T5's encoder gives
    5.999999999999999 at distance 64 (float32 gives 6.0), which is why the cases avoid the floor boundaries."""
    rel = relative_position.long()
    per_side = num_buckets // 2 if bidirectional else num_buckets
    exact = per_side // 2
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    scale = (per_side - exact) / math.log(max_distance / exact)  # a Python float (float64)
    log_bucket = exact + (torch.log(n.clamp(min=1).double() / exact) * scale).long()
    bucket = torch.where(n < exact, n, log_bucket.clamp(max=per_side - 1))
    return bucket + (rel > 0).long() * per_side if bidirectional else bucket


def float64_log_difference(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """float64, ln(n) - ln(e) over ln(max_distance) - ln(e), torch.floor and torch.minimum."""
    rel = relative_position.to(torch.int64)
    per_side = num_buckets // 2 if bidirectional else num_buckets
    exact = per_side // 2
    n = rel.abs() if bidirectional else torch.maximum(-rel, torch.zeros_like(rel))
    steps = (torch.log(n.clamp(min=1).to(torch.float64)) - math.log(exact)) / (math.log(max_distance) - math.log(exact))
    log_bucket = torch.minimum(exact + torch.floor(steps * (per_side - exact)).long(), torch.tensor(per_side - 1))
    side = torch.where(rel > 0, per_side, 0) if bidirectional else 0
    return side + torch.where(n < exact, n, log_bucket)


# ---------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------


def floor_boundaries(bidirectional: bool, num_buckets: int, max_distance: int) -> list:
    """The distances ``n < max_distance`` whose log-spaced value is exactly a whole number.

    With ``b`` buckets per direction and ``e = b // 2`` exact ones, the log-spaced value is
    ``x = ln(n / e) / ln(max_distance / e) * (b - e)``. Where ``x`` is exactly an integer ``k`` (T5's
    encoder: n = 16, 32, 64, where x = 2, 4, 6), its floor is decided by the last bit of the float type:
    float32 (Hugging Face's T5 and the reference) may give 6.0 where float64 gives 5.999999999999999, and
    the bucket is one lower. The cases leave these distances out, so that float32 and float64 both pass.
    ``x = k`` exactly when ``(n / e)^(b - e) = (max_distance / e)^k``, checked in Python integers (exact).
    Distances from ``max_distance`` on are not listed: they share the last bucket whichever way the floor
    goes.
    """
    per_side = num_buckets // 2 if bidirectional else num_buckets
    exact, steps = per_side // 2, per_side - per_side // 2
    return [n for n in range(exact + 1, max_distance)
            if any(n ** steps * exact ** k == max_distance ** k * exact ** steps for k in range(1, steps))]


def _off_boundaries(rel: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """``rel`` without the floor boundaries: left out of a 1-D tensor, moved one step further out in a matrix."""
    boundaries = torch.tensor(floor_boundaries(bidirectional, num_buckets, max_distance), dtype=torch.long)
    if rel.dim() == 1:
        return rel[~torch.isin(rel.abs(), boundaries)]
    while bool(torch.isin(rel.abs(), boundaries).any()):
        rel = torch.where(torch.isin(rel.abs(), boundaries), rel + rel.sign(), rel)
    return rel


def _case(rel: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int, group: str, note: str) -> Case:
    """A case on ``rel`` off the floor boundaries; the note names the distances that were left out or moved."""
    present = sorted(set(floor_boundaries(bidirectional, num_buckets, max_distance)) & set(rel.abs().flatten().tolist()))
    if present:
        what = "except" if rel.dim() == 1 else "entries at"
        done = "" if rel.dim() == 1 else " moved one step out"
        note += f" ({what} +-{', +-'.join(map(str, present))}{done}: float32 and float64 may floor apart there)"
    return Case((_off_boundaries(rel, bidirectional, num_buckets, max_distance), bidirectional, num_buckets,
                 max_distance), {}, group, note)


def _ramp(reach: int) -> torch.Tensor:
    return torch.arange(-reach, reach + 1)  # (2 reach + 1,) every distance, both directions


def _cases(gen: torch.Generator, hidden: bool) -> list:
    cases = []
    # T5's defaults: every distance from -150 to 150 (exact, log-spaced and "128 or more" on both sides).
    # The decoder first: a sign error shows there as itself (in the encoder it looks like swapped halves).
    # Every case leaves out the floor boundaries (see floor_boundaries): a float64 answer is right too.
    for bidirectional, group in ((False, "decoder (causal)"), (True, "encoder (bidirectional)")):
        cases.append(_case(_ramp(150), bidirectional, 32, 128, group, "T5's 32 buckets, distances -150..150"))
        # a small table: 8 buckets, max distance 12 (so few exact buckets that every kind shows early)
        cases.append(_case(relative_positions(10, 24), bidirectional, 8, 12, group,
                           "8 buckets, max_distance 12, a (10, 24) matrix of key - query"))
        # 64 buckets: log-spaced values within 1e-3 of a whole number (distance 181: 13.9994), where too
        # little precision (float16) floors to the wrong bucket
        cases.append(_case(_ramp(300), bidirectional, 64, 256, group, "64 buckets, max_distance 256"))
    if hidden:
        for bidirectional, group in ((False, "decoder (causal)"), (True, "encoder (bidirectional)")):
            for nb, md in ((16, 64), (10, 40), (12, 30)):
                rel = torch.randint(-3 * md, 3 * md + 1, (int(torch.randint(20, 60, (1,), generator=gen)),),
                                    generator=gen)
                cases.append(_case(rel, bidirectional, nb, md, group, f"{nb} buckets, max_distance {md}, random distances"))
            T_q = int(torch.randint(5, 30, (1,), generator=gen))
            cases.append(_case(relative_positions(T_q, T_q + 7, offset=3), bidirectional, 32, 128, group,
                               f"T5's buckets, a ({T_q}, {T_q + 7}) matrix of key - query"))
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
                  Alternative("a lookup table by distance, torch.where for the side", lookup_table),
                  Alternative("float64 tensors, the scale (B - e) / ln(max_distance / e) first", float64_scale_first),
                  Alternative("float64, ln(n) - ln(e) over ln(max_distance) - ln(e), floor", float64_log_difference)],
)



def zero_in_upper_half(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """(j - i >= 0) picks the upper half: the query's own position goes to the keys-to-the-right side."""
    out = relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)
    if bidirectional:
        out = torch.where(relative_position == 0, out + num_buckets // 2, out)
    return out


def float_buckets(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """The log-spaced part never truncated to an integer (no .long()): fractional float buckets."""
    rel = relative_position.long()
    per = num_buckets // 2 if bidirectional else num_buckets
    side = (rel > 0).long() * per if bidirectional else torch.zeros_like(rel)
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    exact = per // 2
    large = exact + torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (per - exact)
    return side + torch.where(n < exact, n.float(), large.clamp(max=per - 1))


def log_of_max_distance(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """log(n / max_exact) / log(max_distance) instead of / log(max_distance / max_exact)."""
    rel = relative_position.long()
    per = num_buckets // 2 if bidirectional else num_buckets
    side = (rel > 0).long() * per if bidirectional else torch.zeros_like(rel)
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    exact = per // 2
    large = exact + (torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance) * (per - exact)).long()
    return side + torch.where(n < exact, n, large.clamp(max=per - 1))


def log_in_float16(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """The log-spaced value computed in float16 (`.half()`): about 3 significant digits."""
    rel = relative_position.long()
    per = num_buckets // 2 if bidirectional else num_buckets
    side = (rel > 0).long() * per if bidirectional else torch.zeros_like(rel)
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    exact = per // 2
    large = exact + (torch.log(n.clamp(min=1).half() / exact) / math.log(max_distance / exact) * (per - exact)).long()
    return side + torch.where(n < exact, n, large.clamp(max=per - 1))


def _one_thing_wrong(rel, bidirectional, num_buckets, max_distance, *, offset=None, cap=None, exact=None,
                     divisor=None):
    """The reference's steps, each of which a mistake below may replace (None: the right one)."""
    rel = rel.long()
    per = num_buckets // 2 if bidirectional else num_buckets
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    side = (rel > 0).long() * (per if offset is None else offset) if bidirectional else torch.zeros_like(rel)
    e = per // 2 if exact is None else exact
    log_divisor = math.log(max_distance / e) if divisor is None else divisor(e)
    large = e + (torch.log(n.clamp(min=1).float() / e) / log_divisor * (per - e)).long()
    return side + torch.where(n < e, n, large.clamp(max=per - 1 if cap is None else cap))


def right_half_offset_by_num_buckets(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _one_thing_wrong(relative_position, bidirectional, num_buckets, max_distance, offset=num_buckets)


def encoder_capped_at_num_buckets(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _one_thing_wrong(relative_position, bidirectional, num_buckets, max_distance, cap=num_buckets - 1)


def decoder_exact_from_a_quarter(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _one_thing_wrong(relative_position, bidirectional, num_buckets, max_distance, exact=num_buckets // 4)


def log_max_distance_over_max_exact(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _one_thing_wrong(relative_position, bidirectional, num_buckets, max_distance,
                            divisor=lambda e: math.log(max_distance) / e)


def int32_buckets(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance).int()


def always_bidirectional(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return relative_position_bucket(relative_position, True, num_buckets, max_distance)


RELATIVE_POSITION_BUCKET.mistakes = tuple(RELATIVE_POSITION_BUCKET.mistakes) + (
    KnownMistake("j - i = 0 put in the upper half",
                 "The query's own position (j - i = 0) belongs to the LOWER half, with the keys to the left: the "
                 "upper half starts at j - i = 1. Use (relative_position > 0), not >= 0.", zero_in_upper_half),
    KnownMistake("log-spaced buckets not truncated to integers",
                 "Your buckets are fractional floats: bucket ids are integers, int64. Truncate the log-spaced "
                 "part with `.long()` (floor for these positive numbers) before adding max_exact.", float_buckets),
    KnownMistake("divided by log(max_distance)",
                 "The log-spaced buckets divide log(n / max_exact) by log(max_distance / max_exact), so that "
                 "n = max_distance lands exactly on the last bucket. You divided by log(max_distance).",
                 log_of_max_distance),
    KnownMistake("bucket ids as int32",
                 "Your buckets are int32; bucket ids index an embedding table, so return int64 (torch.long), "
                 "like relative_position.long() and torch.where of int64 tensors give.", int32_buckets),
    KnownMistake("log computed in float16",
                 "Your log-spaced buckets are computed in float16 (`.half()`). With about 3 significant digits the "
                 "expression lands on the wrong side of a whole number where it is close to one (64 buckets, "
                 "distance 181: exactly 13.9994, 14.0 in float16), and the bucket is one too high. Compute in "
                 "float32 (`n.float()`, as Hugging Face's T5 does) or float64.", log_in_float16),
    KnownMistake("keys to the right offset by num_buckets",
                 "Keys to the right get num_buckets // 2 added (where the upper half starts), not num_buckets: your "
                 "encoder buckets go up to 1.5 * num_buckets - 1, beyond the table. Halve num_buckets first, then "
                 "use that: `(relative_position > 0).long() * (num_buckets // 2)`.", right_half_offset_by_num_buckets),
    KnownMistake("encoder capped at num_buckets - 1",
                 "In the encoder each direction has num_buckets // 2 buckets, so the log-spaced bucket is capped at "
                 "num_buckets // 2 - 1. Yours is capped at num_buckets - 1: far keys to the LEFT spill into the upper "
                 "half (bucket 16 with T5's sizes), which belongs to keys on the right.", encoder_capped_at_num_buckets),
    KnownMistake("decoder's max_exact from a quarter of the buckets",
                 "In the decoder all num_buckets buckets describe the past, so max_exact = num_buckets // 2 (16 with "
                 "T5's sizes). Yours is num_buckets // 4, the encoder's value: halve num_buckets only when "
                 "bidirectional, then take half of that.", decoder_exact_from_a_quarter),
    KnownMistake("divided by log(max_distance) / max_exact",
                 "Parentheses: the divisor is log(max_distance / max_exact), the log of the ratio, so that distance "
                 "max_distance lands on the last bucket. You divided log(max_distance) by max_exact: "
                 "`math.log(max_distance / max_exact)`.", log_max_distance_over_max_exact),
    KnownMistake("bidirectional ignored",
                 "Your decoder (bidirectional=False) gets the encoder's buckets. With bidirectional=False all "
                 "num_buckets buckets are for the past, and the distance is max(-(j - i), 0).", always_bidirectional),
)

register(RELATIVE_POSITION_BUCKET)


# ---------------------------------------------------------------------------------------------------
# 10.t5_attention: the bias goes on the scores, before the softmax, and there is no 1/sqrt(d_k)
# ---------------------------------------------------------------------------------------------------


def t5_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_bias: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """T5's attention for one layer: ``softmax(q k^T + position_bias + mask) v``.

    q (B, H, T_q, d), k and v (B, H, T_k, d), position_bias (1, H, T_q, T_k), mask bool (True = may attend)
    broadcastable to (B, H, T_q, T_k) or None -> (B, H, T_q, d). No 1/sqrt(d); blocked keys get weight 0.
    """
    scores = q @ k.transpose(-2, -1) + position_bias  # (B, H, T_q, T_k), unscaled
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) @ v


def _masked(scores, mask):
    return scores if mask is None else scores.masked_fill(~mask, torch.finfo(scores.dtype).min)


def bias_after_softmax(q, k, v, position_bias, mask=None):
    weights = torch.softmax(_masked(q @ k.transpose(-2, -1), mask), dim=-1) + position_bias
    return weights @ v


def scaled_scores(q, k, v, position_bias, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + position_bias
    return torch.softmax(_masked(scores, mask), dim=-1) @ v


def mask_ignored(q, k, v, position_bias, mask=None):
    return torch.softmax(q @ k.transpose(-2, -1) + position_bias, dim=-1) @ v


def bias_transposed(q, k, v, position_bias, mask=None):
    scores = q @ k.transpose(-2, -1) + position_bias.transpose(-2, -1)
    return torch.softmax(_masked(scores, mask), dim=-1) @ v


def softmax_over_queries(q, k, v, position_bias, mask=None):
    scores = _masked(q @ k.transpose(-2, -1) + position_bias, mask)
    return torch.softmax(scores, dim=-2) @ v


def no_bias(q, k, v, position_bias, mask=None):
    return torch.softmax(_masked(q @ k.transpose(-2, -1), mask), dim=-1) @ v


def attention_with_einsum(q, k, v, position_bias, mask=None):
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) + position_bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # -inf: fine, every query keeps a key here
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)


def attention_head_by_head(q, k, v, position_bias, mask=None):
    B, H = q.shape[:2]
    full = None if mask is None else mask.expand(B, H, q.shape[2], k.shape[2])
    out = torch.empty_like(q)
    for b in range(B):
        for h in range(H):
            s = q[b, h] @ k[b, h].T + position_bias[0, h]  # (T_q, T_k)
            if full is not None:
                s = s - 1e30 * (~full[b, h]).float()
            w = torch.exp(s - s.max(dim=-1, keepdim=True).values)
            out[b, h] = (w / w.sum(dim=-1, keepdim=True)) @ v[b, h]
    return out


def _attention_cases(gen: torch.Generator, hidden: bool) -> list:
    from .core import randn

    cases = []
    sizes = [(2, 3, 5, 4)] + ([(3, 4, 9, 8), (1, 2, 16, 6)] if hidden else [])
    for B, H, T, d in sizes:  # decoder self-attention: square, causal
        bias = randn(gen, 1, H, T, T)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        cases.append(Case((randn(gen, B, H, T, d), randn(gen, B, H, T, d), randn(gen, B, H, T, d), bias, causal), {},
                          "decoder (causal mask)", f"B={B}, H={H}, T={T}, d={d}, causal"))
    for B, H, T, d in sizes:  # encoder self-attention: padding of the keys
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0] = max(1, T - 2)
        keep = (torch.arange(T)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
        cases.append(Case((randn(gen, B, H, T, d), randn(gen, B, H, T, d), randn(gen, B, H, T, d),
                           randn(gen, 1, H, T, T), keep), {}, "encoder (padding mask)",
                          f"B={B}, H={H}, T={T}, d={d}, padded rows"))
    return cases


T5_ATTENTION = Exercise(
    id="10.t5_attention", notebook=NOTEBOOK, function="t5_attention", points=2,
    title="T5's attention: a bias on the scores", minutes=10,
    reference=t5_attention, make_cases=_attention_cases,
    forbidden=[Forbidden("a ready-made attention (F.scaled_dot_product_attention, course_lib.t5.biased_attention)",
                         ("torch.nn.functional.scaled_dot_product_attention", "course_lib.t5.biased_attention"),
                         "this exercise asks you to add the bias and the mask to the scores yourself")],
    mistakes=[
        KnownMistake("bias added after the softmax",
                     "You added the position bias to the attention WEIGHTS, after the softmax: the rows no longer "
                     "sum to 1 and the bias is not a preference among keys. Add it to the scores q k^T, then "
                     "mask, then softmax.",
                     bias_after_softmax),
        KnownMistake("scores divided by sqrt(d)",
                     "T5 does not divide the scores by sqrt(d_k) (the scale lives in the initialisation of W_Q): "
                     "use q @ k^T as it is.",
                     scaled_scores),
        KnownMistake("mask ignored",
                     "Blocked keys got weight: apply the mask (True = may attend) to the scores before the "
                     "softmax, e.g. masked_fill(~mask, torch.finfo(scores.dtype).min).",
                     mask_ignored),
        KnownMistake("bias transposed",
                     "Your bias is transposed: position_bias[0, h, i, j] belongs to query i and key j, the same "
                     "layout as the scores (..., T_q, T_k). Add it as it is.",
                     bias_transposed),
        KnownMistake("softmax over the queries",
                     "The softmax must run over the keys (the last axis, dim=-1): each query's weights sum to 1.",
                     softmax_over_queries),
        KnownMistake("position bias left out",
                     "The position bias is missing: it is T5's only source of position information. Add it to "
                     "the scores.",
                     no_bias),
    ],
    alternatives=[Alternative("einsum and -inf", attention_with_einsum),
                  Alternative("one head at a time, softmax written out", attention_head_by_head)],
)

def bias_of_first_head(q, k, v, position_bias, mask=None):
    return t5_attention(q, k, v, position_bias[:, :1].expand_as(position_bias), mask)


def mask_added(q, k, v, position_bias, mask=None):
    scores = q @ k.transpose(-2, -1) + position_bias
    if mask is not None:
        scores = scores + mask.to(scores.dtype)  # adds 0/1: blocks nothing
    return torch.softmax(scores, dim=-1) @ v


def t5_mask_inverted(q, k, v, position_bias, mask=None):
    return t5_attention(q, k, v, position_bias, None if mask is None else ~mask)


def bias_multiplied(q, k, v, position_bias, mask=None):
    scores = _masked((q @ k.transpose(-2, -1)) * position_bias, mask)
    return torch.softmax(scores, dim=-1) @ v


def masked_scores_zero(q, k, v, position_bias, mask=None):
    scores = q @ k.transpose(-2, -1) + position_bias
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)  # 0 is a score like any other, not "blocked"
    return torch.softmax(scores, dim=-1) @ v


def weights_returned_too(q, k, v, position_bias, mask=None):
    weights = torch.softmax(_masked(q @ k.transpose(-2, -1) + position_bias, mask), dim=-1)
    return weights @ v, weights


T5_ATTENTION.mistakes = tuple(T5_ATTENTION.mistakes) + (
    KnownMistake("one head's bias for every head",
                 "Every head got head 0's bias. position_bias has shape (1, H, T_q, T_k): one bias per head; add it "
                 "as it is and broadcasting matches head h with bias h.", bias_of_first_head),
    KnownMistake("bool mask added to the scores",
                 "Adding a True/False mask to the scores adds 1 or 0, which blocks nothing. Fill the blocked "
                 "scores instead: scores.masked_fill(~mask, torch.finfo(scores.dtype).min).", mask_added),
    KnownMistake("mask inverted",
                 "Your mask blocks the keys that may be attended and keeps the blocked ones: True means MAY attend, "
                 "so fill where ~mask.", t5_mask_inverted),
    KnownMistake("bias multiplied with the scores",
                 "The position bias is ADDED to the scores (q k^T + bias), not multiplied.", bias_multiplied),
    KnownMistake("masked scores set to 0",
                 "A score of 0 still gets weight exp(0) after the softmax. Blocked keys need a very negative score: "
                 "masked_fill(~mask, torch.finfo(scores.dtype).min) (or -inf).", masked_scores_zero),
    KnownMistake("weights returned too",
                 "Return only the output softmax(...) @ v, shape (B, H, T_q, d), not (output, weights).",
                 weights_returned_too),
)

register(T5_ATTENTION)
