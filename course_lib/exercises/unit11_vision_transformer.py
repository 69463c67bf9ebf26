"""Exercises of unit 11: the vision transformer and the captioner's cross-attention.

* ``11.patchify``        cut images into p x p patches and flatten each one (the order a Conv2d uses);
* ``11.vit_embed``       project the patches, put a learned [CLS] in front and add learned positions;
* ``11.cross_attention`` the captioner's step: queries from the words, keys and values from the patches.

Weights passed explicitly use the maths convention ``y = x @ W + b`` with ``W`` of shape (in, out).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import vit as V
from .core import Case, Exercise, Forbidden, KnownMistake, Property
from .core import randn as _randn
from .registry import register

try:  # the framework's Alternative (issue 11); a stand-in with the same fields until it lands
    from .core import Alternative
except ImportError:  # pragma: no cover - depends on the framework's progress

    @dataclasses.dataclass(frozen=True)
    class Alternative:  # type: ignore[no-redef]
        name: str
        fn: Callable


NOTEBOOK = "11_vision_transformer"


def _supported(cls, **kwargs) -> dict:
    """The keyword arguments ``cls`` (a dataclass) knows: lets this file use the framework API of issue 11
    (``alternatives=``, ``fires_for=``) whether or not that part has landed yet."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in kwargs.items() if k in names}


def _exercise(**kwargs) -> Exercise:
    return Exercise(**_supported(Exercise, **kwargs))


def _property(**kwargs) -> Property:
    return Property(**_supported(Property, **kwargs))


# ---------------------------------------------------------------------------------------------------
# 11.patchify
# ---------------------------------------------------------------------------------------------------


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """images (B, C, H, W) -> patches (B, N, C*p*p), patches row by row, each patch channel by channel
    and each channel row by row (``course_lib.vit.patchify``)::

        patches[b, r * (W/p) + c, ch * p*p + i * p + j] = images[b, ch, r*p + i, c*p + j]
    """
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, i, cols, j)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, i, j)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)


def _permuted(images: Tensor, p: int, order: tuple) -> Tensor:
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, i, cols, j) = axes 0 1 2 3 4 5
    return x.permute(order).reshape(B, (H // p) * (W // p), C * p * p)


def patchify_plain_reshape(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    return images.reshape(B, (H // p) * (W // p), C * p * p)


def patchify_channels_last(images, patch_size):
    return _permuted(images, patch_size, (0, 2, 4, 3, 5, 1))  # pixels (i, j, ch)


def patchify_column_order(images, patch_size):
    return _permuted(images, patch_size, (0, 4, 2, 1, 3, 5))  # patches column by column


def patchify_transposed_patches(images, patch_size):
    return _permuted(images, patch_size, (0, 2, 4, 1, 5, 3))  # each patch read column by column


def patchify_by_unfold(images, patch_size):
    """F.unfold lists each window's values channel-major, windows row by row: exactly patchify, transposed."""
    return F.unfold(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)


def patchify_by_loops(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    rows = []
    for r in range(H // p):
        for c in range(W // p):
            rows.append(images[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(B, -1))  # (B, C*p*p)
    return torch.stack(rows, dim=1)


def patchify_by_tensor_unfold(images, patch_size):
    p = patch_size
    x = images.unfold(2, p, p).unfold(3, p, p)  # (B, C, rows, cols, p, p)
    B, C, R, Cc = x.shape[:4]
    return x.permute(0, 2, 3, 1, 4, 5).reshape(B, R * Cc, C * p * p)


def _patch_case(gen, B, C, H, W, p, group, note):
    return Case((_randn(gen, B, C, H, W), p), {}, group, note)


def _patch_cases(gen, hidden):
    cases = [_patch_case(gen, 2, 3, 8, 8, 4, "square images", "2 RGB 8x8 images, 4x4 patches")]
    if hidden:
        cases.append(_patch_case(gen, 3, 3, 12, 12, 4, "square images", "3 RGB 12x12 images"))
    cases.append(_patch_case(gen, 2, 2, 6, 9, 3, "rectangular images", "6x9 images, 2 channels, 3x3 patches"))
    if hidden:
        cases.append(_patch_case(gen, 1, 3, 4, 10, 2, "rectangular images", "4x10 images, 2x2 patches"))
    cases.append(_patch_case(gen, 2, 1, 8, 8, 2, "one channel", "grey 8x8 images, 2x2 patches"))
    if hidden:
        cases.append(_patch_case(gen, 4, 1, 12, 6, 3, "one channel", "grey 12x6 images, 3x3 patches"))
    return cases


PATCHIFY = _exercise(
    id="11.patchify", notebook=NOTEBOOK, function="patchify", points=3,
    title="Cut an image into patch vectors", minutes=12,
    reference=patchify, make_cases=_patch_cases,
    forbidden=[Forbidden("course_lib's patchify (course_lib.vit.patchify)", ("course_lib.vit.patchify",),
                         "this exercise asks you to cut the patches yourself with reshape and permute")],
    mistakes=[
        KnownMistake("plain reshape, no permute",
                     "You reshaped (B, C, H, W) straight to (B, N, C*p*p). That cuts the memory into runs of "
                     "consecutive values (a piece of one image row, then the next), not into p x p squares. "
                     "Split H into (H/p, p) and W into (W/p, p) first, move the two patch-grid axes in front "
                     "with permute, then flatten.", patchify_plain_reshape),
        KnownMistake("patches flattened channels last",
                     "Each patch vector lists its pixels as (row, column, channel); a Conv2d kernel (and the "
                     "task) lists them channel by channel: (channel, row, column). Permute to "
                     "(B, rows, cols, C, p, p) before flattening.", patchify_channels_last),
        KnownMistake("patches in column order",
                     "Your patches go down the first column of the image, then the second. Number them row by "
                     "row like the words of a page: patch n = r * (W/p) + c.", patchify_column_order),
        KnownMistake("each patch transposed",
                     "Inside each patch you read the pixels column by column. Keep each channel's rows in "
                     "order: index ch*p*p + i*p + j holds pixel (row i, column j).", patchify_transposed_patches),
    ],
    alternatives=[Alternative("F.unfold, transposed", patchify_by_unfold),
                  Alternative("a loop over the patch grid", patchify_by_loops),
                  Alternative("Tensor.unfold twice", patchify_by_tensor_unfold)],
)


# ---------------------------------------------------------------------------------------------------
# 11.vit_embed
# ---------------------------------------------------------------------------------------------------


def vit_embed(patches: Tensor, W_patch: Tensor, b_patch: Tensor, cls_token: Tensor, pos_emb: Tensor) -> Tensor:
    """ViT's input tokens::

        x      = patches @ W_patch + b_patch            (B, N, D)     one projection for every patch
        tokens = concat([cls_token], x)                 (B, 1 + N, D) [CLS] at position 0
        tokens = tokens + pos_emb                       (B, 1 + N, D) every token gets its position, [CLS] too

    patches (B, N, P), W_patch (P, D), b_patch (D,), cls_token (D,), pos_emb (1 + N, D).
    """
    if patches.dim() != 3 or pos_emb.shape != (patches.shape[1] + 1, W_patch.shape[1]):
        raise ValueError(f"pos_emb must have shape (1 + N, D) = ({patches.shape[1] + 1}, {W_patch.shape[1]}), "
                         f"got {tuple(pos_emb.shape)}")
    x = patches @ W_patch + b_patch  # (B, N, D)
    cls = cls_token.expand(patches.shape[0], 1, -1)  # (B, 1, D)
    return torch.cat([cls, x], dim=1) + pos_emb  # (B, 1 + N, D)


def embed_cls_without_position(patches, W_patch, b_patch, cls_token, pos_emb):
    x = patches @ W_patch + b_patch + pos_emb[1:]
    return torch.cat([cls_token.expand(patches.shape[0], 1, -1), x], dim=1)


def embed_cls_last(patches, W_patch, b_patch, cls_token, pos_emb):
    x = patches @ W_patch + b_patch
    return torch.cat([x, cls_token.expand(patches.shape[0], 1, -1)], dim=1) + pos_emb


def embed_positions_before_cls(patches, W_patch, b_patch, cls_token, pos_emb):
    x = patches @ W_patch + b_patch + pos_emb[:-1]  # patches take rows 0..N-1, [CLS] gets none
    return torch.cat([cls_token.expand(patches.shape[0], 1, -1), x], dim=1)


def embed_no_bias(patches, W_patch, b_patch, cls_token, pos_emb):
    return vit_embed(patches, W_patch, torch.zeros_like(b_patch), cls_token, pos_emb)


def embed_bias_on_cls_too(patches, W_patch, b_patch, cls_token, pos_emb):
    return vit_embed(patches, W_patch, b_patch, cls_token + b_patch, pos_emb)


def embed_by_filling(patches, W_patch, b_patch, cls_token, pos_emb):
    B, N, _ = patches.shape
    out = torch.empty(B, N + 1, W_patch.shape[1], dtype=patches.dtype)
    out[:, 0] = cls_token + pos_emb[0]
    out[:, 1:] = torch.einsum("bnp,pd->bnd", patches, W_patch) + b_patch + pos_emb[1:]
    return out


def embed_by_linear(patches, W_patch, b_patch, cls_token, pos_emb):
    x = F.linear(patches, W_patch.T, b_patch)  # (B, N, D)
    cls = cls_token.reshape(1, 1, -1).repeat(patches.shape[0], 1, 1)
    return torch.cat((cls, x), 1) + pos_emb.unsqueeze(0)


def _embed_case(gen, B, N, P, D, group, note):
    return Case((_randn(gen, B, N, P), _randn(gen, P, D, scale=P ** -0.5), _randn(gen, D, scale=0.5),
                 _randn(gen, D), _randn(gen, N + 1, D)), {}, group, note)


def _embed_cases(gen, hidden):
    cases = [_embed_case(gen, 2, 4, 12, 8, "basic", "2 images of 4 patches, P=12, D=8")]
    if hidden:
        cases.append(_embed_case(gen, 3, 9, 27, 16, "basic", "3 images of 9 patches"))
    cases.append(_embed_case(gen, 3, 16, 4, 6, "many patches", "16 patches of 4 values, D=6"))
    if hidden:
        cases.append(_embed_case(gen, 2, 25, 8, 12, "many patches", "25 patches, D=12"))
    return cases


VIT_EMBED = _exercise(
    id="11.vit_embed", notebook=NOTEBOOK, function="vit_embed", points=3,
    title="Patch tokens, a [CLS] token and learned positions", minutes=10,
    reference=vit_embed, make_cases=_embed_cases,
    mistakes=[
        KnownMistake("[CLS] without a position",
                     "You add pos_emb[1:] to the patches but nothing to [CLS]. pos_emb has 1 + N rows: row 0 "
                     "belongs to [CLS]. Prepend [CLS] first, then add the whole table.",
                     embed_cls_without_position),
        KnownMistake("[CLS] at the end",
                     "[CLS] goes FIRST (position 0, as in BERT): the head reads tokens[:, 0]. Concatenate "
                     "[cls, patches], not [patches, cls].", embed_cls_last),
        KnownMistake("positions added before [CLS] is prepended",
                     "You gave the patches rows 0..N-1 of pos_emb and [CLS] none: every patch now carries its "
                     "neighbour's position. Prepend [CLS], then add pos_emb (row 0 to [CLS], row 1 + n to patch "
                     "n).", embed_positions_before_cls),
        KnownMistake("patch bias forgotten",
                     "The projection is patches @ W_patch + b_patch; the bias is missing.", embed_no_bias),
        KnownMistake("bias added to [CLS]",
                     "[CLS] is a learned vector of its own, not a projected patch: add b_patch to the projected "
                     "patches only.", embed_bias_on_cls_too),
    ],
    alternatives=[Alternative("fill an empty tensor, einsum", embed_by_filling),
                  Alternative("F.linear and repeat", embed_by_linear)],
)


# ---------------------------------------------------------------------------------------------------
# 11.cross_attention
# ---------------------------------------------------------------------------------------------------


def cross_attention(x: Tensor, memory: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, W_O: Tensor,
                    n_heads: int) -> tuple[Tensor, Tensor]:
    """Multi-head cross-attention from the caption's words to the image's patches::

        Q = x W_Q        (B, T, D)  from the words: "what am I looking for?"
        K = memory W_K   (B, N, D)  from the patches: "what do I contain?"
        V = memory W_V   (B, N, D)
        split into H heads of d_head = D / H              (B, H, T, d_head), (B, H, N, d_head)
        A = softmax(Q K^T / sqrt(d_head)) over the patches  (B, H, T, N)  no mask: a word may look anywhere
        out = concat_h(A V) W_O                          (B, T, D)

    Returns ``(out, A)``. Head h uses columns h*d_head .. (h+1)*d_head of W_Q, W_K, W_V.
    """
    B, T, D = x.shape
    N = memory.shape[1]
    H = n_heads
    dh = D // H
    q = (x @ W_Q).reshape(B, T, H, dh).transpose(1, 2)  # (B, H, T, dh)
    k = (memory @ W_K).reshape(B, N, H, dh).transpose(1, 2)  # (B, H, N, dh)
    v = (memory @ W_V).reshape(B, N, H, dh).transpose(1, 2)  # (B, H, N, dh)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, T, N)
    weights = torch.softmax(scores, dim=-1)  # each word's weights over the patches sum to 1
    z = (weights @ v).transpose(1, 2).reshape(B, T, D)  # (B, T, D) heads side by side
    return z @ W_O, weights


def xattn_queries_from_image(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return cross_attention(memory, x, W_Q, W_K, W_V, W_O, n_heads)


def xattn_self_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return cross_attention(x, x, W_Q, W_K, W_V, W_O, n_heads)


def _xattn_with(x, memory, W_Q, W_K, W_V, W_O, n_heads, *, scale=None, axis=-1, causal=False):
    B, T, D = x.shape
    N, H = memory.shape[1], n_heads
    dh = D // H
    q = (x @ W_Q).reshape(B, T, H, dh).transpose(1, 2)
    k = (memory @ W_K).reshape(B, N, H, dh).transpose(1, 2)
    v = (memory @ W_V).reshape(B, N, H, dh).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / (math.sqrt(dh) if scale is None else scale)
    if causal:
        scores = scores.masked_fill(torch.ones(T, N, dtype=torch.bool).triu(1), float("-inf"))
    weights = torch.softmax(scores, dim=axis)
    z = (weights @ v).transpose(1, 2).reshape(B, T, D)
    return z @ W_O, weights


def xattn_causal_mask(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return _xattn_with(x, memory, W_Q, W_K, W_V, W_O, n_heads, causal=True)


def xattn_softmax_over_words(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return _xattn_with(x, memory, W_Q, W_K, W_V, W_O, n_heads, axis=-2)


def xattn_no_scaling(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return _xattn_with(x, memory, W_Q, W_K, W_V, W_O, n_heads, scale=1.0)


def xattn_scaled_by_d_model(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return _xattn_with(x, memory, W_Q, W_K, W_V, W_O, n_heads, scale=math.sqrt(x.shape[-1]))


def xattn_by_head_loop(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    D = x.shape[-1]
    dh = D // n_heads
    outs, weights = [], []
    for h in range(n_heads):
        cols = slice(h * dh, (h + 1) * dh)
        q, k, v = x @ W_Q[:, cols], memory @ W_K[:, cols], memory @ W_V[:, cols]  # (B, T, dh), (B, N, dh)
        a = torch.softmax(torch.einsum("btd,bnd->btn", q, k) * dh ** -0.5, dim=-1)
        outs.append(a @ v)
        weights.append(a)
    return torch.cat(outs, dim=-1) @ W_O, torch.stack(weights, dim=1)


def xattn_by_course_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    from ..attention import merge_heads, scaled_dot_product_attention, split_heads

    q, k, v = (split_heads(t, n_heads) for t in (x @ W_Q, memory @ W_K, memory @ W_V))
    z, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    return merge_heads(z) @ W_O, w


def _xattn_case(gen, B, T, N, D, H, group, note):
    s = D ** -0.5
    return Case((_randn(gen, B, T, D), _randn(gen, B, N, D), _randn(gen, D, D, scale=2 * s),
                 _randn(gen, D, D, scale=2 * s), _randn(gen, D, D, scale=s), _randn(gen, D, D, scale=s), H),
                {}, group, note)


def _xattn_cases(gen, hidden):
    cases = [_xattn_case(gen, 2, 5, 9, 8, 2, "basic", "5 words, 9 patches, D=8, 2 heads")]
    if hidden:
        cases.append(_xattn_case(gen, 3, 7, 16, 16, 4, "basic", "7 words, 16 patches, 4 heads"))
    cases.append(_xattn_case(gen, 2, 6, 4, 12, 3, "fewer patches than words", "6 words, 4 patches, 3 heads"))
    if hidden:
        cases.append(_xattn_case(gen, 1, 8, 3, 8, 1, "fewer patches than words", "8 words, 3 patches, 1 head"))
    return cases


def _rows_sum_to_one(case, out, derived) -> bool:
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], Tensor)):
        return True  # not a pair (out, weights): reported as such, not as a softmax problem
    weights = out[1]
    return bool(torch.allclose(weights.double().sum(dim=-1), torch.ones((), dtype=torch.float64), atol=1e-5))


CROSS_ATTENTION = _exercise(
    id="11.cross_attention", notebook=NOTEBOOK, function="cross_attention", points=4,
    title="The captioner's cross-attention: words look at patches", minutes=15,
    reference=cross_attention, make_cases=_xattn_cases, atol=1e-5, rtol=1e-4,
    forbidden=[Forbidden("a built-in attention (F.scaled_dot_product_attention, nn.MultiheadAttention)",
                         ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention"),
                         "write the cross-attention from matrix products and a softmax")],
    properties=[_property(name="each word's weights sum to one",
                          message="for each word (query) and head, the weights over the patches (the last axis) "
                                  "must sum to 1: take the softmax over the patches (dim=-1)",
                          holds=_rows_sum_to_one, fires_for=("softmax over the words", "scores returned instead of weights"))],
    mistakes=[
        KnownMistake("queries from the image",
                     "Your queries come from the patches and the keys and values from the words, so you get one "
                     "output per PATCH (B, N, D). In the captioner the words ask: Q = x @ W_Q from the text, "
                     "K and V from memory (the image).", xattn_queries_from_image),
        KnownMistake("keys and values from the words (self-attention)",
                     "You attend from the words to the words: K and V must come from memory, the image's "
                     "patch vectors, so the weights have shape (B, H, T, N).", xattn_self_attention),
        KnownMistake("causal mask in cross-attention",
                     "You masked the weights with a causal (upper-triangle) mask. The causal mask belongs to the "
                     "decoder's SELF-attention (a word must not see later words); every word may look at every "
                     "patch of the image.", xattn_causal_mask),
        KnownMistake("softmax over the words",
                     "Your softmax runs over the words (dim=-2). Each word distributes its attention over the "
                     "patches: softmax over the last axis.", xattn_softmax_over_words),
        KnownMistake("no 1/sqrt(d_head) scaling",
                     "Divide the scores Q K^T by sqrt(d_head) before the softmax.", xattn_no_scaling),
        KnownMistake("scaled by sqrt(d_model)",
                     "Each head's scores are scaled by sqrt(d_head) = sqrt(D / n_heads), not sqrt(D).",
                     xattn_scaled_by_d_model),
    ],
    alternatives=[Alternative("a loop over heads with einsum", xattn_by_head_loop),
                  Alternative("course_lib's split_heads and scaled_dot_product_attention", xattn_by_course_attention)],
)

# ---------------------------------------------------------------------------------------------------
# More known mistakes, found by trying learners' answers that appear nowhere in the project (issue 11)
# ---------------------------------------------------------------------------------------------------


def patchify_channel_after_row(images, patch_size):
    return _permuted(images, patch_size, (0, 2, 4, 3, 1, 5))  # pixels (i, ch, j)


def patchify_grid_split_backwards(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, p, H // p, p, W // p)  # (p, H/p) instead of (H/p, p)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(B, (H // p) * (W // p), C * p * p)


def patchify_unfold_not_transposed(images, patch_size):
    return F.unfold(images, kernel_size=patch_size, stride=patch_size)  # (B, C*p*p, N)


def patchify_overlapping(images, patch_size):
    return F.unfold(images, kernel_size=patch_size).transpose(1, 2)  # stride 1


def patchify_height_width_swapped(images, patch_size):
    return patchify(images.transpose(2, 3), patch_size)


PATCHIFY.mistakes = tuple(PATCHIFY.mistakes) + (
    KnownMistake("channel axis after the pixel rows",
                 "Inside each patch your values go (row, channel, column). The order is channel by channel, then "
                 "row, then column: permute to (B, rows, cols, C, i, j), i.e. permute(0, 2, 4, 1, 3, 5).",
                 patchify_channel_after_row),
    KnownMistake("grid split as (p, H/p)",
                 "You split H into (p, H/p); the patch-grid row comes FIRST: reshape(B, C, H // p, p, W // p, p). "
                 "(Row r*p + i of the image is grid row r, pixel row i.)", patchify_grid_split_backwards),
    KnownMistake("F.unfold not transposed",
                 "F.unfold returns (B, C*p*p, N), one COLUMN per patch. The task asks for (B, N, C*p*p), one row per "
                 "patch: add .transpose(1, 2).", patchify_unfold_not_transposed),
    KnownMistake("overlapping windows (stride 1)",
                 "Your windows overlap: F.unfold's stride defaults to 1. Patches tile the image without overlap: "
                 "stride=patch_size, giving N = (H/p) * (W/p) patches.", patchify_overlapping),
    KnownMistake("height and width swapped",
                 "You read the image with H and W swapped (a transpose(2, 3) or (B, C, W, H) reshape): patches go "
                 "row by row of the image as it is, images[b, ch, r*p + i, c*p + j].", patchify_height_width_swapped),
)


def embed_cls_position_for_all(patches, W_patch, b_patch, cls_token, pos_emb):
    x = patches @ W_patch + b_patch
    return torch.cat([cls_token.expand(patches.shape[0], 1, -1), x], dim=1) + pos_emb[0]


def embed_positions_twice(patches, W_patch, b_patch, cls_token, pos_emb):
    x = patches @ W_patch + b_patch + pos_emb[1:]
    return torch.cat([cls_token.expand(patches.shape[0], 1, -1), x], dim=1) + pos_emb


def embed_positions_rolled(patches, W_patch, b_patch, cls_token, pos_emb):
    return vit_embed(patches, W_patch, b_patch, cls_token, torch.roll(pos_emb, 1, dims=0))


VIT_EMBED.mistakes = tuple(VIT_EMBED.mistakes) + (
    KnownMistake("[CLS]'s position added to every token",
                 "You add pos_emb[0] (one row, broadcast) to every token, so all tokens get the same position. Add "
                 "the whole table pos_emb (1 + N, D): row 0 to [CLS], row 1 + n to patch n.",
                 embed_cls_position_for_all),
    KnownMistake("positions added twice",
                 "The patches got their positions twice: once before [CLS] was prepended (pos_emb[1:]) and again "
                 "with the whole table. Add pos_emb once, after the concatenation.", embed_positions_twice),
    KnownMistake("positions shifted by one",
                 "Your position rows are off by one ([CLS] gets the last row, patch n row n). Row 0 is [CLS]'s, "
                 "row 1 + n patch n's: add pos_emb as it is after prepending [CLS].", embed_positions_rolled),
)


def xattn_merged_without_transpose(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    B, T, D = x.shape
    _, weights = cross_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads)
    v = (memory @ W_V).reshape(B, memory.shape[1], n_heads, D // n_heads).transpose(1, 2)
    return (weights @ v).reshape(B, T, D) @ W_O, weights  # (B, H, T, dh) read as (B, T, D)


def xattn_split_without_transpose(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    B, T, D = x.shape
    N, dh = memory.shape[1], D // n_heads
    q = (x @ W_Q).reshape(B, n_heads, T, dh)
    k = (memory @ W_K).reshape(B, n_heads, N, dh)
    v = (memory @ W_V).reshape(B, n_heads, N, dh)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dh), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(B, T, D) @ W_O, weights


def xattn_no_output_projection(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    D = x.shape[-1]
    return cross_attention(x, memory, W_Q, W_K, W_V, torch.eye(D, dtype=x.dtype), n_heads)


def xattn_scores_returned(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    B, T, D = x.shape
    dh = D // n_heads
    q = (x @ W_Q).reshape(B, T, n_heads, dh).transpose(1, 2)
    k = (memory @ W_K).reshape(B, memory.shape[1], n_heads, dh).transpose(1, 2)
    out, _ = cross_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads)
    return out, q @ k.transpose(-2, -1) / math.sqrt(dh)


def xattn_weights_averaged(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    out, weights = cross_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads)
    return out, weights.mean(dim=1)


def xattn_values_with_W_K(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return cross_attention(x, memory, W_Q, W_K, W_K, W_O, n_heads)


def xattn_weights_transposed(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return cross_attention(x, memory, W_Q.T, W_K.T, W_V.T, W_O.T, n_heads)


def xattn_weights_not_returned(x, memory, W_Q, W_K, W_V, W_O, n_heads):
    return cross_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads)[0]


CROSS_ATTENTION.mistakes = tuple(CROSS_ATTENTION.mistakes) + (
    KnownMistake("heads merged without moving the head axis back",
                 "You reshaped (B, H, T, d_head) straight to (B, T, D), which mixes words and heads. Transpose first: "
                 "(A @ V).transpose(1, 2).reshape(B, T, D) puts each word's heads side by side.",
                 xattn_merged_without_transpose),
    KnownMistake("heads split by a plain reshape",
                 "You reshaped (B, T, D) straight to (B, H, T, d_head): that cuts the sequence, not the features, "
                 "into heads. Reshape to (B, T, H, d_head), then transpose(1, 2).", xattn_split_without_transpose),
    KnownMistake("output projection W_O missing",
                 "After putting the heads side by side, multiply by W_O: out = concat_h(A V) @ W_O.",
                 xattn_no_output_projection),
    KnownMistake("scores returned instead of weights",
                 "The second output must be the attention WEIGHTS, softmax(Q K^T / sqrt(d_head)) over the patches; "
                 "you returned the scores before the softmax.", xattn_scores_returned),
    KnownMistake("weights averaged over the heads",
                 "Return every head's weights, shape (B, H, T, N), not their mean over the heads (B, T, N).",
                 xattn_weights_averaged),
    KnownMistake("values computed with W_K",
                 "Your values use W_K (a copy-paste slip): V = memory @ W_V.", xattn_values_with_W_K),
    KnownMistake("weight matrices transposed",
                 "You used x @ W.T (the nn.Linear habit). The weights are given as (in, out): Q = x @ W_Q, "
                 "K = memory @ W_K, V = memory @ W_V, out = ... @ W_O.", xattn_weights_transposed),
    KnownMistake("weights not returned",
                 "Return a pair (out, weights): the output (B, T, D) and the attention weights (B, H, T, N).",
                 xattn_weights_not_returned),
)


ALTERNATIVES = {ex.id: alts for ex, alts in (
    (PATCHIFY, [patchify_by_unfold, patchify_by_loops, patchify_by_tensor_unfold]),
    (VIT_EMBED, [embed_by_filling, embed_by_linear]),
    (CROSS_ATTENTION, [xattn_by_head_loop, xattn_by_course_attention]),
)}

register(PATCHIFY, VIT_EMBED, CROSS_ATTENTION)
