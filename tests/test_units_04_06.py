"""The exercise references of units 04-06 that are written out in the unit modules agree with
independent implementations (PyTorch's own attention, course_lib's modules), and the checks catch the
shortcuts they forbid."""

import pytest
import torch
import torch.nn.functional as F

from course_lib import attention as A
from course_lib import positional as P
from course_lib.exercises import get, run_local
from course_lib.exercises.core import FORBIDDEN
from course_lib.exercises import unit04_masking as U4
from course_lib.exercises import unit05_multi_head_attention as U5
from course_lib.exercises import unit06_positional_encoding as U6


def test_masked_attention_matches_torch_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4, generator=g) for _ in range(3))
    am = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    mask = A.combine_masks(A.causal_mask(6), A.padding_mask(am))  # (2, 1, 6, 6), no fully masked row
    out, w = U4.masked_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6))


def test_masked_attention_fully_masked_rows_match_course_lib():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 5, 4, generator=g) for _ in range(3))
    am = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding: query 0, 1 of row 0 see nothing
    mask = A.combine_masks(A.causal_mask(5), A.padding_mask(am)[:, 0])
    out, w = U4.masked_attention(q, k, v, mask)
    ref_out, ref_w = A.scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    assert not torch.isnan(out).any() and (out[0, :2] == 0).all()


def test_causal_padding_mask_matches_hand_written_rule():
    am = torch.tensor([[1, 1, 0], [0, 1, 1]])
    m = U4.causal_padding_mask(am)
    assert m.shape == (2, 1, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert bool(m[b, 0, i, j]) == (j <= i and am[b, j] == 1)


def test_exercise_mha_equals_course_lib_and_torch():
    torch.manual_seed(0)
    ours = U5.MultiHeadAttention(12, 3)
    lib = A.MultiHeadAttention(12, 3)
    lib.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 12)
    mask = A.causal_mask(7)
    torch.testing.assert_close(ours(x, mask), lib(x, mask=mask))
    # and torch's nn.MultiheadAttention with the same weights (its bool mask means "blocked")
    mha = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([ours.W_Q.weight, ours.W_K.weight, ours.W_V.weight]))
        mha.in_proj_bias.copy_(torch.cat([ours.W_Q.bias, ours.W_K.bias, ours.W_V.bias]))
        mha.out_proj.weight.copy_(ours.W_O.weight)
        mha.out_proj.bias.copy_(ours.W_O.bias)
    want, _ = mha(x, x, x, attn_mask=~mask, need_weights=False)
    torch.testing.assert_close(ours(x, mask), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("d_model,n_heads,bias", [(12, 3, True), (16, 4, False), (768, 12, True)])
def test_parameter_count_matches_torch(d_model, n_heads, bias):
    m = torch.nn.MultiheadAttention(d_model, n_heads, bias=bias)
    assert U5.mha_parameter_count(d_model, n_heads, bias) == sum(p.numel() for p in m.parameters())


def test_add_positions_matches_learned_embedding_module():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(11, 8)
    pos = P.LearnedPositionalEmbedding(16, 8)
    ids = torch.randint(0, 11, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(U6.add_positions(ids, emb.weight, pos.weight), emb(ids) + pos(9))
    with pytest.raises(ValueError, match="T=9"):
        U6.add_positions(ids, emb.weight, pos.weight[:5])


def test_sinusoidal_mistakes_really_differ_from_the_table():
    pe = P.sinusoidal_encoding(12, 8)
    for fn in (U6.pe_swapped, U6.pe_concatenated, U6.pe_exponent_halved, U6.pe_from_one,
               U6.pe_per_column_exponent, U6.pe_times_instead_of_divided):
        assert (fn(12, 8) - pe).abs().max() > 0.1, fn.__name__


@pytest.mark.parametrize("exercise_id,shortcut", [
    ("04.masked_attention",
     lambda q, k, v, mask: A.scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)),
    ("05.split_heads", lambda x, n_heads: A.split_heads(x, n_heads)),
    ("06.sinusoidal_encoding", lambda n, d, base=10000.0: P.sinusoidal_encoding(n, d, base)),
])
def test_course_lib_shortcuts_are_forbidden(exercise_id, shortcut):
    report = run_local(get(exercise_id), shortcut)
    assert report.status == FORBIDDEN, report.message


def test_course_lib_module_shortcut_is_forbidden():
    class Sneaky(torch.nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.inner = A.MultiHeadAttention(d_model, n_heads)

        def load_state_dict(self, state, strict=True):
            return self.inner.load_state_dict(state, strict=strict)

        def forward(self, x, mask=None):
            return self.inner(x, mask=mask)

    report = run_local(get("05.MultiHeadAttention"), Sneaky)
    assert report.status == FORBIDDEN, report.message
