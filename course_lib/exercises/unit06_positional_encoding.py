"""Exercises of unit 06: positional encoding.

The sinusoidal table is short to write and easy to get subtly wrong: sin and cos swapped, the halves
concatenated instead of interleaved, the exponent i/d instead of 2i/d, positions counted from 1. Each
of those is a known mistake below, so the check can name it.
"""

from __future__ import annotations

import math

import torch

from .. import positional as P
from .core import Alternative, Case, Exercise, KnownMistake, Property
from .registry import register
from .core import randn as _randn  # shared case helpers

NOTEBOOK = "06_positional_encoding"


# ---------------------------------------------------------------------------------------------------
# 06.sinusoidal_encoding
# ---------------------------------------------------------------------------------------------------


def _table(n_positions, d_model, base, start=0, exponent=lambda j, d: j / d, layout="interleaved",
           first=torch.sin, second=torch.cos):
    """A (buggy or not) sinusoidal table, in float64; ``exponent(j, d)`` gets j = 2i (the column pair)."""
    p = torch.arange(start, start + n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,)
    angles = p / base ** exponent(two_i, d_model)  # (P, D/2)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    if layout == "interleaved":
        pe[:, 0::2], pe[:, 1::2] = first(angles), second(angles)
    else:  # all sines, then all cosines
        pe[:, : d_model // 2], pe[:, d_model // 2:] = first(angles), second(angles)
    return pe.float()


def pe_swapped(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, first=torch.cos, second=torch.sin)


def pe_concatenated(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, layout="halves")


def pe_exponent_halved(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, exponent=lambda two_i, d: (two_i / 2) / d)  # i/d


def pe_from_one(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, start=1)


def pe_per_column_exponent(n_positions, d_model, base=10000.0):
    p = torch.arange(n_positions, dtype=torch.float64)[:, None]
    j = torch.arange(d_model, dtype=torch.float64)  # every column its own frequency
    angles = p / base ** (j / d_model)
    pe = torch.where(j.long() % 2 == 0, torch.sin(angles), torch.cos(angles))
    return pe.float()


def pe_times_instead_of_divided(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, exponent=lambda two_i, d: -two_i / d)


def pe_base_ignored(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, 10000.0)  # the base argument never used


def pe_exponent_doubled(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, exponent=lambda two_i, d: 2 * two_i / d)  # 2 * (2i) / d


def pe_one_frequency(n_positions, d_model, base=10000.0):
    return _table(n_positions, d_model, base, exponent=lambda two_i, d: two_i * 0)  # e.g. integer division 2i // d


# correct, written differently
def pe_exp_log(n_positions, d_model, base=10000.0):
    p = torch.arange(n_positions).unsqueeze(1).float()  # (P, 1)
    w = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(base) / d_model))  # (D/2,) as in many tutorials
    pe = torch.zeros(n_positions, d_model)
    pe[:, 0::2] = torch.sin(p * w)
    pe[:, 1::2] = torch.cos(p * w)
    return pe


def pe_stack_interleave(n_positions, d_model, base=10000.0):
    p = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angles = p / base ** (torch.arange(d_model // 2, dtype=torch.float64) * 2 / d_model)  # (P, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (P, D/2, 2) -> (P, D), float64


def pe_loops(n_positions, d_model, base=10000.0):
    pe = torch.zeros(n_positions, d_model)
    for p in range(n_positions):
        for i in range(d_model // 2):
            angle = p / base ** (2 * i / d_model)
            pe[p, 2 * i], pe[p, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return pe


def _pe_cases(gen, hidden):
    cases = [Case((4, 6), {}, "small", "4 positions, d_model=6"),
             Case((10, 8), {}, "small", "10 positions, d_model=8")]
    cases.append(Case((50, 16), {"base": 100.0}, "other base", "50 positions, d_model=16, base=100"))
    if hidden:
        for _ in range(3):
            n = int(torch.randint(2, 120, (1,), generator=gen))
            d = 2 * int(torch.randint(2, 33, (1,), generator=gen))
            cases.append(Case((n, d), {}, "larger", f"{n} positions, d_model={d}"))
        cases.append(Case((200, 64), {}, "larger", "200 positions, d_model=64"))
        cases.append(Case((30, 12), {"base": 10.0}, "other base", "base=10"))
    else:
        cases.append(Case((64, 32), {}, "larger", "64 positions, d_model=32"))
    return cases


def _pe_in_range(case, out, derived) -> bool:
    return bool((out.abs() <= 1 + 1e-5).all())


def _pe_position_zero(case, out, derived) -> bool:
    row = out[0].double()
    want = torch.zeros_like(row)
    want[1::2] = 1.0
    return bool(torch.allclose(row, want, atol=1e-6))


SINUSOIDAL = Exercise(
    id="06.sinusoidal_encoding", notebook=NOTEBOOK, function="sinusoidal_encoding", points=3,
    title="The sinusoidal position table", minutes=15,
    reference=P.sinusoidal_encoding, make_cases=_pe_cases, atol=1e-4, rtol=1e-4, check_dtype=False,
    properties=[
        Property("position 0 is (0, 1, 0, 1, ...)",
                 "at position 0 every sine is 0 and every cosine is 1, so row 0 must be 0, 1, 0, 1, ...",
                 _pe_position_zero,
                 fires_for=("sin and cos swapped", "concatenated instead of interleaved", "positions start at 1")),
        Property("values in [-1, 1]", "sines and cosines never leave [-1, 1]", _pe_in_range),
    ],
    alternatives=[Alternative("exp(-log(base) * 2i / d), as in many tutorials", pe_exp_log),
                  Alternative("stack (sin, cos) and flatten, in float64", pe_stack_interleave),
                  Alternative("two Python loops with math.sin", pe_loops)],
    mistakes=[
        KnownMistake("sin and cos swapped",
                     "Your even columns hold cosines and your odd columns sines. The paper puts "
                     "PE[p, 2i] = sin(...) in the EVEN columns and PE[p, 2i+1] = cos(...) in the odd ones.",
                     pe_swapped),
        KnownMistake("concatenated instead of interleaved",
                     "You put all the sines in the first half and all the cosines in the second half. The "
                     "paper INTERLEAVES them: column 2i is sin, column 2i+1 is cos of the same angle. Assign "
                     "pe[:, 0::2] = sin(angles) and pe[:, 1::2] = cos(angles).",
                     pe_concatenated),
        KnownMistake("exponent i/d instead of 2i/d",
                     "Your frequencies fall off half as fast: you used base^(i/d) with i the PAIR index. The "
                     "exponent is 2i/d_model (equivalently j/d_model for the even column j = 2i), e.g. "
                     "torch.arange(0, d_model, 2) / d_model.",
                     pe_exponent_halved),
        KnownMistake("positions start at 1",
                     "Your first row is position 1. Positions count from 0, so row 0 is sin(0), cos(0), "
                     "... = 0, 1, 0, 1, ...: use torch.arange(n_positions).",
                     pe_from_one),
        KnownMistake("a different frequency for every column",
                     "Each sin/cos PAIR shares one frequency: columns 2i and 2i+1 both use "
                     "1 / base^(2i/d). You gave the cosine column 2i+1 its own exponent (2i+1)/d.",
                     pe_per_column_exponent),
        KnownMistake("positions multiplied by base^(2i/d)",
                     "You multiply the position by base^(2i/d), so the high columns spin fastest. The "
                     "angle is p / base^(2i/d): the frequencies DEcrease along the columns.",
                     pe_times_instead_of_divided),
        KnownMistake("base argument ignored",
                     "Your table is right for base=10000 but ignores the `base` argument (see the case with "
                     "base=100): use base in the angle, p / base^(2i/d).",
                     pe_base_ignored),
        KnownMistake("exponent 4i/d instead of 2i/d",
                     "Your frequencies fall off twice as fast: the exponent counts the column pair twice "
                     "(2 * (2i) / d). With two_i = torch.arange(0, d_model, 2) the exponent is two_i / d_model.",
                     pe_exponent_doubled),
        KnownMistake("every pair at the same frequency",
                     "All your pairs turn at one radian per position: the exponent is always 0. Integer "
                     "division (2i // d_model is 0) does that; use true division, two_i / d_model.",
                     pe_one_frequency),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 06.add_positions
# ---------------------------------------------------------------------------------------------------


def add_positions(ids: torch.Tensor, W_E: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """The input of the first block: token embedding plus position code.

    ids (B, T) token ids, W_E (V, D) the embedding matrix, pe (max_len, D) a position table with
    max_len >= T -> x (B, T, D) with ``x[b, t] = W_E[ids[b, t]] + pe[t]``.
    """
    T = ids.shape[-1]
    if T > pe.shape[0]:
        raise ValueError(f"sequence length T={T} exceeds the {pe.shape[0]} positions of pe")
    return W_E[ids] + pe[:T]  # (B, T, D) + (T, D) broadcasts over the batch


def positions_by_token_id(ids, W_E, pe):
    return W_E[ids] + pe[ids]


def positions_from_one(ids, W_E, pe):
    T = ids.shape[-1]
    return W_E[ids] + pe[1:T + 1]


def positions_concatenated(ids, W_E, pe):
    x = W_E[ids]
    return torch.cat([x, pe[: ids.shape[-1]].expand_as(x)], dim=-1)  # (B, T, 2D)


def positions_multiplied(ids, W_E, pe):
    return W_E[ids] * pe[: ids.shape[-1]]


def positions_paper_scaling(ids, W_E, pe):
    return W_E[ids] * math.sqrt(W_E.shape[-1]) + pe[: ids.shape[-1]]


def positions_all_zero(ids, W_E, pe):
    return W_E[ids] + pe[0]  # every token gets position 0's code (e.g. T taken from ids.shape[0] with B = 1)


def positions_from_the_end(ids, W_E, pe):
    return W_E[ids] + pe[-ids.shape[-1]:]  # the LAST T rows of the table


# correct, written differently
def add_one_hot(ids, W_E, pe):
    one_hot = torch.nn.functional.one_hot(ids, W_E.shape[0]).to(W_E.dtype)  # (B, T, V)
    return one_hot @ W_E + pe[: ids.shape[1]].unsqueeze(0)


def add_index_select(ids, W_E, pe):
    B, T = ids.shape
    tok = W_E.index_select(0, ids.reshape(-1)).view(B, T, -1)  # (B, T, D)
    return tok + pe[torch.arange(T)]


def _add_cases(gen, hidden):
    cases = []
    # (a vocabulary no larger than the table, so that the pe[ids] mistake runs and can be named)
    configs = [(1, 4, 8, 6, 10), (2, 5, 7, 8, 16), (2, 9, 9, 6, 9)]
    configs += [(3, 12, 20, 16, 20), (4, 7, 9, 10, 9)] if hidden else []
    for B, T, V, D, max_len in configs:
        ids = torch.randint(0, V, (B, T), generator=gen)
        W_E = _randn(gen, V, D)
        pe = P.sinusoidal_encoding(max_len, D)
        cases.append(Case((ids, W_E, pe), {}, "sinusoidal table", f"(B, T) = {(B, T)}, D={D}, {max_len} positions"))
    for B, T, V, D, max_len in [(2, 6, 5, 4, 9)] + ([(3, 8, 30, 12, 8)] if hidden else []):
        ids = torch.randint(0, V, (B, T), generator=gen)
        cases.append(Case((ids, _randn(gen, V, D), _randn(gen, max_len, D, scale=0.5)), {}, "learned table",
                          f"a random (learned) table, (B, T) = {(B, T)}"))
    return cases


ADD_POSITIONS = Exercise(
    id="06.add_positions", notebook=NOTEBOOK, function="add_positions", points=2,
    title="Adding positions to the token embeddings", minutes=5,
    reference=add_positions, make_cases=_add_cases,
    alternatives=[Alternative("one-hot times W_E", add_one_hot),
                  Alternative("index_select and pe[arange(T)]", add_index_select)],
    mistakes=[
        KnownMistake("every token gets position 0's code",
                     "You add the same row, pe[0], to every token. Token t needs row t: add pe[:T] with "
                     "T = ids.shape[1] (the second axis; the first is the batch).",
                     positions_all_zero),
        KnownMistake("the last T rows of the table",
                     "You add pe[-T:], the codes of the LAST T positions of the table. The first token is "
                     "position 0: add pe[:T].",
                     positions_from_the_end),
        KnownMistake("position table indexed by token id",
                     "You look up pe[ids]: the code of a position must depend on WHERE the token is, not on "
                     "which token it is. Use the rows 0..T-1: pe[:T].",
                     positions_by_token_id),
        KnownMistake("positions start at 1",
                     "You add pe[1:T+1]. The first token is position 0: add pe[:T].",
                     positions_from_one),
        KnownMistake("concatenated instead of added",
                     "You concatenate the position code to the embedding, giving (B, T, 2D). The transformer "
                     "ADDS them, so the residual stream keeps its width d_model.",
                     positions_concatenated),
        KnownMistake("multiplied instead of added",
                     "You multiply the embedding by the position code. Add them: x = W_E[ids] + pe[:T].",
                     positions_multiplied),
        KnownMistake("embeddings scaled by sqrt(d_model)",
                     "You multiply the embeddings by sqrt(d_model) (as the original paper does). This "
                     "exercise asks for the plain sum W_E[ids] + pe[:T], as in GPT-2.",
                     positions_paper_scaling),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 06.offset_rotation
# ---------------------------------------------------------------------------------------------------


def _rotation(k, d_model, base, angle_of, block):
    """A block-diagonal (D, D) matrix: block i is block(cos a, sin a) with a = angle_of(i)."""
    R = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i in range(d_model // 2):
        a = angle_of(i)
        c, s = math.cos(a), math.sin(a)
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor(block(c, s), dtype=torch.float64)
    return R.float()


def _w(i, d_model, base):
    return base ** (-2 * i / d_model)


def rotation_wrong_direction(k, d_model, base=10000.0):
    return _rotation(k, d_model, base, lambda i: k * _w(i, d_model, base), lambda c, s: [[c, -s], [s, c]])


def rotation_no_frequency(k, d_model, base=10000.0):
    return _rotation(k, d_model, base, lambda i: float(k), lambda c, s: [[c, s], [-s, c]])


def rotation_wavelength(k, d_model, base=10000.0):
    return _rotation(k, d_model, base, lambda i: k / _w(i, d_model, base), lambda c, s: [[c, s], [-s, c]])


def rotation_exponent_halved(k, d_model, base=10000.0):
    return _rotation(k, d_model, base, lambda i: k * base ** (-i / d_model), lambda c, s: [[c, s], [-s, c]])


def rotation_k_forgotten(k, d_model, base=10000.0):
    return _rotation(k, d_model, base, lambda i: _w(i, d_model, base), lambda c, s: [[c, s], [-s, c]])


def rotation_sin_cos_swapped(k, d_model, base=10000.0):
    return _rotation(k, d_model, base, lambda i: k * _w(i, d_model, base), lambda c, s: [[s, c], [-c, s]])


def rotation_base_ignored(k, d_model, base=10000.0):
    return _rotation(k, d_model, 10000.0, lambda i: k * _w(i, d_model, 10000.0), lambda c, s: [[c, s], [-s, c]])


def rotation_pairs_by_i(k, d_model, base=10000.0):
    idx = torch.arange(d_model // 2)  # pair i written at rows/columns i, i+1 instead of 2i, 2i+1
    a = k / base ** (2 * idx.double() / d_model)
    R = torch.zeros(d_model, d_model, dtype=torch.float64)
    R[idx, idx] = torch.cos(a)
    R[idx, idx + 1] = torch.sin(a)
    R[idx + 1, idx] = -torch.sin(a)
    R[idx + 1, idx + 1] = torch.cos(a)
    return R.float()


# correct, written differently
def rotation_block_diag(k, d_model, base=10000.0):
    blocks = []
    for i in range(d_model // 2):
        a = k / base ** (2 * i / d_model)
        blocks.append(torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]))
    return torch.block_diag(*blocks)


def rotation_from_tables(k, d_model, base=10000.0):
    """R_k from its action: each 2x2 block maps (sin x, cos x) to (sin(x+a), cos(x+a))."""
    w = torch.exp(-math.log(base) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (D/2,)
    c, s = torch.cos(k * w), torch.sin(k * w)
    R = torch.diag(torch.repeat_interleave(c, 2))  # cos on the whole diagonal
    R[torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)] = s
    R[torch.arange(1, d_model, 2), torch.arange(0, d_model, 2)] = -s
    return R


def _rotation_cases(gen, hidden):
    cases = [Case((1, 4), {}, "small", "k=1, d_model=4"), Case((3, 8), {}, "small", "k=3, d_model=8"),
             Case((5, 6), {"base": 10.0}, "other base", "k=5, d_model=6, base=10")]
    if hidden:
        for _ in range(3):
            k = int(torch.randint(1, 40, (1,), generator=gen))
            d = 2 * int(torch.randint(2, 17, (1,), generator=gen))
            cases.append(Case((k, d), {}, "small", f"k={k}, d_model={d}"))
        cases.append(Case((7, 10), {"base": 100.0}, "other base", "k=7, d_model=10, base=100"))
    return cases


def _moves_the_table(case, out, derived) -> bool:
    k, d = case.args
    base = case.kwargs.get("base", 10000.0)
    pe = P.sinusoidal_encoding(k + 20, d, base, dtype=torch.float64)
    return bool(torch.allclose(pe[:-k] @ out.double().T, pe[k:], atol=1e-4))


OFFSET_ROTATION = Exercise(
    id="06.offset_rotation", notebook=NOTEBOOK, function="offset_rotation", points=3,
    title="PE(p + k) is a rotation of PE(p)", minutes=15,
    reference=P.offset_rotation, make_cases=_rotation_cases, atol=1e-5, rtol=1e-4, check_dtype=False,
    properties=[Property("moves every position k steps",
                         "R @ PE[p] must equal PE[p + k] for every position p (pe[:-k] @ R.T == pe[k:])",
                         _moves_the_table,
                         fires_for=("rotation in the wrong direction", "angle k instead of k * w_i",
                                    "angle k * base^(2i/d) instead of k / base^(2i/d)", "exponent i/d instead of 2i/d",
                                    "k forgotten", "sin and cos swapped in the blocks", "base argument ignored",
                                    "pairs placed at i instead of 2i"))],
    alternatives=[Alternative("torch.block_diag of 2x2 blocks", rotation_block_diag),
                  Alternative("diagonal of cosines plus the sines, in float64", rotation_from_tables)],
    mistakes=[
        KnownMistake("rotation in the wrong direction",
                     "Your blocks are [[cos a, -sin a], [sin a, cos a]] (or you returned R_k transposed), "
                     "which take PE[p] to PE[p - k]. The "
                     "pairs are ordered (sin, cos), so by sin(x+a) = sin x cos a + cos x sin a and "
                     "cos(x+a) = cos x cos a - sin x sin a the block is [[cos a, sin a], [-sin a, cos a]].",
                     rotation_wrong_direction),
        KnownMistake("angle k instead of k * w_i",
                     "You rotate every pair by the angle k. Pair i turns at its own speed "
                     "w_i = 1 / base^(2i/d), so its angle is k * w_i.",
                     rotation_no_frequency),
        KnownMistake("angle k * base^(2i/d) instead of k / base^(2i/d)",
                     "Your angles grow along the pairs: you multiplied k by base^(2i/d). Pair i turns at "
                     "w_i = 1 / base^(2i/d), the same frequency as in the table, so its angle is k * w_i.",
                     rotation_wavelength),
        KnownMistake("exponent i/d instead of 2i/d",
                     "Your angles use base^(-i/d) with i the pair index; the frequency of pair i is "
                     "base^(-2i/d_model).",
                     rotation_exponent_halved),
        KnownMistake("k forgotten",
                     "Your angles are w_i, the turn of ONE step: the matrix is R_1 whatever k is. k steps "
                     "turn pair i by k * w_i.",
                     rotation_k_forgotten),
        KnownMistake("sin and cos swapped in the blocks",
                     "Your blocks have sin on the diagonal and cos off it. A rotation by a keeps cos a on "
                     "the diagonal: [[cos a, sin a], [-sin a, cos a]].",
                     rotation_sin_cos_swapped),
        KnownMistake("base argument ignored",
                     "Your matrix is right for base=10000 but ignores the `base` argument (see the case with "
                     "base=10): w_i = 1 / base^(2i/d).",
                     rotation_base_ignored),
        KnownMistake("pairs placed at i instead of 2i",
                     "Your blocks overlap: pair i sits at rows and columns i, i+1. Pair i owns rows and "
                     "columns 2i and 2i+1: use idx = torch.arange(0, d_model, 2).",
                     rotation_pairs_by_i),
    ],
)

register(SINUSOIDAL, ADD_POSITIONS, OFFSET_ROTATION)
