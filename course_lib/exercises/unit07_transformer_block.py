"""Exercises of unit 07: the transformer block.

Four exercises, each with the mistakes learners really make as runnable buggy variants:

* ``07.layer_norm``        LayerNorm as a function (eps inside the sqrt, biased variance, last axis);
* ``07.mlp``               the position-wise MLP with explicit weights (up 4x, exact GELU, down);
* ``07.transformer_block`` the pre-norm block with explicit weights (attention + MLP, two residuals);
* ``07.count_by_category`` the GPT-3 parameter count by category of weight matrix.

Weights passed explicitly use the maths convention ``y = x @ W + b`` with ``W`` of shape (in, out)
(``nn.Linear`` stores the transpose, (out, in)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import blocks as BL
from .. import params as P
from ..attention import causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from .core import Alternative, Case, Exercise, Forbidden, KnownMistake, Property
from .registry import register
from .core import randn as _randn  # shared case helpers

NOTEBOOK = "07_transformer_block"


# ---------------------------------------------------------------------------------------------------
# 07.layer_norm
# ---------------------------------------------------------------------------------------------------

LAYER_NORM_BUILTINS = Forbidden(
    "a built-in LayerNorm (F.layer_norm, torch.layer_norm, nn.LayerNorm)",
    ("torch.nn.functional.layer_norm", "torch.layer_norm", "torch.nn.LayerNorm", "torch.native_layer_norm",
     "torch.nn.functional.group_norm", "torch.nn.functional.rms_norm"),
    "this exercise asks you to build LayerNorm from mean, variance and sqrt",
)


def ln_eps_outside(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / (torch.sqrt(var) + eps) * weight + bias


def ln_unbiased(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def ln_wrong_axis(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=0, keepdim=True)
    var = x.var(dim=0, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def ln_no_affine(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps)


def ln_no_eps(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var) * weight + bias


def ln_eps_fixed(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + 1e-5) * weight + bias  # the eps argument ignored


def ln_no_sqrt(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / (var + eps) * weight + bias


def ln_weight_bias_swapped(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps) * bias + weight


def ln_uncentred_variance(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = (x * x).mean(dim=-1, keepdim=True)  # E[x^2], not E[(x - mean)^2]
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def ln_eps_after_rsqrt(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) * (torch.rsqrt(var) + eps) * weight + bias


def ln_whole_tensor(x, weight, bias, eps=1e-5):
    mu, var = x.mean(), x.var(unbiased=False)  # one mean and variance for the whole tensor
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def ln_sqrt_of_std(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(std + eps) * weight + bias


def ln_weight_before_normalising(x, weight, bias, eps=1e-5):
    xw = x * weight
    mu = xw.mean(dim=-1, keepdim=True)
    var = xw.var(dim=-1, keepdim=True, unbiased=False)
    return (xw - mu) / torch.sqrt(var + eps) + bias


def ln_dim_one(x, weight, bias, eps=1e-5):
    mu = x.mean(dim=1, keepdim=True)  # dim=1 hard-coded
    var = x.var(dim=1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias

def ln_rsqrt_var(x, weight, bias, eps=1e-5):
    """Alternative: torch.var(unbiased=False) and rsqrt."""
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred * torch.rsqrt(x.var(dim=-1, unbiased=False, keepdim=True) + eps) * weight + bias


def ln_sums(x, weight, bias, eps=1e-5):
    """Alternative: sums divided by D, a power 0.5 and addcmul for the affine part."""
    D = x.shape[-1]
    mu = x.sum(dim=-1, keepdim=True) / D
    var = ((x - mu) * (x - mu)).sum(dim=-1, keepdim=True) / D
    return torch.addcmul(bias, (x - mu) / (var + eps) ** 0.5, weight)


def _ln_case(gen, shape, note, group, eps=None, offset=0.0, scale=1.0):
    D = shape[-1]
    x = _randn(gen, *shape, scale=scale) + offset
    weight = 1.0 + _randn(gen, D, scale=0.5)
    bias = _randn(gen, D, scale=0.5)
    kwargs = {} if eps is None else {"eps": eps}
    return Case((x, weight, bias), kwargs, group, note)


def _ln_cases(gen, hidden):
    cases = [_ln_case(gen, (4, 8), "4 positions of 8 features", "basic"),
             # 3-D with values of a few units: dim=1 is not the feature axis here, and a misplaced eps shows
             _ln_case(gen, (2, 3, 8), "a (2, 3, 8) batch, values of a few units", "basic", offset=1.0, scale=3.0),
             # small activations (variance ~0.01): eps = 1e-5 is not negligible, leaving it out shows
             _ln_case(gen, (3, 6), "small values (variance ~0.01)", "basic", scale=0.1)]
    if hidden:
        cases.append(_ln_case(gen, (2, 5, 16), "a (2, 5, 16) batch", "basic", offset=3.0, scale=2.0))
        cases.append(_ln_case(gen, (3, 4, 2, 6), "a 4-D input", "basic"))
    cases.append(_ln_case(gen, (2, 3, 6), "eps=0.1 makes its place visible", "eps", eps=0.1))
    # nearly constant rows: the variance (~1e-6) is of the size of eps
    cases.append(_ln_case(gen, (3, 5), "nearly constant rows (variance ~ eps)", "eps", scale=1e-3))
    if hidden:
        cases.append(_ln_case(gen, (6, 4), "eps=0.5", "eps", eps=0.5, scale=0.7))
        cases.append(_ln_case(gen, (2, 8, 32), "large values", "eps", offset=100.0, scale=50.0))
    return cases


def _ln_unit(case: Case):
    """The case in float64 with weight=1, bias=0: the mean-0 property then separates the wrong axis from
    every other bug (in float32 the rounding of a nearly constant row could look like a nonzero mean)."""
    x, weight, bias = case.args
    return [Case((x.double(), torch.ones_like(weight, dtype=torch.float64),
                  torch.zeros_like(bias, dtype=torch.float64)), dict(case.kwargs), case.group)]


def _ln_mean_zero(case, out, derived) -> bool:
    (plain,) = derived
    if not isinstance(plain, torch.Tensor) or plain.shape != case.args[0].shape:
        return False
    return bool(plain.double().mean(dim=-1).abs().max() < 1e-9)


LAYER_NORM = Exercise(
    id="07.layer_norm", notebook=NOTEBOOK, function="layer_norm", points=3,
    title="Layer normalisation", minutes=10,
    reference=BL.layer_norm, make_cases=_ln_cases, atol=1e-5, rtol=1e-4,
    forbidden=[LAYER_NORM_BUILTINS],
    alternatives=[Alternative("torch.var(unbiased=False) and rsqrt", ln_rsqrt_var),
                  Alternative("sums over D, ** 0.5 and addcmul", ln_sums)],
    properties=[Property("each position has mean 0",
                         "with weight=1 and bias=0 every feature vector (the last axis) should have mean 0 "
                         "after normalising",
                         _ln_mean_zero, _ln_unit,
                         fires_for=("dim=1 instead of dim=-1", "mean and variance of the whole tensor",
                                    "normalised over the wrong axis", "weight and bias swapped"))],
    mistakes=[
        KnownMistake("eps outside the square root",
                     "You divide by sqrt(var) + eps. The eps belongs inside: (x - mean) / sqrt(var + eps), "
                     "as in PyTorch and the LayerNorm paper; the difference shows when eps is large or the "
                     "vector is nearly constant.", ln_eps_outside),
        KnownMistake("unbiased variance",
                     "You use the unbiased variance (divided by D - 1; torch.var's default). LayerNorm uses "
                     "the biased one: mean((x - mean)^2), i.e. x.var(dim=-1, unbiased=False).", ln_unbiased),
        KnownMistake("normalised over the wrong axis",
                     "You take the mean and variance over the first axis (across positions). LayerNorm "
                     "normalises each position's feature vector: use dim=-1 with keepdim=True.",
                     ln_wrong_axis),
        KnownMistake("scale and shift forgotten",
                     "Your output is normalised but never multiplied by `weight` (gamma) and shifted by "
                     "`bias` (beta): y = x_hat * weight + bias.", ln_no_affine),
        KnownMistake("eps left out",
                     "You divide by sqrt(var) with no eps. The eps keeps the division safe for (nearly) constant "
                     "vectors and changes the result when it is large: (x - mean) / sqrt(var + eps).", ln_no_eps),
        KnownMistake("eps argument ignored",
                     "You use eps = 1e-5 whatever the caller passes. Use the `eps` argument: "
                     "torch.sqrt(var + eps).", ln_eps_fixed),
        KnownMistake("divided by the variance, not its square root",
                     "You divide by var + eps. Normalising divides by the standard deviation: "
                     "(x - mean) / torch.sqrt(var + eps).", ln_no_sqrt),
        KnownMistake("weight and bias swapped",
                     "You multiply by `bias` and add `weight`. The gain multiplies and the shift adds: "
                     "x_hat * weight + bias.", ln_weight_bias_swapped),
        KnownMistake("variance not centred",
                     "Your variance is the mean of x^2. The variance is the mean of the SQUARED DEVIATIONS from the "
                     "mean: ((x - mean) ** 2).mean(dim=-1, keepdim=True) (they agree only when the mean is 0).",
                     ln_uncentred_variance),
        KnownMistake("eps added after the rsqrt",
                     "You add eps to 1 / sqrt(var) instead of to var. The eps goes inside the square root: "
                     "(x - mean) / sqrt(var + eps), i.e. torch.rsqrt(var + eps).", ln_eps_after_rsqrt),
        KnownMistake("mean and variance of the whole tensor",
                     "You take one mean and one variance over the WHOLE tensor (x.mean() without dim). LayerNorm "
                     "normalises each position's feature vector on its own: dim=-1, keepdim=True.", ln_whole_tensor),
        KnownMistake("square root of the standard deviation",
                     "You divide by sqrt(std + eps): the standard deviation is already a square root. Divide by "
                     "sqrt(var + eps) (var = std ** 2, biased).", ln_sqrt_of_std),
        KnownMistake("weight applied before normalising",
                     "You multiply by `weight` before normalising, so the normalisation undoes (part of) it. "
                     "Normalise first, then scale and shift: x_hat * weight + bias.", ln_weight_before_normalising),
        KnownMistake("dim=1 instead of dim=-1",
                     "You normalise over dim=1. That is the feature axis only for 2-D inputs; for (B, T, D) it is "
                     "the positions. Use dim=-1, the last axis, whatever the number of dimensions.", ln_dim_one),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 07.mlp
# ---------------------------------------------------------------------------------------------------


def mlp(x: Tensor, W_up: Tensor, b_up: Tensor, W_down: Tensor, b_down: Tensor) -> Tensor:
    """The transformer's position-wise MLP with explicit weights::

        h = GELU(x @ W_up + b_up)      (..., d_mlp)   up-projection (usually d_mlp = 4 d_model)
        y = h @ W_down + b_down        (..., d_model) down-projection

    x (..., D), W_up (D, d_mlp), b_up (d_mlp,), W_down (d_mlp, D), b_down (D,) -> (..., D).
    GELU is the exact one, ``x * Phi(x)`` (``course_lib.blocks.gelu``, ``F.gelu``'s default).
    """
    D = x.shape[-1]
    if W_up.dim() != 2 or W_up.shape[0] != D:
        raise ValueError(f"W_up must have shape ({D}, d_mlp) to match x {tuple(x.shape)}, got {tuple(W_up.shape)}")
    if W_down.shape != (W_up.shape[1], D):
        raise ValueError(f"W_down must have shape ({W_up.shape[1]}, {D}), got {tuple(W_down.shape)}")
    h = BL.gelu(x @ W_up + b_up)  # (..., d_mlp)
    return h @ W_down + b_down  # (..., D)


def mlp_relu(x, W_up, b_up, W_down, b_down):
    return torch.relu(x @ W_up + b_up) @ W_down + b_down


def mlp_gelu_tanh(x, W_up, b_up, W_down, b_down):
    return BL.gelu_new(x @ W_up + b_up) @ W_down + b_down


def mlp_no_activation(x, W_up, b_up, W_down, b_down):
    return (x @ W_up + b_up) @ W_down + b_down


def mlp_activation_after_down(x, W_up, b_up, W_down, b_down):
    return BL.gelu(BL.gelu(x @ W_up + b_up) @ W_down + b_down)


def mlp_biases_forgotten(x, W_up, b_up, W_down, b_down):
    return BL.gelu(x @ W_up) @ W_down


def mlp_gelu_sigmoid(x, W_up, b_up, W_down, b_down):
    h = x @ W_up + b_up
    return (h * torch.sigmoid(1.702 * h)) @ W_down + b_down  # the sigmoid approximation of GELU


def mlp_silu(x, W_up, b_up, W_down, b_down):
    return torch.nn.functional.silu(x @ W_up + b_up) @ W_down + b_down


def mlp_bias_after_gelu(x, W_up, b_up, W_down, b_down):
    return (BL.gelu(x @ W_up) + b_up) @ W_down + b_down


def mlp_with_residual(x, W_up, b_up, W_down, b_down):
    return x + mlp(x, W_up, b_up, W_down, b_down)


def mlp_b_down_forgotten(x, W_up, b_up, W_down, b_down):
    return BL.gelu(x @ W_up + b_up) @ W_down


def mlp_b_up_forgotten(x, W_up, b_up, W_down, b_down):
    return BL.gelu(x @ W_up) @ W_down + b_down


def mlp_tanh(x, W_up, b_up, W_down, b_down):
    return torch.tanh(x @ W_up + b_up) @ W_down + b_down


def mlp_gelu_twice(x, W_up, b_up, W_down, b_down):
    return BL.gelu(BL.gelu(x @ W_up + b_up)) @ W_down + b_down


def mlp_gelu_doubled(x, W_up, b_up, W_down, b_down):
    h = x @ W_up + b_up
    return (h * (1.0 + torch.erf(h / 2.0 ** 0.5))) @ W_down + b_down  # the 0.5 of GELU forgotten

def mlp_einsum_erf(x, W_up, b_up, W_down, b_down):
    """Alternative: einsum and GELU written with erf."""
    h = torch.einsum("...d,dm->...m", x, W_up) + b_up
    h = 0.5 * h * (1.0 + torch.erf(h / 2.0 ** 0.5))
    return torch.einsum("...m,md->...d", h, W_down) + b_down


def mlp_flatten_addmm(x, W_up, b_up, W_down, b_down):
    """Alternative: flatten the leading axes, addmm, F.gelu, reshape back."""
    flat = x.reshape(-1, x.shape[-1])
    h = torch.nn.functional.gelu(torch.addmm(b_up, flat, W_up))
    return torch.addmm(b_down, h, W_down).reshape(x.shape)


def _mlp_case(gen, lead, D, d_mlp, group, note):
    x = _randn(gen, *lead, D)
    W_up = _randn(gen, D, d_mlp, scale=D ** -0.5)
    b_up = _randn(gen, d_mlp, scale=0.5)
    W_down = _randn(gen, d_mlp, D, scale=d_mlp ** -0.5)
    b_down = _randn(gen, D, scale=0.5)
    return Case((x, W_up, b_up, W_down, b_down), {}, group, note)


def _mlp_cases(gen, hidden):
    cases = [_mlp_case(gen, (2, 3), 4, 16, "basic", "(2, 3, 4) with d_mlp = 4 * 4")]
    if hidden:
        cases.append(_mlp_case(gen, (3, 7), 8, 32, "basic", "(3, 7, 8), d_mlp 32"))
        cases.append(_mlp_case(gen, (2, 5), 16, 64, "basic", "(2, 5, 16), d_mlp 64"))
    cases.append(_mlp_case(gen, (5,), 6, 10, "shapes", "2-D input (5, 6), d_mlp 10 (not 4x)"))
    if hidden:
        cases.append(_mlp_case(gen, (2, 2, 3), 4, 12, "shapes", "4-D input, d_mlp 12"))
    return cases


def _permute_positions(case: Case):
    x = case.args[0]
    perm = torch.arange(x.shape[-2] - 1, -1, -1)  # reverse the position axis
    return [Case((x[..., perm, :],) + tuple(case.args[1:]), dict(case.kwargs), case.group)]


def _position_wise(case, out, derived) -> bool:
    (rev,) = derived
    perm = torch.arange(out.shape[-2] - 1, -1, -1)
    return bool(torch.allclose(rev, out[..., perm, :], atol=1e-5))


MLP = Exercise(
    id="07.mlp", notebook=NOTEBOOK, function="mlp", points=2,
    title="The MLP: up-projection, GELU, down-projection", minutes=8,
    reference=mlp, make_cases=_mlp_cases, atol=1e-5, rtol=1e-4,
    alternatives=[Alternative("einsum and erf", mlp_einsum_erf),
                  Alternative("flattened addmm and F.gelu", mlp_flatten_addmm)],
    properties=[Property("position-wise",
                         "reversing the order of the positions should reverse the output rows: the MLP treats "
                         "every position on its own", _position_wise, _permute_positions)],
    mistakes=[
        KnownMistake("ReLU instead of GELU",
                     "You use ReLU. Transformers (GPT, BERT) use GELU, x * Phi(x), which is smooth and lets "
                     "small negative values through: F.gelu(h) or 0.5 * h * (1 + erf(h / sqrt(2))).", mlp_relu),
        KnownMistake("tanh approximation of GELU",
                     "You use the tanh approximation of GELU (GPT-2's 'gelu_new'). This exercise asks for the "
                     "exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), F.gelu's default.", mlp_gelu_tanh),
        KnownMistake("no activation",
                     "There is no non-linearity between the two projections, so the MLP collapses to one "
                     "linear map (W_up @ W_down). Apply GELU to the hidden layer.", mlp_no_activation),
        KnownMistake("activation after the down-projection",
                     "You apply GELU to the output as well. Only the hidden layer (after W_up) goes through "
                     "GELU; the down-projection is linear so the MLP can write any value into the stream.",
                     mlp_activation_after_down),
        KnownMistake("biases forgotten",
                     "You ignore b_up and b_down: h = GELU(x @ W_up + b_up), y = h @ W_down + b_down.",
                     mlp_biases_forgotten),
        KnownMistake("sigmoid approximation of GELU",
                     "You use x * sigmoid(1.702 x), a quick approximation of GELU. This exercise asks for the exact "
                     "GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): F.gelu(h).", mlp_gelu_sigmoid),
        KnownMistake("SiLU instead of GELU",
                     "You use SiLU (x * sigmoid(x), also called swish; LLaMA's MLP uses it). GPT and BERT use GELU, "
                     "x * Phi(x): F.gelu(h) or 0.5 * h * (1 + torch.erf(h / math.sqrt(2))).", mlp_silu),
        KnownMistake("b_up added after the GELU",
                     "You add b_up after the activation. The bias belongs to the up-projection, inside the GELU: "
                     "GELU(x @ W_up + b_up).", mlp_bias_after_gelu),
        KnownMistake("residual added inside the MLP",
                     "You return x + MLP(x). The MLP returns only its own output; the residual x + ... is added "
                     "by the transformer block (exercise 07.3), which would otherwise add x twice.",
                     mlp_with_residual),
        KnownMistake("b_down forgotten",
                     "You leave out b_down: the output is GELU(x @ W_up + b_up) @ W_down + b_down.",
                     mlp_b_down_forgotten),
        KnownMistake("b_up forgotten",
                     "You leave out b_up: the hidden layer is GELU(x @ W_up + b_up), the bias inside the GELU.",
                     mlp_b_up_forgotten),
        KnownMistake("tanh instead of GELU",
                     "You use tanh as the activation. The transformer's MLP uses GELU, x * Phi(x): F.gelu(h) "
                     "(tanh appears only inside GELU's tanh APPROXIMATION).", mlp_tanh),
        KnownMistake("GELU applied twice",
                     "You apply GELU twice to the hidden layer. Once is enough: GELU(x @ W_up + b_up) @ W_down + "
                     "b_down.", mlp_gelu_twice),
        KnownMistake("GELU without the 0.5",
                     "Your GELU is h * (1 + erf(h / sqrt 2)), twice the real one. GELU(h) = h * Phi(h) = "
                     "0.5 * h * (1 + erf(h / sqrt 2)).", mlp_gelu_doubled),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 07.transformer_block (a function with explicit weights)
# ---------------------------------------------------------------------------------------------------


def self_attention(x: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, W_O: Tensor, n_heads: int,
                   mask: Tensor | None = None) -> Tensor:
    """Multi-head self-attention with explicit weights (unit 05; no biases), a helper for the block.

    x (B, T, D), each W (D, D) in the ``x @ W`` convention, mask as for
    ``course_lib.attention.scaled_dot_product_attention`` -> (B, T, D)::

        Q, K, V = x W_Q, x W_K, x W_V               (B, T, D), split into heads (B, H, T, Dh)
        out     = concat_h softmax(Q_h K_h^T / sqrt(Dh) + mask) V_h  @ W_O
    """
    q = split_heads(x @ W_Q, n_heads)  # (B, H, T, Dh)
    k = split_heads(x @ W_K, n_heads)  # (B, H, T, Dh)
    v = split_heads(x @ W_V, n_heads)  # (B, H, T, Dh)
    z = scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, Dh)
    return merge_heads(z) @ W_O  # (B, T, D)


def transformer_block(x: Tensor, ln1: tuple, attn_weights: tuple, ln2: tuple, mlp_weights: tuple,
                      n_heads: int, mask: Tensor | None = None) -> Tensor:
    """One pre-norm transformer block with explicit weights::

        x = x + SelfAttention(LN1(x), mask)       attention: positions talk to each other
        x = x + MLP(LN2(x))                       MLP: each position thinks on its own

    x (B, T, D); ``ln1``, ``ln2`` = (weight, bias) each (D,); ``attn_weights`` = (W_Q, W_K, W_V, W_O)
    each (D, D); ``mlp_weights`` = (W_up (D, d_mlp), b_up, W_down (d_mlp, D), b_down);
    mask bool (T, T) or None -> (B, T, D).
    """
    x = x + self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)  # (B, T, D)
    x = x + mlp(BL.layer_norm(x, *ln2), *mlp_weights)  # (B, T, D)
    return x


def block_post_norm(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = BL.layer_norm(x + self_attention(x, *attn_weights, n_heads, mask=mask), *ln1)
    return BL.layer_norm(x + mlp(x, *mlp_weights), *ln2)


def block_no_residual(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return mlp(BL.layer_norm(x, *ln2), *mlp_weights)


def block_attention_residual_only(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = x + self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return mlp(BL.layer_norm(x, *ln2), *mlp_weights)


def block_parallel(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    a = self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return x + a + mlp(BL.layer_norm(x, *ln2), *mlp_weights)


def block_mask_ignored(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    return transformer_block(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None)


def block_same_norm_twice(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    return transformer_block(x, ln1, attn_weights, ln1, mlp_weights, n_heads, mask=mask)


def block_stream_normalised(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    # normalises the stream itself (x = LN(x), then x = x + f(x)): the residual carries normalised values
    x = BL.layer_norm(x, *ln1)
    x = x + self_attention(x, *attn_weights, n_heads, mask=mask)
    x = BL.layer_norm(x, *ln2)
    return x + mlp(x, *mlp_weights)


def block_one_residual(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    a = self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return x + mlp(BL.layer_norm(a, *ln2), *mlp_weights)  # one residual around both sub-layers


def block_mlp_residual_from_input(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    h = x + self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return x + mlp(BL.layer_norm(h, *ln2), *mlp_weights)  # adds the block's input, not h


def block_attention_residual_missing(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return x + mlp(BL.layer_norm(x, *ln2), *mlp_weights)


def block_no_ln2(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = x + self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    return x + mlp(x, *mlp_weights)


def block_no_ln1(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = x + self_attention(x, *attn_weights, n_heads, mask=mask)
    return x + mlp(BL.layer_norm(x, *ln2), *mlp_weights)


def block_norm_on_outputs(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = x + BL.layer_norm(self_attention(x, *attn_weights, n_heads, mask=mask), *ln1)
    return x + BL.layer_norm(mlp(x, *mlp_weights), *ln2)


def block_norms_swapped(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    return transformer_block(x, ln2, attn_weights, ln1, mlp_weights, n_heads, mask=mask)


def block_mlp_first(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = x + mlp(BL.layer_norm(x, *ln2), *mlp_weights)
    return x + self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)


def block_final_norm(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    return BL.layer_norm(transformer_block(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=mask), *ln2)


def block_mask_inverted(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    return transformer_block(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None if mask is None else ~mask)


def block_mlp_residual_normalised(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    x = x + self_attention(BL.layer_norm(x, *ln1), *attn_weights, n_heads, mask=mask)
    h = BL.layer_norm(x, *ln2)
    return h + mlp(h, *mlp_weights)  # the MLP's residual adds the normalised stream

def block_named_steps(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    """Alternative: every step named, own LayerNorm and MLP written inline."""
    def ln(v, w, b):
        mu = v.mean(dim=-1, keepdim=True)
        return (v - mu) / torch.sqrt(((v - mu) ** 2).mean(dim=-1, keepdim=True) + 1e-5) * w + b

    W_up, b_up, W_down, b_down = mlp_weights
    attended = self_attention(ln(x, *ln1), *attn_weights, n_heads, mask=mask)
    stream = x + attended
    hidden = torch.nn.functional.gelu(ln(stream, *ln2) @ W_up + b_up)
    return stream + (hidden @ W_down + b_down)


def block_heads_loop(x, ln1, attn_weights, ln2, mlp_weights, n_heads, mask=None):
    """Alternative: attention with a loop over the heads and masked_fill."""
    W_Q, W_K, W_V, W_O = attn_weights
    h = BL.layer_norm(x, *ln1)
    D = x.shape[-1]
    d_head = D // n_heads
    outs = []
    for i in range(n_heads):
        cols = slice(i * d_head, (i + 1) * d_head)
        q, k, v = h @ W_Q[:, cols], h @ W_K[:, cols], h @ W_V[:, cols]
        scores = q @ k.transpose(-2, -1) / d_head ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        outs.append(torch.softmax(scores, dim=-1) @ v)
    x = x + torch.cat(outs, dim=-1) @ W_O
    return x + mlp(BL.layer_norm(x, *ln2), *mlp_weights)


def _block_case(gen, B, T, D, n_heads, d_mlp, causal, group, note):
    def ln():
        return (1.0 + _randn(gen, D, scale=0.3), _randn(gen, D, scale=0.2))

    ln1 = ln()
    attn_weights = tuple(_randn(gen, D, D, scale=D ** -0.5) for _ in range(4))
    ln2 = ln()
    mlp_weights = (_randn(gen, D, d_mlp, scale=D ** -0.5), _randn(gen, d_mlp, scale=0.2),
                   _randn(gen, d_mlp, D, scale=d_mlp ** -0.5), _randn(gen, D, scale=0.2))
    x = _randn(gen, B, T, D)
    kwargs = {"mask": causal_mask(T)} if causal else {}
    return Case((x, ln1, attn_weights, ln2, mlp_weights, n_heads), kwargs, group, note)


def _block_cases(gen, hidden):
    cases = [_block_case(gen, 2, 4, 8, 2, 32, False, "no mask", "B=2, T=4, d_model=8, 2 heads")]
    if hidden:
        cases.append(_block_case(gen, 3, 6, 16, 4, 64, False, "no mask", "B=3, T=6, d_model=16, 4 heads"))
        cases.append(_block_case(gen, 1, 5, 12, 3, 20, False, "no mask", "d_mlp=20"))
    cases.append(_block_case(gen, 2, 5, 8, 2, 32, True, "causal mask", "with mask=causal_mask(5)"))
    if hidden:
        cases.append(_block_case(gen, 2, 7, 16, 2, 48, True, "causal mask", "causal, d_mlp=48"))
    return cases


TRANSFORMER_BLOCK = Exercise(
    id="07.transformer_block", notebook=NOTEBOOK, function="transformer_block", points=3,
    title="The pre-norm transformer block", minutes=12,
    reference=transformer_block, make_cases=_block_cases, atol=1e-4, rtol=1e-4,
    alternatives=[Alternative("every step named, LayerNorm and MLP inline", block_named_steps),
                  Alternative("a loop over the heads with masked_fill", block_heads_loop)],
    forbidden=[Forbidden("a ready-made block (nn.TransformerEncoderLayer, course_lib's EncoderBlock)",
                         ("torch.nn.TransformerEncoderLayer", "course_lib.blocks.EncoderBlock"),
                         "write the two residual lines yourself")],
    mistakes=[
        KnownMistake("post-norm instead of pre-norm",
                     "You normalise after adding (x = LN1(x + attn(x))), the original paper's post-norm. "
                     "A pre-norm block normalises each sub-layer's INPUT and leaves the stream alone: "
                     "x = x + attn(LN1(x)); x = x + mlp(LN2(x)).", block_post_norm),
        KnownMistake("missing residual connections",
                     "Your block replaces x by the sub-layer outputs. Each sub-layer ADDS to the residual "
                     "stream: x = x + attn(LN1(x)), then x = x + mlp(LN2(x)).", block_no_residual),
        KnownMistake("missing residual around the MLP",
                     "The attention output is added to x, but the MLP's output replaces x. Add it too: "
                     "x = x + mlp(LN2(x)).", block_attention_residual_only),
        KnownMistake("MLP reads the block's input",
                     "Your MLP reads the block's input instead of the stream after attention (a 'parallel' "
                     "block). First update x with the attention, then x = x + mlp(LN2(x)) with the new x.",
                     block_parallel),
        KnownMistake("mask ignored",
                     "You do not pass `mask` to the attention, so a position can see the future under a "
                     "causal mask: self_attention(LN1(x), ..., n_heads, mask=mask).", block_mask_ignored),
        KnownMistake("same LayerNorm twice",
                     "You use ln1 before the MLP as well. Each sub-layer has its own LayerNorm with its own "
                     "gain and bias: ln1 before attention, ln2 before the MLP.", block_same_norm_twice),
        KnownMistake("the stream itself normalised",
                     "You overwrite x with LN(x) and then add the sub-layer to the normalised x. Keep the "
                     "un-normalised x on the residual path: x = x + attn(LN1(x)).",
                     block_stream_normalised),
        KnownMistake("one residual around both sub-layers",
                     "You add x only once, around attention and MLP together: x + mlp(LN2(attn(LN1(x)))). Each "
                     "sub-layer has its own residual: x = x + attn(LN1(x)), then x = x + mlp(LN2(x)).",
                     block_one_residual),
        KnownMistake("MLP's residual adds the block's input",
                     "Your MLP reads the updated stream, but its residual adds the block's INPUT x, so the attention "
                     "update is lost. Keep the updated stream: h = x + attn(LN1(x)); return h + mlp(LN2(h)).",
                     block_mlp_residual_from_input),
        KnownMistake("missing residual around the attention",
                     "The attention output replaces x instead of being added to it. Add it: "
                     "x = x + attn(LN1(x)), then x = x + mlp(LN2(x)).", block_attention_residual_missing),
        KnownMistake("no LayerNorm before the MLP",
                     "Your MLP reads the stream x directly. In a pre-norm block each sub-layer reads a normalised "
                     "copy: x = x + mlp(LN2(x)) with ln2's weight and bias.", block_no_ln2),
        KnownMistake("no LayerNorm before the attention",
                     "Your attention reads the stream x directly. In a pre-norm block each sub-layer reads a "
                     "normalised copy: x = x + attn(LN1(x)) with ln1's weight and bias.", block_no_ln1),
        KnownMistake("LayerNorm on the sub-layers' outputs",
                     "You normalise what the sub-layers return (x + LN(attn(x)))). A pre-norm block normalises "
                     "their INPUT: x = x + attn(LN1(x)), then x = x + mlp(LN2(x)).", block_norm_on_outputs),
        KnownMistake("ln1 and ln2 swapped",
                     "You use ln2 before the attention and ln1 before the MLP. ln1 belongs to the first sub-layer "
                     "(attention), ln2 to the second (the MLP).", block_norms_swapped),
        KnownMistake("MLP before the attention",
                     "Your block runs the MLP first. The order is attention first (positions exchange "
                     "information), then the MLP (each position on its own): x = x + attn(LN1(x)); "
                     "x = x + mlp(LN2(x)).", block_mlp_first),
        KnownMistake("LayerNorm on the block's output",
                     "You normalise the block's output with ln2. In a pre-norm block the stream itself is never "
                     "normalised inside the block (the model applies one final LayerNorm after the LAST block): "
                     "return x + mlp(LN2(x)) as it is.", block_final_norm),
        KnownMistake("mask inverted",
                     "You pass ~mask. In this course's masks True means 'may attend' (causal_mask(T) is True on "
                     "and below the diagonal): pass mask as it is.", block_mask_inverted),
        KnownMistake("MLP's residual adds the normalised stream",
                     "Your MLP's residual adds LN2(x) instead of x. The residual path carries the un-normalised "
                     "stream: x = x + mlp(LN2(x)).", block_mlp_residual_normalised),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 07.count_by_category
# ---------------------------------------------------------------------------------------------------


def count_one_head(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    return P.count_by_category(n_layers, d_model, 1, d_head, d_mlp, vocab_size)


def count_d_model_squared(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    return P.count_by_category(n_layers, d_model, 1, d_model, d_mlp, vocab_size)


def count_mlp_4x(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    return P.count_by_category(n_layers, d_model, n_heads, d_head, 4 * d_model, vocab_size)


def count_layers_forgotten(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    return P.count_by_category(1, d_model, n_heads, d_head, d_mlp, vocab_size)


def count_unembedding_tied(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    c = P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    c["total"] -= c["unembedding"]
    c["unembedding"] = 0
    return c


def count_total_without_unembedding(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    c = P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    c["total"] -= c["unembedding"]
    return c


def count_embedding_per_layer(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    c = P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    extra = (n_layers - 1) * vocab_size * d_model
    c["embedding"] += extra
    c["unembedding"] += extra
    c["total"] += 2 * extra
    return c


def count_mlp_biases(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    c = P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    c["up_projection"] += n_layers * d_mlp
    c["down_projection"] += n_layers * d_model
    c["total"] += n_layers * (d_mlp + d_model)
    return c


def count_floats(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    return {k: float(v) for k, v in P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size).items()}


def count_output_d_model_squared(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    c = P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    c["total"] += n_layers * d_model * d_model - c["output"]
    c["output"] = n_layers * d_model * d_model
    return c


def count_mlp_in_one_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    c = P.count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    c["up_projection"] += c["down_projection"]
    c["down_projection"] = 0
    return c

def count_loop_over_layers(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    """Alternative: add up layer by layer."""
    out = {k: 0 for k in P.CATEGORIES}
    out["embedding"] = vocab_size * d_model
    out["unembedding"] = d_model * vocab_size
    for _ in range(n_layers):
        for k in ("query", "key", "value", "output"):
            out[k] += d_model * (n_heads * d_head)
        out["up_projection"] += d_model * d_mlp
        out["down_projection"] += d_mlp * d_model
    out["total"] = sum(out.values())
    return out


def count_dict_literal(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size):
    """Alternative: one literal, the total spelled out."""
    attn, mlp_ = n_layers * n_heads * d_head * d_model, n_layers * d_mlp * d_model
    total = 2 * vocab_size * d_model + 4 * attn + 2 * mlp_
    return dict(embedding=vocab_size * d_model, key=attn, query=attn, value=attn, output=attn,
                up_projection=mlp_, down_projection=mlp_, unembedding=vocab_size * d_model, total=total)


def _count_cases(gen, hidden):
    cases = [Case((96, 12288, 96, 128, 4 * 12288, 50257), {}, "GPT-3", "GPT-3 175B")]
    xl = next(row for row in P.GPT3_TABLE if row.name == "GPT-3 XL")  # printed with n_heads * d_head != d_model
    cases.append(Case((xl.n_layers, xl.d_model, xl.n_heads, xl.d_head, 4 * xl.d_model, P.GPT3_VOCAB_SIZE), {},
                      "GPT-3", "GPT-3 XL as printed (24 heads of 128 but d_model 2048)"))
    if hidden:
        for row in P.GPT3_TABLE[:-1]:
            if row is xl:
                continue
            cases.append(Case((row.n_layers, row.d_model, row.n_heads, row.d_head, 4 * row.d_model,
                               P.GPT3_VOCAB_SIZE), {}, "GPT-3", row.name))
    cases.append(Case((2, 12, 2, 4, 20, 50), {}, "general",
                      "a tiny model with d_model != n_heads * d_head and d_mlp != 4 * d_model"))
    if hidden:
        for _ in range(3):
            L, H, Dh = (int(torch.randint(1, 9, (1,), generator=gen)) for _ in range(3))
            D = H * Dh + int(torch.randint(1, 5, (1,), generator=gen))
            d_mlp = int(torch.randint(1, 5 * D, (1,), generator=gen))
            if d_mlp == 4 * D:
                d_mlp += 1
            V = int(torch.randint(10, 1000, (1,), generator=gen))
            cases.append(Case((L, D, H, Dh, d_mlp, V), {}, "general", f"L={L}, D={D}, H={H}, d_head={Dh}"))
    # n_layers != n_heads (every case above has them equal): one layer's heads and one head's layers differ
    cases.append(Case((3, 16, 2, 8, 40, 100), {}, "general", "3 layers of 2 heads (n_layers != n_heads)"))
    return cases


def _total_is_sum(case, out, derived) -> bool:
    return out["total"] == sum(out[k] for k in P.CATEGORIES)


COUNT_BY_CATEGORY = Exercise(
    id="07.count_by_category", notebook=NOTEBOOK, function="count_by_category", points=2,
    title="Counting GPT-3's parameters by category", minutes=10,
    reference=P.count_by_category, make_cases=_count_cases, atol=0.0, rtol=0.0,
    alternatives=[Alternative("a loop over the layers", count_loop_over_layers),
                  Alternative("one dict literal", count_dict_literal)],
    properties=[Property("total is the sum of the eight categories",
                         "out['total'] should equal the sum of the eight category counts", _total_is_sum,
                         fires_for=("total without the unembedding",))],
    mistakes=[
        KnownMistake("one head only",
                     "Your W_Q, W_K, W_V, W_O counts are those of a single head. Each layer has n_heads heads "
                     "of d_head columns: d_model * n_heads * d_head weights per matrix per layer.",
                     count_one_head),
        KnownMistake("d_model squared for attention",
                     "You count d_model * d_model per attention matrix, which is only right when "
                     "d_model == n_heads * d_head. Use d_model * n_heads * d_head.", count_d_model_squared),
        KnownMistake("MLP width assumed to be 4 * d_model",
                     "You use 4 * d_model for the MLP width. Use the d_mlp argument (GPT-3 happens to have "
                     "d_mlp = 4 * d_model, other models do not).", count_mlp_4x),
        KnownMistake("layers forgotten",
                     "Your attention and MLP counts are those of one layer. Multiply them by n_layers "
                     "(the embedding and unembedding exist once).", count_layers_forgotten),
        KnownMistake("unembedding not counted",
                     "You count the unembedding as 0 (as if tied to the embedding). In this lesson's table "
                     "it is its own category: d_model * vocab_size.", count_unembedding_tied),
        KnownMistake("total without the unembedding",
                     "Every category is right but your total leaves out the unembedding. The total is the sum of all "
                     "eight categories: sum(out[k] for k in the eight keys).", count_total_without_unembedding),
        KnownMistake("embedding counted in every layer",
                     "You multiply the embedding and the unembedding by n_layers. They exist once, at the bottom and "
                     "the top of the stack: vocab_size * d_model each.", count_embedding_per_layer),
        KnownMistake("MLP biases counted",
                     "Your MLP counts include the biases (d_mlp and d_model per layer). The table counts only the "
                     "weight MATRICES: d_model * d_mlp per layer for each of W_up and W_down.", count_mlp_biases),
        KnownMistake("counts as floats",
                     "Your counts are floats (a `/` somewhere, or float()). Counts of weights are whole numbers: use "
                     "integer arithmetic (`*` and `//`) or int(...), so that 175181291520 prints without a .0 and "
                     "stays exact.", count_floats),
        KnownMistake("W_O counted as d_model * d_model",
                     "Your W_Q, W_K, W_V counts are right but W_O is d_model * d_model per layer. W_O maps the "
                     "concatenated heads, n_heads * d_head wide, back to d_model: n_heads * d_head * d_model.",
                     count_output_d_model_squared),
        KnownMistake("both MLP matrices counted as up_projection",
                     "You put W_up and W_down together under up_projection and 0 under down_projection. Each has "
                     "its own category: d_model * d_mlp per layer each.", count_mlp_in_one_category),
    ],
)

register(LAYER_NORM, MLP, TRANSFORMER_BLOCK, COUNT_BY_CATEGORY)
