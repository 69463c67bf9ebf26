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


# --------------------------------------------------------------------------- generate (GPT)

from course_lib.generation import generate, greedy_decode  # noqa: E402
from course_lib.models import GPT, EncoderDecoder, GPTConfig, Seq2SeqConfig  # noqa: E402


def _spiky_gpt(block_size=16, seed=1) -> GPT:
    """A small random GPT with larger weights (and large position embeddings), so greedy
    continuations are not one token repeated (as they are with the tiny GPT-2 init)."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=40, block_size=block_size, n_layers=2, n_heads=2, d_model=32))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
        model.pos_emb.weight.normal_(0.0, 1.0)
    return model.eval()


def _record_input_lengths(model: GPT) -> list[int]:
    """Hook the token embedding to record how many tokens each forward call processes."""
    lengths: list[int] = []
    model.tok_emb.register_forward_hook(lambda mod, inp, out: lengths.append(inp[0].shape[1]))
    return lengths


def test_cached_logits_equal_full_forward():
    model = _spiky_gpt()
    ids = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)  # (3, 12, V)
        caches = model.new_kv_caches()
        first = model(ids[:, :5], kv_caches=caches)  # prompt of 5
        steps = [model(ids[:, t : t + 1], kv_caches=caches) for t in range(5, 12)]
    stepwise = torch.cat([first, *steps], dim=1)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-5)
    assert len(caches[0]) == 12


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0, top_k=10, top_p=0.9)])
def test_kv_cache_generation_equals_no_cache_past_block_size(sampling):
    block_size, prompt_len, new = 16, 5, 30  # runs 19 tokens past block_size
    model = _spiky_gpt(block_size)
    prompt = torch.randint(0, 40, (2, prompt_len), generator=torch.Generator().manual_seed(1))
    lengths = _record_input_lengths(model)
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(42)
        outs.append(generate(model, prompt, new, generator=g, use_cache=use_cache, **sampling))
    cached, uncached = outs
    assert cached.shape == (2, prompt_len + new)
    assert torch.equal(cached[:, :prompt_len], prompt)
    assert torch.equal(cached, uncached)
    if sampling["temperature"] == 0:
        assert len(set(cached[0, prompt_len:].tolist())) > 3, "continuation too repetitive to test anything"
    # the cached run: one prompt pass, then single tokens while the sequence fits, then the
    # cropped window; the uncached run always processes the (cropped) whole sequence
    fits = block_size - prompt_len  # steps 2..(fits+1) feed one token
    expected_cached = [prompt_len] + [1] * fits + [block_size] * (new - 1 - fits)
    expected_uncached = [min(prompt_len + i, block_size) for i in range(new)]
    assert lengths == expected_cached + expected_uncached


def test_generate_restores_training_mode_and_validates():
    model = _spiky_gpt()
    model.train()
    generate(model, torch.zeros(1, 3, dtype=torch.long), 2)
    assert model.training
    assert torch.equal(generate(model, torch.ones(1, 3, dtype=torch.long), 0), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), -1)
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        generate(model, torch.zeros(3, dtype=torch.long), 2)


def test_generate_crops_a_prompt_longer_than_block_size():
    model = _spiky_gpt(block_size=8)
    prompt = torch.randint(0, 40, (1, 20), generator=torch.Generator().manual_seed(2))
    out = generate(model, prompt, 3, temperature=0)
    with torch.no_grad():
        first = model(prompt[:, -8:])[:, -1].argmax(-1)
    assert out.shape == (1, 23) and out[0, 20] == first[0]


# --------------------------------------------------------------------------- greedy_decode


class _ScriptedSeq2Seq(EncoderDecoder):
    """An EncoderDecoder whose decoder emits a fixed script per row (to test the stopping rule)."""

    def __init__(self, script: list[list[int]]):
        super().__init__(Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=10, max_len=12, n_layers=1, n_heads=2, d_model=8))
        self.script = torch.tensor(script)

    def decode(self, tgt_ids, memory, src_mask=None):
        B, t = tgt_ids.shape
        logits = torch.zeros(B, t, 10)
        logits[torch.arange(B), -1, self.script[:, t - 1]] = 1.0  # next token = script[row, t-1]
        return logits


def test_greedy_decode_stops_when_every_row_has_eos():
    # row 0 emits EOS (2) after two tokens, row 1 after four; row 0 is padded (0) afterwards
    model = _ScriptedSeq2Seq([[5, 6, 2, 7, 7, 7, 7], [4, 4, 4, 2, 9, 9, 9]])
    src = torch.tensor([[3, 4, 0], [5, 6, 7]])
    out = greedy_decode(model, src, max_len=10)
    assert out.tolist() == [[1, 5, 6, 2, 0], [1, 4, 4, 4, 2]]


def test_greedy_decode_respects_max_len_and_matches_stepwise_argmax():
    torch.manual_seed(0)
    model = EncoderDecoder(Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, max_len=9, n_layers=2, n_heads=2, d_model=16))
    model.eval()
    src = torch.randint(3, 11, (3, 6), generator=torch.Generator().manual_seed(0))
    out = greedy_decode(model, src, max_len=7, bos_id=1, eos_id=99)  # 99 never appears: runs to max_len
    assert out.shape == (3, 7) and (out[:, 0] == 1).all()
    with torch.no_grad():  # independent check: every chosen token is the argmax given its prefix
        logits = model(src, out[:, :-1])  # (3, 6, V)
    assert torch.equal(out[:, 1:], logits.argmax(-1))
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, src, max_len=10)
