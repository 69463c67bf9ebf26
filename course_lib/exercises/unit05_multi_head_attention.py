"""Exercises of unit 05: multi-head attention.

The classic bugs of multi-head attention are silent: ``x.reshape(B, H, T, Dh)`` has the right shape but
mixes tokens and heads; merging without transposing back scrambles the heads; scaling by sqrt(d_model)
instead of sqrt(d_head) flattens every pattern. Each is a known mistake below.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import attention as A
from .core import (Alternative, Call, Case, Exercise, Forbidden, KnownMistake, ModuleInputs, Property, call_watched, compare,
                   materialize)
from .registry import register
from .core import randn as _randn  # shared case helpers

NOTEBOOK = "05_multi_head_attention"

READY_MADE_MHA = Forbidden(
    "a ready-made multi-head attention (nn.MultiheadAttention, F.scaled_dot_product_attention or "
    "course_lib's MultiHeadAttention)",
    ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward",
     "torch.nn.functional.scaled_dot_product_attention", "course_lib.attention.MultiHeadAttention"),
    "this exercise asks you to wire the heads yourself (course_lib's scaled_dot_product_attention, "
    "split_heads and merge_heads are fine)",
)
EINOPS = Forbidden(
    "einops.rearrange",
    ("einops.rearrange", "einops.einops.rearrange"),
    "this exercise is about view/reshape and transpose; do it with torch",
)


# ---------------------------------------------------------------------------------------------------
# 05.split_heads
# ---------------------------------------------------------------------------------------------------


def split_reshape_only(x, n_heads):
    B, T, D = x.shape
    return x.reshape(B, n_heads, T, D // n_heads)  # right shape, wrong numbers


def split_no_transpose(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads)  # (B, T, H, Dh)


def split_interleaved(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, D // n_heads, n_heads).permute(0, 3, 1, 2)  # head h gets features h, h+H, ...


def split_keys_layout(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).permute(0, 2, 3, 1)  # (B, H, Dh, T): time last


def split_sizes_swapped(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, D // n_heads, n_heads).transpose(1, 2)  # Dh "heads" of size H


# correct, written differently
def split_permute(x, n_heads):
    B, T, D = x.shape
    return x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)


def split_chunks(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)  # H chunks of (B, T, Dh) -> (B, H, T, Dh)


def split_unflatten(x, n_heads):
    return x.unflatten(-1, (n_heads, x.shape[-1] // n_heads)).transpose(1, 2)


def _split_cases(gen, hidden):
    cases = [Case((torch.arange(24.0).view(1, 3, 8), 2), {}, "small", "x = arange(24) as (1, 3, 8), 2 heads")]
    shapes = [(2, 5, 12, 3), (1, 4, 16, 4)] + ([(3, 7, 16, 4), (1, 9, 30, 5), (4, 6, 8, 8)] if hidden else [])
    for B, T, D, H in shapes:
        cases.append(Case((_randn(gen, B, T, D), H), {}, "random", f"(B, T, D) = {(B, T, D)}, {H} heads"))
    cases.append(Case((_randn(gen, 2, 4, 6), 1), {}, "one head", "a single head: (B, 1, T, D)"))
    return cases


def _split_then_merge(case, out, derived) -> bool:
    x = case.args[0]
    return bool(torch.equal(A.merge_heads(out), x))


SPLIT_HEADS = Exercise(
    id="05.split_heads", notebook=NOTEBOOK, function="split_heads", points=2,
    title="Splitting d_model into heads", minutes=10,
    reference=A.split_heads, make_cases=_split_cases, forbidden=[EINOPS],
    properties=[Property("merge undoes split", "merge_heads(split_heads(x, H)) must give back x exactly",
                         _split_then_merge,
                         fires_for=("reshape without transpose", "transpose forgotten", "heads interleaved",
                                    "(B, H, Dh, T) instead of (B, H, T, Dh)"))],
    alternatives=[Alternative("reshape(B, T, H, -1).permute(0, 2, 1, 3)", split_permute),
                  Alternative("torch.stack of chunks", split_chunks),
                  Alternative("unflatten then transpose", split_unflatten)],
    mistakes=[
        KnownMistake("reshape without transpose",
                     "You reshape (B, T, D) straight to (B, H, T, Dh). The shape is right, but the numbers "
                     "are not: memory is laid out token by token, so 'head 0' now holds the first T*Dh "
                     "numbers (whole tokens), mixing tokens and heads. Cut the LAST axis first, "
                     "x.view(B, T, H, Dh), then swap the head and time axes with .transpose(1, 2).",
                     split_reshape_only),
        KnownMistake("transpose forgotten",
                     "Your output has shape (B, T, H, Dh): the heads are cut correctly but the head axis "
                     "must come before time, (B, H, T, Dh), so that each head is its own (T, Dh) problem. "
                     "Add .transpose(1, 2).",
                     split_no_transpose),
        KnownMistake("heads interleaved",
                     "You cut D as (Dh, H), so head h gets the features h, h+H, h+2H, ... Each head owns a "
                     "CONTIGUOUS block of Dh features: view(B, T, H, Dh), not view(B, T, Dh, H).",
                     split_interleaved),
        KnownMistake("(B, H, Dh, T) instead of (B, H, T, Dh)",
                     "Your heads are cut correctly but time ended up LAST, (B, H, Dh, T): the layout of k^T, "
                     "not of q, k and v. Only swap the time and head axes: view(B, T, H, Dh).transpose(1, 2).",
                     split_keys_layout),
        KnownMistake("n_heads and d_head swapped",
                     "You cut D into d_head pieces of size n_heads: view(B, T, D // H, H). The head axis "
                     "must have n_heads entries, each of size d_head = D // H: view(B, T, H, D // H).",
                     split_sizes_swapped),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 05.merge_heads
# ---------------------------------------------------------------------------------------------------


def merge_no_transpose(x):
    B, H, T, Dh = x.shape
    return x.reshape(B, T, H * Dh)  # right shape, tokens and heads mixed


def merge_interleaved(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * Dh)  # feature-major instead of head-major


def merge_summed(x):
    return x.sum(dim=1)  # (B, T, Dh)


def merge_mean(x):
    return x.mean(dim=1)  # (B, T, Dh)


def merge_along_time(x):
    return torch.cat(x.unbind(dim=1), dim=1)  # (B, H * T, Dh): heads stacked along time


def merge_not_flattened(x):
    return x.transpose(1, 2)  # (B, T, H, Dh): the last two axes never joined


# correct, written differently
def merge_permute_contiguous_view(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * Dh)


def merge_cat(x):
    return torch.cat(x.unbind(dim=1), dim=-1)  # head 0's features, then head 1's, ...


def merge_flatten(x):
    return x.transpose(1, 2).flatten(start_dim=2)


def _merge_cases(gen, hidden):
    cases = [Case((torch.arange(24.0).view(1, 2, 3, 4),), {}, "small",
                  "x = arange(24) as (B, H, T, Dh) = (1, 2, 3, 4)")]
    shapes = [(2, 3, 5, 4), (1, 4, 4, 4)] + ([(3, 4, 7, 2), (1, 6, 9, 5), (2, 8, 3, 8)] if hidden else [])
    for B, H, T, Dh in shapes:
        cases.append(Case((_randn(gen, B, H, T, Dh),), {}, "random", f"(B, H, T, Dh) = {(B, H, T, Dh)}"))
    return cases


def _merge_then_split(case, out, derived) -> bool:
    x = case.args[0]
    return bool(torch.equal(A.split_heads(out, x.shape[1]), x))


MERGE_HEADS = Exercise(
    id="05.merge_heads", notebook=NOTEBOOK, function="merge_heads", points=2,
    title="Concatenating the heads again", minutes=5,
    reference=A.merge_heads, make_cases=_merge_cases, forbidden=[EINOPS],
    properties=[Property("split undoes merge", "split_heads(merge_heads(z), H) must give back z exactly",
                         _merge_then_split,
                         fires_for=("merge without transpose back", "heads interleaved",
                                    "heads summed instead of concatenated", "heads averaged instead of concatenated",
                                    "heads stacked along time", "last two axes not joined"))],
    alternatives=[Alternative("permute, contiguous, view", merge_permute_contiguous_view),
                  Alternative("torch.cat of the heads", merge_cat),
                  Alternative("transpose then flatten", merge_flatten)],
    mistakes=[
        KnownMistake("merge without transpose back",
                     "You reshape (B, H, T, Dh) straight to (B, T, D). Memory is still laid out head by "
                     "head, so token 0 now gets pieces of several tokens of head 0. First move time back "
                     "in front, x.transpose(1, 2) -> (B, T, H, Dh), then .reshape(B, T, H * Dh) "
                     "(.view fails after a transpose: the tensor is not contiguous).",
                     merge_no_transpose),
        KnownMistake("heads interleaved",
                     "Your features are ordered (Dh, H): feature 0 of every head, then feature 1, ... "
                     "Concatenate whole heads: transpose(1, 2) gives (B, T, H, Dh), then reshape.",
                     merge_interleaved),
        KnownMistake("heads summed instead of concatenated",
                     "You add the heads up, giving (B, T, Dh). Multi-head attention concatenates them side "
                     "by side into (B, T, H * Dh); W_O then mixes them.",
                     merge_summed),
        KnownMistake("heads averaged instead of concatenated",
                     "You average the heads, giving (B, T, Dh). Concatenate them into (B, T, H * Dh).",
                     merge_mean),
        KnownMistake("heads stacked along time",
                     "You concatenate the heads along the TIME axis, giving (B, H * T, Dh). Each token must "
                     "get all heads' features side by side: concatenate along the last axis, "
                     "torch.cat(z.unbind(1), dim=-1), or transpose(1, 2) then reshape(B, T, H * Dh).",
                     merge_along_time),
        KnownMistake("last two axes not joined",
                     "You transposed back to (B, T, H, Dh) but stopped there. Join the last two axes: "
                     ".reshape(B, T, H * Dh).",
                     merge_not_flattened),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 05.MultiHeadAttention (a module)
# ---------------------------------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """Self-attention with H heads, ``forward(x (B, T, D), mask=None) -> (B, T, D)``.

    The same parameters (W_Q, W_K, W_V, W_O: nn.Linear(D, D) with bias) and the same numbers as
    course_lib's MultiHeadAttention (tests/test_units_04_06.py checks it), whose forward takes
    ``(x_q, x_kv=None, mask=None, ...)``; written out here (not a subclass) so that building or calling
    course_lib's module from a learner's code is caught as a ready-made shortcut::

        q, k, v = split_heads(x W_Q), split_heads(x W_K), split_heads(x W_V)   (B, H, T, Dh)
        z = softmax(q k^T / sqrt(Dh), blocked scores -> -inf) v              (B, H, T, Dh)
        out = merge_heads(z) W_O                                               (B, T, D)
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        if n_heads <= 0 or d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.W_Q = nn.Linear(d_model, d_model, bias=bias)  # all heads' W_Q^h side by side
        self.W_K = nn.Linear(d_model, d_model, bias=bias)
        self.W_V = nn.Linear(d_model, d_model, bias=bias)
        self.W_O = nn.Linear(d_model, d_model, bias=bias)  # mixes the concatenated heads

    def forward(self, x, mask=None):  # noqa: D102
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, T, T) -> (B, 1, T, T): the same for every head
        q = A.split_heads(self.W_Q(x), self.n_heads)  # (B, H, T, Dh)
        k = A.split_heads(self.W_K(x), self.n_heads)  # (B, H, T, Dh)
        v = A.split_heads(self.W_V(x), self.n_heads)  # (B, H, T, Dh)
        z = A.scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, Dh)
        return self.W_O(A.merge_heads(z))  # (B, T, D)


class _Inputs(ModuleInputs):
    """ModuleInputs that compare by value (dataclass equality on dicts of tensors is ambiguous)."""

    def __eq__(self, other):
        if not isinstance(other, ModuleInputs):
            return NotImplemented
        return (self.init == other.init and list(self.state) == list(other.state)
                and compare(list(self.state.values()), list(other.state.values())) is None
                and compare(list(self.args), list(other.args)) is None)

    __hash__ = None


class _ModuleExercise(Exercise):
    """A module exercise whose stub is "not attempted" even though its parameters may not load.

    ``Exercise.invoke`` loads the state_dict before calling forward; a half-written class whose
    parameters are missing would then fail with a state_dict error although its forward is still the
    stub. Here a failed load is followed by a plain forward call: a stub still raises
    NotImplementedError (not attempted); anything else gets a message naming the expected parameters.
    """

    def plan(self, cases):
        """The calls, with plain ModuleInputs (the autograder's wire format knows that exact type)."""
        calls = super().plan(cases)
        return [Call(tuple(ModuleInputs(a.init, a.state, a.args) if isinstance(a, ModuleInputs) else a
                           for a in c.args), c.kwargs, c.case_index, c.property_name) for c in calls]

    def _invoke_here(self, obj, call: Call, forbidden=(), keep_inputs=None):
        """Build, load and call the learner's module (``Exercise.invoke`` seeds the global RNG around it)."""
        spec = materialize(call.args)[0]
        if not isinstance(spec, ModuleInputs):
            raise TypeError("module exercises take a ModuleInputs as their only argument")
        if keep_inputs is not None:
            keep_inputs.append((spec.args, {}))  # forward's inputs, to see whether it changed them

        def run():
            module = obj(**spec.init)
            try:
                module.load_state_dict(spec.state, strict=True)
            except RuntimeError:
                module.eval()
                with torch.no_grad():
                    module(*spec.args)  # a stub raises NotImplementedError here
                want = ", ".join(f"{n} {tuple(t.shape)}" for n, t in spec.state.items())
                have = ", ".join(f"{n} {tuple(t.shape)}" for n, t in module.state_dict().items()) or "none"
                raise ValueError(f"{obj.__name__} must define exactly these parameters: {want}; "
                                 f"yours are: {have}") from None
            module.eval()
            with torch.no_grad():
                return module(*spec.args)

        return call_watched(run, (), {}, forbidden)


def _qkv(m, x):
    return m.W_Q(x), m.W_K(x), m.W_V(x)  # (B, T, D) each


class MHAReshapeOnly(MultiHeadAttention):
    def forward(self, x, mask=None):
        B, T, D = x.shape
        H, Dh = self.n_heads, self.d_head
        q, k, v = (t.reshape(B, H, T, Dh) for t in _qkv(self, x))  # no transpose
        z = A.scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, Dh)
        return self.W_O(z.reshape(B, T, D))


class MHANoOutput(MultiHeadAttention):
    def forward(self, x, mask=None):
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))
        return A.merge_heads(A.scaled_dot_product_attention(q, k, v, mask=mask))  # W_O missing


class MHAScaleDModel(MultiHeadAttention):
    def forward(self, x, mask=None):
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))
        q = q * math.sqrt(self.d_head) / math.sqrt(self.d_model)  # net scale 1/sqrt(d_model)
        return self.W_O(A.merge_heads(A.scaled_dot_product_attention(q, k, v, mask=mask)))


class MHAOneHead(MultiHeadAttention):
    def forward(self, x, mask=None):
        q, k, v = _qkv(self, x)  # (B, T, D): one big head
        if mask is not None and mask.dim() == 4:
            mask = mask[:, 0]
        return self.W_O(A.scaled_dot_product_attention(q, k, v, mask=mask))


class MHAMaskIgnored(MultiHeadAttention):
    def forward(self, x, mask=None):
        return super().forward(x, mask=None)


def _scores(q, k, scale):
    return q @ k.transpose(-2, -1) / scale  # (B, H, T, T)


class MHAMaskAdded(MultiHeadAttention):
    def forward(self, x, mask=None):
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))
        scores = _scores(q, k, math.sqrt(self.d_head))
        if mask is not None:
            scores = scores + mask  # a bool mask added: True -> +1, nothing blocked
        return self.W_O(A.merge_heads(torch.softmax(scores, dim=-1) @ v))


class MHAMaskInverted(MultiHeadAttention):
    def forward(self, x, mask=None):
        return super().forward(x, mask=None if mask is None else ~mask)


class MHAUnscaled(MultiHeadAttention):
    def forward(self, x, mask=None):
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))
        q = q * math.sqrt(self.d_head)  # cancels the 1/sqrt(d_head): no scaling at all
        return self.W_O(A.merge_heads(A.scaled_dot_product_attention(q, k, v, mask=mask)))


class MHAMergedFeatureMajor(MultiHeadAttention):
    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))
        z = A.scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, Dh)
        return self.W_O(z.permute(0, 2, 3, 1).reshape(B, T, D))  # features ordered (Dh, H)


class MHASplitReshapeOnly(MultiHeadAttention):
    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (t.reshape(B, self.n_heads, T, self.d_head) for t in _qkv(self, x))  # split: no transpose
        return self.W_O(A.merge_heads(A.scaled_dot_product_attention(q, k, v, mask=mask)))  # merge: right


class MHAMergeReshapeOnly(MultiHeadAttention):
    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))  # split: right
        return self.W_O(A.scaled_dot_product_attention(q, k, v, mask=mask).reshape(B, T, D))  # no transpose back


class MHASoftmaxOverQueries(MultiHeadAttention):
    def forward(self, x, mask=None):
        q, k, v = (A.split_heads(t, self.n_heads) for t in _qkv(self, x))
        scores = _scores(q, k, math.sqrt(self.d_head))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(torch.softmax(scores, dim=-2), nan=0.0)  # columns sum to 1, not rows
        return self.W_O(A.merge_heads(weights @ v))


class MHAWithResidual(MultiHeadAttention):
    def forward(self, x, mask=None):
        return x + super().forward(x, mask)  # the block adds the residual, not the attention module


# correct, written differently
class MHAHeadLoop(nn.Module):
    """One head at a time, with slices of the big matrices, then concatenated."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x, mask=None):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)  # (B, T, D)
        heads = []
        for h in range(self.n_heads):
            cols = slice(h * self.d_head, (h + 1) * self.d_head)
            scores = q[..., cols] @ k[..., cols].transpose(-2, -1) / math.sqrt(self.d_head)  # (B, T, T)
            if mask is not None:
                m = mask[:, 0] if mask.dim() == 4 else mask  # (B, 1, 1, T) -> (B, 1, T)
                scores = scores.masked_fill(~m, float("-inf"))
            heads.append(torch.softmax(scores, dim=-1) @ v[..., cols])  # (B, T, Dh)
        return self.W_O(torch.cat(heads, dim=-1))


class MHAEinsum(nn.Module):
    """einsum for the scores and the weighted sum; masked with torch.where."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (W(x).reshape(B, T, self.n_heads, self.d_head).permute(0, 2, 1, 3)
                   for W in (self.W_Q, self.W_K, self.W_V))  # (B, H, T, Dh)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / self.d_head ** 0.5
        if mask is not None:
            scores = torch.where(mask, scores, torch.tensor(float("-inf")))
        z = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, dim=-1), v)
        return self.W_O(z.permute(0, 2, 1, 3).reshape(B, T, D))


def _mha_state(gen, d_model, n_heads):
    ref = MultiHeadAttention(d_model, n_heads)
    with torch.no_grad():
        for p in ref.parameters():  # seeded from the case generator, not the global RNG
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(d_model))
        ref.W_Q.weight.mul_(2.0)  # sharper patterns, so that scale mistakes show
    return {k: v.clone() for k, v in ref.state_dict().items()}


def _mha_cases(gen, hidden):
    cases = []
    configs = [(2, 5, 8, 2, None)] + ([(3, 7, 12, 3, None), (1, 9, 16, 4, None)] if hidden else [])
    configs += [(2, 6, 12, 3, "causal")] + ([(2, 10, 16, 2, "causal")] if hidden else [])
    configs += [(3, 5, 8, 4, "padding")] + ([(2, 7, 12, 2, "padding")] if hidden else [])
    for B, T, D, H, kind in configs:
        state = _mha_state(gen, D, H)
        x = _randn(gen, B, T, D)
        if kind is None:
            args, group, note = (x,), "no mask", f"(B, T, D) = {(B, T, D)}, {H} heads"
        elif kind == "causal":
            args, group, note = (x, A.causal_mask(T)), "masked", f"causal mask, (B, T, D) = {(B, T, D)}, {H} heads"
        else:
            am = torch.ones(B, T, dtype=torch.long)
            am[1:, T - 2:] = 0
            args, group, note = (x, A.padding_mask(am)), "masked", f"padding mask (B, 1, 1, T), {H} heads"
        cases.append(Case((_Inputs(dict(d_model=D, n_heads=H), state, args),), {}, group, note))
    # a batch of one sequence: the output stays (1, T, D) (a .squeeze() drops the axis); drawn last
    state = _mha_state(gen, 8, 2)
    cases.append(Case((_Inputs(dict(d_model=8, n_heads=2), state, (_randn(gen, 1, 4, 8),)),), {}, "no mask",
                      "a batch of one: (B, T, D) = (1, 4, 8), 2 heads"))
    return cases


MHA = _ModuleExercise(
    id="05.MultiHeadAttention", notebook=NOTEBOOK, function="MultiHeadAttention", points=4,
    title="A multi-head attention module", minutes=20, kind="module",
    reference=MultiHeadAttention, make_cases=_mha_cases, atol=1e-5, rtol=1e-4,
    forbidden=[READY_MADE_MHA],
    alternatives=[Alternative("a loop over the heads, with slices", MHAHeadLoop),
                  Alternative("reshape + permute and einsum, masked with torch.where", MHAEinsum)],
    mistakes=[
        KnownMistake("reshape without transpose",
                     "You reshape q, k, v (B, T, D) straight to (B, H, T, Dh) (and back), which mixes "
                     "tokens and heads: each 'head' attends over rows that are not tokens. Split with "
                     "view(B, T, H, Dh).transpose(1, 2) and merge with transpose(1, 2).reshape(B, T, D).",
                     MHAReshapeOnly),
        KnownMistake("split by reshape without transpose",
                     "You split q, k, v (B, T, D) straight into (B, H, T, Dh) with one reshape: that cuts the "
                     "rows of the (T, D) table into H blocks, so a 'head' holds pieces of several tokens. Split "
                     "with view(B, T, H, Dh).transpose(1, 2) (your merge is right).",
                     MHASplitReshapeOnly),
        KnownMistake("merge by reshape without transpose",
                     "You merge the heads (B, H, T, Dh) straight into (B, T, D) with one reshape: the rows of "
                     "the result are then pieces of different heads, not tokens. Move the head axis next to the "
                     "features first: z.transpose(1, 2).reshape(B, T, D) (your split is right).",
                     MHAMergeReshapeOnly),
        KnownMistake("softmax over the query axis",
                     "Your softmax runs over dim=-2, the queries: each key's column sums to 1 instead of each "
                     "query's row. Every query must get weights that sum to 1 over the keys: softmax(dim=-1).",
                     MHASoftmaxOverQueries),
        KnownMistake("residual added inside the attention",
                     "Your output is x + attention(x): the residual connection belongs to the transformer block "
                     "(unit 07), not to the attention module. Return W_O(merged heads) only.",
                     MHAWithResidual),
        KnownMistake("output projection W_O missing",
                     "You return the concatenated heads without the output projection. Finish with "
                     "self.W_O(concat): it mixes the heads and maps back into the residual stream.",
                     MHANoOutput),
        KnownMistake("scaled by sqrt(d_model) instead of sqrt(d_head)",
                     "You divide the scores by sqrt(d_model). Each head's dot products have only d_head = "
                     "d_model / H terms, so divide by sqrt(d_head); otherwise every pattern is too flat.",
                     MHAScaleDModel),
        KnownMistake("a single head of size d_model",
                     "Your output matches ONE attention head over all d_model features. Split q, k and v "
                     "into n_heads heads of size d_head, attend in each head separately, then concatenate.",
                     MHAOneHead),
        KnownMistake("heads merged in the wrong order",
                     "You merge the heads feature by feature ((B, T, Dh, H) flattened): feature 0 of every "
                     "head, then feature 1, ... W_O expects whole heads side by side, head 0's Dh features "
                     "first: z.transpose(1, 2).reshape(B, T, D).",
                     MHAMergedFeatureMajor),
        KnownMistake("scores not scaled",
                     "Your scores are q k^T without any division, so the patterns come out too sharp. "
                     "Divide by sqrt(d_head) (= math.sqrt(self.d_head)), the length of each head's vectors.",
                     MHAUnscaled),
        KnownMistake("bool mask added to the scores",
                     "You add the bool mask to the scores: True counts as 1, False as 0, so nothing is "
                     "blocked. Set the blocked scores to -inf instead: scores.masked_fill(~mask, "
                     "float('-inf')) (or pass the mask to lib.scaled_dot_product_attention).",
                     MHAMaskAdded),
        KnownMistake("mask inverted",
                     "You block where the mask is True. In this course True means 'may attend': fill "
                     "where ~mask.",
                     MHAMaskInverted),
        KnownMistake("mask ignored",
                     "Your output does not change with the mask. Pass it on to the attention of every head "
                     "(a (T, T) or (B, 1, 1, T) mask broadcasts over (B, H, T, T)).",
                     MHAMaskIgnored),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 05.mha_parameter_count
# ---------------------------------------------------------------------------------------------------


def mha_parameter_count(d_model: int, n_heads: int, bias: bool = True) -> int:
    """Number of parameters of one multi-head attention layer.

    Four (d_model x d_model) matrices W_Q, W_K, W_V, W_O (+ four bias vectors of size d_model). The
    number of heads does not change it: H heads of size d_model / H share the same four matrices.
    """
    if d_model % n_heads != 0:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    return 4 * d_model * d_model + (4 * d_model if bias else 0)


def count_per_head_full_size(d_model, n_heads, bias=True):
    return n_heads * mha_parameter_count(d_model, n_heads, bias)


def count_bias_ignored(d_model, n_heads, bias=True):
    return 4 * d_model * d_model


def count_without_output(d_model, n_heads, bias=True):
    return 3 * d_model * d_model + (3 * d_model if bias else 0)


def count_head_size_squared(d_model, n_heads, bias=True):
    d_head = d_model // n_heads
    return 4 * n_heads * d_head * d_head + (4 * d_model if bias else 0)


def count_as_float(d_model, n_heads, bias=True):
    d_head = d_model / n_heads  # true division: a float
    return 4 * n_heads * d_model * d_head + (4 * d_model if bias else 0)


def count_bias_flag_ignored(d_model, n_heads, bias=True):
    return 4 * d_model * d_model + 4 * d_model  # biases counted even with bias=False


def count_one_bias(d_model, n_heads, bias=True):
    return 4 * d_model * d_model + (d_model if bias else 0)


# correct, written differently
def count_per_head(d_model, n_heads, bias=True):
    d_head = d_model // n_heads
    per_head = 3 * d_model * d_head + d_head * d_model  # W_Q^h, W_K^h, W_V^h and W_O^h
    return n_heads * per_head + 4 * d_model * int(bias)


def count_linear_layers(d_model, n_heads, bias=True):
    layer = torch.nn.Linear(d_model, d_model, bias=bias, device="meta")  # no memory for the weights
    return 4 * sum(p.numel() for p in layer.parameters())


def _count_cases(gen, hidden):
    cases = [Case((8, 2), {}, "small", "d_model=8, 2 heads"),
             Case((12, 3), {"bias": False}, "small", "no biases"),
             Case((768, 12), {}, "real", "GPT-2 small: d_model=768, 12 heads"),
             Case((12288, 96), {"bias": False}, "real", "GPT-3: d_model=12288, 96 heads, no biases")]
    if hidden:
        for _ in range(3):
            H = int(torch.randint(1, 9, (1,), generator=gen))
            Dh = int(torch.randint(2, 65, (1,), generator=gen))
            cases.append(Case((H * Dh, H), {"bias": bool(torch.rand(1, generator=gen) < 0.5)}, "small",
                              f"d_model={H * Dh}, {H} heads"))
        cases.append(Case((12288, 96), {}, "real", "GPT-3: d_model=12288, 96 heads"))
    return cases


def _count_matches_torch(case, out, derived) -> bool:
    d_model, n_heads = case.args
    if d_model > 1024:
        return True
    m = MultiHeadAttention(d_model, n_heads, bias=case.kwargs.get("bias", True))
    return out == sum(p.numel() for p in m.parameters())


MHA_COUNT = Exercise(
    id="05.mha_parameter_count", notebook=NOTEBOOK, function="mha_parameter_count", points=2,
    title="Counting the parameters of multi-head attention", minutes=5,
    reference=mha_parameter_count, make_cases=_count_cases,
    properties=[Property("equals the module's count",
                         "the count must equal the number of parameters of an actual MultiHeadAttention module",
                         _count_matches_torch,
                         fires_for=("a full set of matrices per head", "biases forgotten", "W_O forgotten",
                                    "d_head x d_head per head", "bias=False ignored", "one bias vector"))],
    alternatives=[Alternative("per head: three d_model x d_head maps and a slab of W_O", count_per_head),
                  Alternative("four nn.Linear layers on the meta device", count_linear_layers)],
    mistakes=[
        KnownMistake("a float instead of an int",
                     "Your count is right but it is a float (e.g. 2362368.0): a float crept in, from a true "
                     "division (d_model / n_heads), `math.pow` or a float constant. The task asks for an int: use "
                     "integer arithmetic (`//`, `**` on ints), or notice that H x (d_model / H) is just d_model.",
                     count_as_float),
        KnownMistake("bias=False ignored",
                     "You always count the four bias vectors. With bias=False the layer has none: add "
                     "4 * d_model only when bias is True.",
                     count_bias_flag_ignored),
        KnownMistake("one bias vector",
                     "You count one bias vector of d_model numbers; each of the four linear maps (W_Q, W_K, "
                     "W_V, W_O) has its own: 4 * d_model.",
                     count_one_bias),
        KnownMistake("a full set of matrices per head",
                     "You count four d_model x d_model matrices for EVERY head. The heads share them: each "
                     "head uses a d_model x d_head slice, and H slices make one d_model x d_model matrix.",
                     count_per_head_full_size),
        KnownMistake("biases forgotten",
                     "You count only the weights. With bias=True each of the four linear maps also has a "
                     "bias vector of d_model numbers.",
                     count_bias_ignored),
        KnownMistake("W_O forgotten",
                     "You count W_Q, W_K and W_V but not the output matrix W_O (d_model x d_model).",
                     count_without_output),
        KnownMistake("d_head x d_head per head",
                     "You count d_head x d_head matrices per head. Each head maps the whole d_model-dim "
                     "stream to d_head numbers: its W_Q is d_model x d_head.",
                     count_head_size_squared),
    ],
)

register(SPLIT_HEADS, MERGE_HEADS, MHA, MHA_COUNT)
