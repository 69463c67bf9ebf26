"""Sampling filters, sample_next_token, generate (with/without KV cache) and greedy_decode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.generation import sample_next_token, top_k_filter, top_p_filter

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- top-k


def test_top_k_hand_computed():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0])
    out = top_k_filter(logits, 2)
    assert torch.equal(out, torch.tensor([NEG_INF, 3.0, 2.0, NEG_INF]))
    assert torch.equal(logits, torch.tensor([1.0, 3.0, 2.0, 0.0])), "input must not be modified"


def test_top_k_batched_rows_are_independent():
    logits = torch.tensor([[0.0, 5.0, 1.0], [9.0, -1.0, 8.0]])
    out = top_k_filter(logits, 1)
    assert torch.equal(out, torch.tensor([[NEG_INF, 5.0, NEG_INF], [9.0, NEG_INF, NEG_INF]]))


def test_top_k_keeps_ties_and_large_k_is_a_no_op():
    logits = torch.tensor([2.0, 1.0, 2.0, 0.0])
    assert torch.equal(top_k_filter(logits, 1), torch.tensor([2.0, NEG_INF, 2.0, NEG_INF]))
    assert torch.equal(top_k_filter(logits, 10), logits)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_top_k_matches_torch_topk(k, seed):
    logits = torch.randn(3, 12, generator=torch.Generator().manual_seed(seed))  # distinct values
    out = top_k_filter(logits, k)
    kept = torch.isfinite(out)
    assert kept.sum(dim=-1).tolist() == [k] * 3
    expected = torch.zeros_like(kept).scatter(-1, torch.topk(logits, k, dim=-1).indices, True)
    assert torch.equal(kept, expected)
    assert torch.equal(out[kept], logits[kept])


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_top_k_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive int"):
        top_k_filter(torch.randn(5), k)


# --------------------------------------------------------------------------- top-p


def _nucleus_reference(probs: np.ndarray, p: float) -> set[int]:
    """Independent loop: add tokens from most to least likely until the mass reaches p."""
    kept, mass = set(), 0.0
    for i in np.argsort(-probs, kind="stable"):
        kept.add(int(i))
        mass += probs[i]
        if mass >= p:
            break
    return kept


@pytest.mark.parametrize(
    "p, expected",
    [
        (0.45, [0]),  # 0.5 >= 0.45 already
        (0.7, [0, 1]),  # 0.5 < 0.7 <= 0.8
        (0.81, [0, 1, 2]),  # 0.8 < 0.81 <= 0.95
        (0.96, [0, 1, 2, 3]),
        (1.0, [0, 1, 2, 3]),
    ],
)
def test_top_p_hand_computed(p, expected):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()[[2, 0, 3, 1]]  # shuffled so vocabulary order != probability order
    out = top_p_filter(logits, p)
    kept_original = {[2, 0, 3, 1][i] for i in torch.isfinite(out).nonzero().flatten().tolist()}
    assert kept_original == set(expected)
    assert torch.equal(out[torch.isfinite(out)], logits[torch.isfinite(out)])


def test_top_p_always_keeps_top_token_even_for_tiny_p():
    logits = torch.tensor([[0.0, 0.0, 0.1], [5.0, -5.0, 0.0]])
    out = top_p_filter(logits, 1e-9)
    assert torch.isfinite(out).sum(dim=-1).tolist() == [1, 1]
    assert torch.isfinite(out[0, 2]) and torch.isfinite(out[1, 0])


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.floats(0.01, 1.0),
    st.floats(0.1, 4.0),
)
def test_top_p_is_the_smallest_set_with_mass_at_least_p(seed, p, scale):
    logits = scale * torch.randn(2, 15, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = top_p_filter(logits, p)
    probs = torch.softmax(logits, dim=-1)
    for row in range(2):
        kept = set(torch.isfinite(out[row]).nonzero().flatten().tolist())
        assert kept == _nucleus_reference(probs[row].numpy(), p)
        mass = probs[row, sorted(kept)].sum().item()
        assert mass >= p - 1e-12, "kept mass must reach p"
        smallest = min(probs[row, i].item() for i in kept)
        assert mass - smallest < p + 1e-12, "dropping the least likely kept token must fall below p"
        dropped = set(range(15)) - kept
        if dropped:
            assert smallest >= max(probs[row, i].item() for i in dropped), "nucleus = the most likely tokens"


@pytest.mark.parametrize("p", [0.0, -0.1, 1.01, float("nan")])
def test_top_p_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        top_p_filter(torch.randn(5), p)


def test_filters_reject_bad_logits():
    with pytest.raises(ValueError, match="shape"):
        top_k_filter(torch.randn(2, 3, 4), 1)
    with pytest.raises(ValueError, match="floating-point"):
        top_p_filter(torch.tensor([1, 2, 3]), 0.5)


# --------------------------------------------------------------------------- sample_next_token


def test_temperature_zero_is_argmax():
    logits = torch.randn(6, 30, generator=torch.Generator().manual_seed(0))
    out = sample_next_token(logits, temperature=0, top_k=3, top_p=0.1)
    assert out.dtype == torch.long and out.shape == (6,)
    assert torch.equal(out, logits.argmax(dim=-1))
    assert sample_next_token(logits[0], temperature=0).shape == ()


def test_sampling_is_reproducible_with_a_seeded_generator():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    draws = [
        torch.stack([sample_next_token(logits, 1.3, top_k=20, top_p=0.9, generator=g) for _ in range(20)])
        for g in (torch.Generator().manual_seed(7), torch.Generator().manual_seed(7))
    ]
    assert torch.equal(draws[0], draws[1])
    g = torch.Generator().manual_seed(8)
    other = torch.stack([sample_next_token(logits, 1.3, top_k=20, top_p=0.9, generator=g) for _ in range(20)])
    assert not torch.equal(draws[0], other), "a different seed should give different draws"


def _chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, None, None), (2.0, None, None), (0.5, 3, None), (1.0, None, 0.8), (1.5, 4, 0.9)],
)
def test_sample_frequencies_match_probabilities(temperature, top_k, top_p):
    """Chi-square goodness of fit against an independently computed target distribution."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0], dtype=torch.float64)
    # independent target distribution: numpy softmax of logits / T, then the filters by hand
    z = logits.numpy() / temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = np.zeros(6, bool)
    keep[order[: (top_k or 6)]] = True
    if top_p is not None:
        renorm = np.where(keep, probs, 0) / probs[keep].sum()
        keep = np.zeros(6, bool)
        keep[list(_nucleus_reference(renorm, top_p))] = True
    target = np.where(keep, probs, 0)
    target /= target.sum()

    n = 20_000
    g = torch.Generator().manual_seed(1234)
    batch = logits.expand(n, 6)  # n independent draws in one call
    draws = sample_next_token(batch, temperature, top_k=top_k, top_p=top_p, generator=g)
    counts = np.bincount(draws.numpy(), minlength=6)
    assert counts[~keep].sum() == 0, "filtered tokens must never be sampled"
    dof = keep.sum() - 1
    if dof > 0:
        stat = _chi_square(counts[keep], target[keep])
        # mean dof, sd sqrt(2 dof): 8 sd is a loose bound a correct sampler essentially never exceeds
        assert stat < dof + 8 * math.sqrt(2 * dof), (stat, counts, target)


def test_sample_next_token_bad_temperature():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_next_token(torch.randn(3), temperature=-1.0)
