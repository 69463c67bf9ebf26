"""course_lib.blocks against torch.nn.LayerNorm, TransformerEncoderLayer and TransformerDecoderLayer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache, MultiHeadAttention, causal_mask, combine_masks, padding_mask
from course_lib.blocks import MLP, DecoderBlock, EncoderBlock, LayerNorm, gelu, gelu_new, layer_norm

D, NH, DMLP = 16, 4, 40


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


# --------------------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize("eps", [1e-5, 1e-12, 0.1])
def test_layernorm_equals_torch(eps):
    torch.manual_seed(0)
    ours, ref = LayerNorm(D, eps=eps), nn.LayerNorm(D, eps=eps)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
        ours.weight.copy_(ref.weight)
        ours.bias.copy_(ref.bias)
    x = randn(3, 5, D) * 4 + 10  # far from mean 0 / variance 1
    close(ours(x), ref(x))


def test_layernorm_defaults_and_parameters():
    ln = LayerNorm(D)
    assert ln.eps == 1e-5 and torch.equal(ln.weight, torch.ones(D)) and torch.equal(ln.bias, torch.zeros(D))
    y = ln(randn(4, D) * 3 + 2)
    close(y.mean(-1), torch.zeros(4))
    close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-4)


def test_layernorm_eps_inside_sqrt_and_biased_variance():
    """Buggy variants differ from torch on a low-variance input; ours does not."""
    x = randn(2, 8) * 0.1
    w, b, eps = torch.ones(8), torch.zeros(8), 0.1
    ref = F.layer_norm(x, (8,), w, b, eps)
    mu = x.mean(-1, keepdim=True)
    eps_outside = (x - mu) / (x.var(-1, unbiased=False, keepdim=True).sqrt() + eps)
    unbiased = (x - mu) / (x.var(-1, unbiased=True, keepdim=True) + eps).sqrt()
    close(layer_norm(x, w, b, eps), ref)
    assert not torch.allclose(eps_outside, ref, atol=1e-3)
    assert not torch.allclose(unbiased, ref, atol=1e-3)


def test_layernorm_gradient_equals_torch():
    x1 = (randn(3, D) * 2).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    g = randn(3, D, seed=1)
    (LayerNorm(D)(x1) * g).sum().backward()
    (nn.LayerNorm(D)(x2) * g).sum().backward()
    close(x1.grad, x2.grad)


def test_layernorm_rejects_wrong_size():
    with pytest.raises(ValueError, match=r"last dim d_model=16"):
        LayerNorm(D)(torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"weight and bias must have shape \(8,\)"):
        layer_norm(torch.zeros(2, 8), torch.ones(4), torch.zeros(4))


# --------------------------------------------------------------------------- MLP


def test_gelu_variants_equal_torch():
    x = torch.linspace(-6, 6, 101)
    close(gelu(x), F.gelu(x))
    close(gelu_new(x), F.gelu(x, approximate="tanh"))
    assert not torch.allclose(gelu(x), gelu_new(x), atol=1e-5)


@pytest.mark.parametrize("activation, fn", [("gelu", F.gelu), ("relu", F.relu),
                                            ("gelu_new", lambda x: F.gelu(x, approximate="tanh"))])
def test_mlp_equals_formula(activation, fn):
    torch.manual_seed(0)
    mlp = MLP(D, DMLP, activation=activation)
    x = randn(2, 3, D)
    expected = F.linear(fn(F.linear(x, mlp.up.weight, mlp.up.bias)), mlp.down.weight, mlp.down.bias)
    close(mlp(x), expected)


def test_mlp_defaults_and_errors():
    mlp = MLP(D)
    assert mlp.up.weight.shape == (4 * D, D) and mlp.down.weight.shape == (D, 4 * D)
    assert MLP(D, bias=False).up.bias is None
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP(D, activation="swishy")
    with pytest.raises(ValueError, match="last dim d_model=16"):
        mlp(torch.zeros(2, 3, 8))
    custom = MLP(D, activation=torch.tanh)
    x = randn(2, D)
    close(custom(x), custom.down(torch.tanh(custom.up(x))))


# --------------------------------------------------------------------------- encoder block vs torch


def copy_mha(mine: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        for lin, w, b in zip((mine.W_Q, mine.W_K, mine.W_V), ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mine.W_O.weight.copy_(ref.out_proj.weight)
        mine.W_O.bias.copy_(ref.out_proj.bias)


def copy_common(mine, ref, lns):
    """Randomise torch's zero biases / unit norms so a mix-up cannot hide, then copy them over."""
    with torch.no_grad():
        for p in ref.parameters():
            if p.dim() == 1:
                p.normal_()
        mine.mlp.up.weight.copy_(ref.linear1.weight)
        mine.mlp.up.bias.copy_(ref.linear1.bias)
        mine.mlp.down.weight.copy_(ref.linear2.weight)
        mine.mlp.down.bias.copy_(ref.linear2.bias)
        for ours, theirs in lns:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)


def encoder_pair(norm_first: bool):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, NH, DMLP, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=norm_first).eval()
    mine = EncoderBlock(D, NH, DMLP, norm_first=norm_first).eval()
    copy_common(mine, ref, [(mine.ln1, ref.norm1), (mine.ln2, ref.norm2)])
    copy_mha(mine.attn, ref.self_attn)
    return mine, ref


KEEP = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "causal", "padding", "causal+padding"])
def test_encoder_block_equals_torch(norm_first, masks):
    mine, ref = encoder_pair(norm_first)
    causal = causal_mask(6) if "causal" in masks else None
    pad = padding_mask(KEEP) if "padding" in masks else None
    x1 = randn(2, 6, D, seed=3).requires_grad_()  # requires_grad also keeps torch off its fast path
    x2 = x1.detach().clone().requires_grad_()
    out = mine(x1, mask=combine_masks(causal, pad))
    ref_out = ref(x2, src_mask=None if causal is None else ~causal,
                  src_key_padding_mask=None if pad is None else KEEP == 0)
    close(out, ref_out)
    g = randn(2, 6, D, seed=4)
    (out * g).sum().backward()
    (ref_out * g).sum().backward()
    close(x1.grad, x2.grad, atol=1e-4)


def test_encoder_block_structure():
    block = EncoderBlock(D, NH)
    assert isinstance(block.attn, MultiHeadAttention) and isinstance(block.mlp, MLP)
    assert isinstance(block.ln1, LayerNorm) and isinstance(block.ln2, LayerNorm)
    assert block.mlp.d_mlp == 4 * D
    with pytest.raises(ValueError, match="not divisible"):
        EncoderBlock(10, 3)


def test_encoder_block_kv_cache_equals_full_causal():
    mine, _ = encoder_pair(True)
    x = randn(2, 6, D, seed=3)
    full = mine(x, mask=causal_mask(6))
    cache = KVCache()
    steps = [mine(x[:, :2], mask=causal_mask(2), kv_cache=cache)]
    steps += [mine(x[:, t:t + 1], kv_cache=cache) for t in range(2, 6)]
    close(torch.cat(steps, 1), full)


# --------------------------------------------------------------------------- decoder block vs torch


def decoder_pair(norm_first: bool):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(D, NH, DMLP, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=norm_first).eval()
    mine = DecoderBlock(D, NH, DMLP, norm_first=norm_first).eval()
    copy_common(mine, ref, [(mine.ln1, ref.norm1), (mine.ln2, ref.norm2), (mine.ln3, ref.norm3)])
    copy_mha(mine.self_attn, ref.self_attn)
    copy_mha(mine.cross_attn, ref.multihead_attn)
    return mine, ref


SRC_KEEP = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]])
TGT_KEEP = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("tgt_padding", [False, True])
def test_decoder_block_equals_torch(norm_first, tgt_padding):
    mine, ref = decoder_pair(norm_first)
    x1, mem1 = randn(2, 5, D, seed=1).requires_grad_(), randn(2, 7, D, seed=2).requires_grad_()
    x2, mem2 = (t.detach().clone().requires_grad_() for t in (x1, mem1))
    self_mask = combine_masks(causal_mask(5), padding_mask(TGT_KEEP) if tgt_padding else None)
    out = mine(x1, mem1, self_mask=self_mask, memory_mask=padding_mask(SRC_KEEP))
    ref_out = ref(x2, mem2, tgt_mask=~causal_mask(5), memory_key_padding_mask=SRC_KEEP == 0,
                  tgt_key_padding_mask=(TGT_KEEP == 0) if tgt_padding else None)
    close(out, ref_out)
    g = randn(2, 5, D, seed=4)
    (out * g).sum().backward()
    (ref_out * g).sum().backward()
    close(x1.grad, x2.grad, atol=1e-4)
    close(mem1.grad, mem2.grad, atol=1e-4)
    assert torch.equal(mem1.grad[1, 3:], torch.zeros(4, D))  # padded memory is never read


def test_decoder_block_cross_attention_weights_are_kept():
    mine, _ = decoder_pair(True)
    mine(randn(2, 5, D), randn(2, 7, D), self_mask=causal_mask(5), memory_mask=padding_mask(SRC_KEEP))
    w = mine.cross_attn.last_weights
    assert w.shape == (2, NH, 5, 7)
    assert torch.equal(w[1, :, :, 3:], torch.zeros(NH, 5, 4))
    close(w.sum(-1), torch.ones(2, NH, 5))


def test_decoder_block_kv_cache_equals_full():
    mine, _ = decoder_pair(True)
    x, mem = randn(2, 5, D, seed=1), randn(2, 7, D, seed=2)
    full = mine(x, mem, self_mask=causal_mask(5))
    cache = KVCache()
    steps = [mine(x[:, t:t + 1], mem, kv_cache=cache) for t in range(5)]
    close(torch.cat(steps, 1), full)


def test_dropout_is_active_only_in_training():
    block = EncoderBlock(D, NH, dropout=0.5)
    x = randn(2, 6, D)
    block.eval()
    assert torch.equal(block(x), block(x))
    block.train()
    assert not torch.allclose(block(x), block(x))


def test_the_fast_kernels_in_the_modules_equal_the_spelled_out_math():
    """LayerNorm and the MLP's activations use fused kernels; they must equal the textbook functions."""
    from course_lib.blocks import ACTIVATIONS, LayerNorm, gelu, gelu_new, layer_norm

    torch.manual_seed(0)
    x = torch.randn(3, 7, 16, requires_grad=True) * 3
    ln = LayerNorm(16, eps=1e-5)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    torch.testing.assert_close(ln(x), layer_norm(x, ln.weight, ln.bias, 1e-5), atol=1e-5, rtol=1e-5)
    g1 = torch.autograd.grad(ln(x).square().sum(), x)[0]
    g2 = torch.autograd.grad(layer_norm(x, ln.weight, ln.bias, 1e-5).square().sum(), x)[0]
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ACTIVATIONS["gelu"](x), gelu(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ACTIVATIONS["gelu_new"](x), gelu_new(x), atol=1e-5, rtol=1e-5)
