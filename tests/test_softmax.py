"""course_lib.softmax against PyTorch's own softmax, log_softmax and cross_entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.softmax import cross_entropy, log_softmax, perplexity, softmax, softmax_with_temperature

SHAPE = (3, 4, 5, 6)


@pytest.fixture
def x():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * 3


# --------------------------------------------------------------------------- softmax / log_softmax


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2])
def test_softmax_equals_torch_on_every_axis(x, dim):
    torch.testing.assert_close(softmax(x, dim=dim), torch.softmax(x, dim=dim), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2])
def test_log_softmax_equals_torch_on_every_axis(x, dim):
    torch.testing.assert_close(log_softmax(x, dim=dim), torch.log_softmax(x, dim=dim), rtol=0, atol=1e-6)


def test_softmax_default_axis_is_last(x):
    torch.testing.assert_close(softmax(x), torch.softmax(x, dim=-1), rtol=0, atol=1e-6)
    assert not torch.allclose(softmax(x), torch.softmax(x, dim=0))


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_softmax_is_finite_at_huge_logits(big):
    logits = torch.tensor([[big, 0.0, -3.0], [big, big, big - 1.0], [0.0, 1.0, 2.0]])
    p, logp = softmax(logits), log_softmax(logits)
    assert torch.isfinite(p).all() and torch.isfinite(logp).all()
    torch.testing.assert_close(p, torch.softmax(logits, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1), rtol=0, atol=1e-6)


def test_naive_softmax_overflows_where_stable_one_does_not():
    """Why the max is subtracted: exp(1e4) is inf in float32."""
    logits = torch.tensor([1e4, 0.0])
    naive = torch.exp(logits) / torch.exp(logits).sum()
    assert torch.isnan(naive).any()
    torch.testing.assert_close(softmax(logits), torch.tensor([1.0, 0.0]))


def test_log_softmax_keeps_precision_where_log_of_softmax_underflows():
    logits = torch.tensor([0.0, -200.0])
    assert torch.isinf(torch.log(softmax(logits))[1])  # softmax underflowed to 0
    torch.testing.assert_close(log_softmax(logits), torch.tensor([0.0, -200.0]))


def test_softmax_gradient_equals_torch(x):
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    w = torch.randn(SHAPE)
    (softmax(a, dim=1) * w).sum().backward()
    (torch.softmax(b, dim=1) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0, 2.0, 10.0])
def test_softmax_with_temperature_divides_the_logits(x, temperature):
    torch.testing.assert_close(
        softmax_with_temperature(x, temperature), torch.softmax(x / temperature, -1), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        softmax_with_temperature(x, temperature, dim=0), torch.softmax(x / temperature, 0), rtol=0, atol=1e-6
    )


def test_temperature_flattens_and_sharpens():
    logits = torch.tensor([2.0, 1.0, 0.0])

    def entropy(p):
        return -(p * p.log()).sum()

    cold, warm, hot = (softmax_with_temperature(logits, t) for t in (0.25, 1.0, 4.0))
    assert entropy(cold) < entropy(warm) < entropy(hot)
    assert softmax_with_temperature(logits, 1e-3)[0] > 0.999  # almost greedy


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        softmax_with_temperature(torch.zeros(3), temperature)


# --------------------------------------------------------------------------- cross entropy


def _logits_targets(*shape, V=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, V, generator=g) * 2, torch.randint(0, V, shape, generator=g)


def test_cross_entropy_equals_torch_2d():
    logits, targets = _logits_targets(11)
    torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits, targets), rtol=0, atol=1e-6)


def test_cross_entropy_equals_torch_3d():
    logits, targets = _logits_targets(3, 5)  # (B, T, V), (B, T)
    expected = F.cross_entropy(logits.transpose(1, 2), targets)  # torch wants (B, V, T)
    torch.testing.assert_close(cross_entropy(logits, targets), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ignore_index", [-100, 0, 3])
def test_cross_entropy_ignore_index_equals_torch(ignore_index):
    logits, targets = _logits_targets(4, 6)
    targets[0, :3] = ignore_index
    targets[2, -1] = ignore_index
    expected = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=ignore_index)
    got = cross_entropy(logits, targets, ignore_index=ignore_index)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if ignore_index >= 0:  # the ignored positions really are left out of the mean
        counted = F.cross_entropy(logits.transpose(1, 2), targets)
        assert not torch.isclose(got, counted)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    logits, _ = _logits_targets(4)
    targets = torch.full((4,), -100)
    assert torch.isnan(cross_entropy(logits, targets)) and torch.isnan(F.cross_entropy(logits, targets))


def test_cross_entropy_gradient_equals_torch():
    logits, targets = _logits_targets(3, 5)
    targets[1, 1] = -100
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    cross_entropy(a, targets).backward()
    F.cross_entropy(b.transpose(1, 2), targets).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


def test_cross_entropy_at_huge_logits_is_finite_and_equal():
    logits = torch.tensor([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]])
    targets = torch.tensor([1, 1])
    got = cross_entropy(logits, targets)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, F.cross_entropy(logits, targets))


@pytest.mark.parametrize(
    "logits_shape, targets_shape, dtype, match",
    [
        ((4, 7), (5,), torch.long, "targets must have shape"),
        ((2, 3, 7), (2, 4), torch.long, "targets must have shape"),
        ((7,), (), torch.long, r"logits must have shape \(N, V\) or \(B, T, V\)"),
        ((4, 7), (4,), torch.float32, "integer tensor"),
    ],
)
def test_cross_entropy_rejects_bad_shapes(logits_shape, targets_shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(torch.zeros(logits_shape), torch.zeros(targets_shape, dtype=dtype))


@pytest.mark.parametrize("bad", [7, -1])
def test_cross_entropy_rejects_out_of_range_targets(bad):
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 7\)"):
        cross_entropy(torch.zeros(3, 7), torch.tensor([0, bad, 2]))


# --------------------------------------------------------------------------- perplexity


def test_perplexity_of_uniform_model_is_vocab_size():
    V = 13
    logits = torch.zeros(2, 5, V)
    targets = torch.randint(0, V, (2, 5))
    torch.testing.assert_close(perplexity(logits, targets), torch.tensor(float(V)))


def test_perplexity_is_exp_of_torch_cross_entropy():
    logits, targets = _logits_targets(3, 4)
    targets[0, 0] = -100
    expected = torch.exp(F.cross_entropy(logits.transpose(1, 2), targets))
    torch.testing.assert_close(perplexity(logits, targets), expected)


def test_perplexity_of_confident_correct_model_is_one():
    targets = torch.tensor([0, 2, 1])
    logits = F.one_hot(targets, 3).float() * 50
    assert math.isclose(perplexity(logits, targets).item(), 1.0, abs_tol=1e-6)
