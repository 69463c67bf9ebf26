"""Exercises of unit 10: encoder-decoder transformers (T5, translation).

Four exercises build the parts that an encoder-decoder adds to what the course already has:
cross-attention (``cross_attention``), the decoder block that uses it (``DecoderBlock``), the
decoder's input during training (``shift_right``) and greedy decoding at inference time (``Translator``, a module whose forward
pass translates).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from .. import blocks
from ..attention import causal_mask, merge_heads, padding_mask, scaled_dot_product_attention, split_heads
from ..models import EncoderDecoder, Seq2SeqConfig
from .core import Alternative, Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, ModuleInputs, Property  # noqa: F401
from .registry import register
from .core import draw_seed as _seed  # shared case helpers

NOTEBOOK = "10_encoder_decoder_t5"


# ---------------------------------------------------------------------------------------------------
# 10.shift_right
# ---------------------------------------------------------------------------------------------------


def shift_right(targets: torch.Tensor, bos_id: int, pad_id: int) -> torch.Tensor:
    """The decoder's input for teacher forcing: the targets moved one step to the right.

    ::

        targets        y_1   y_2   ...  y_T          (B, T)   (end with <eos>, then padding)
        decoder input  <bos> y_1   ...  y_{T-1}      (B, T)

    Position t of the decoder reads ``<bos> y_1 .. y_t`` (through its causal mask) and is trained
    to predict ``y_{t+1}``. The last target is never an input (nothing comes after it). Targets
    set to ``-100`` (ignored by the loss) are not token ids: they become ``pad_id`` in the input
    (as Hugging Face's T5 does).
    """
    if not isinstance(targets, torch.Tensor) or targets.dim() != 2 or targets.shape[1] < 1:
        got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"targets must be a LongTensor of shape (B, T) with T >= 1, got {got}")
    start = torch.full_like(targets[:, :1], bos_id)  # (B, 1)
    shifted = torch.cat([start, targets[:, :-1]], dim=1)  # (B, T)
    return shifted.masked_fill(shifted == -100, pad_id)


def shift_drops_first(targets, bos_id, pad_id):
    start = torch.full_like(targets[:, :1], bos_id)
    shifted = torch.cat([start, targets[:, 1:]], dim=1)
    return shifted.masked_fill(shifted == -100, pad_id)


def shift_no_bos(targets, bos_id, pad_id):
    shifted = targets[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_id)


def shift_pad_as_start(targets, bos_id, pad_id):
    return shift_right(targets, pad_id, pad_id)


def shift_left(targets, bos_id, pad_id):
    end = torch.full_like(targets[:, :1], pad_id)
    shifted = torch.cat([targets[:, 1:], end], dim=1)
    return shifted.masked_fill(shifted == -100, pad_id)


def shift_keeps_last(targets, bos_id, pad_id):
    start = torch.full_like(targets[:, :1], bos_id)
    shifted = torch.cat([start, targets], dim=1)
    return shifted.masked_fill(shifted == -100, pad_id)


def shift_ignore_index_kept(targets, bos_id, pad_id):
    start = torch.full_like(targets[:, :1], bos_id)
    return torch.cat([start, targets[:, :-1]], dim=1)


def _shift_cases(gen, hidden):
    bos, pad, eos = 1, 0, 2
    cases = [Case((torch.tensor([[7, 4, 9, eos]]), bos, pad), {}, "shift", "'el gato rojo <eos>' as ids")]
    for B, T, V in [(3, 5, 20)] + ([(6, 9, 40), (2, 1, 10)] if hidden else []):
        y = torch.randint(3, V, (B, T), generator=gen)
        y[:, -1] = eos
        cases.append(Case((y, bos, pad), {}, "shift", f"a ({B}, {T}) batch"))
    for B, T, V in [(3, 6, 15)] + ([(5, 8, 30), (4, 4, 12)] if hidden else []):
        y = torch.randint(3, V, (B, T), generator=gen)
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0], lengths[1] = T // 2, 1
        for b in range(B):
            L = int(lengths[b])
            y[b, L - 1] = eos
            y[b, L:] = -100
        cases.append(Case((y, bos, pad), {}, "ignored targets", f"a ({B}, {T}) batch whose padding is -100"))
    # other special ids (T5 starts with its pad token; pad_id is not always 0): bos_id and pad_id must be read
    # from the arguments, also where -100 is replaced
    y = torch.tensor([[5, 6, 9, eos, -100, -100], [8, eos, -100, -100, -100, -100], [4, 4, 6, 5, 9, eos]])
    cases.append(Case((y, 3, 7), {}, "other special ids", "bos_id=3, pad_id=7, padding -100"))
    # id 0 is a real token when it is not the padding (BART: <s> = 0, <pad> = 1, </s> = 2): only -100 is replaced
    y = torch.tensor([[6, 9, 4, eos, -100], [5, eos, -100, -100, -100]])
    cases.append(Case((y, 0, 1), {}, "other special ids", "bos_id=0, pad_id=1 (BART's ids), padding -100"))
    if hidden:
        cases.append(Case((torch.tensor([[5, 6, eos]]), 3, 7), {}, "other special ids", "bos_id=3, pad_id=7"))
        y = torch.randint(4, 20, (5, 7), generator=gen)
        y[:, 4] = eos
        y[:, 5:] = -100
        y[0, 2], y[0, 3:] = eos, -100
        cases.append(Case((y, 0, 1), {}, "other special ids", "bos_id=0, pad_id=1, padding -100"))
    return cases


SHIFT_RIGHT = Exercise(
    id="10.shift_right", notebook=NOTEBOOK, function="shift_right", points=2,
    title="Shift right: the decoder's input", minutes=5,
    reference=shift_right, make_cases=_shift_cases,
    mistakes=[
        KnownMistake("dropped the first token instead of the last",
                     "Your input is <bos> y_2 .. y_T: you dropped y_1, the first word, so the decoder never "
                     "sees it. Drop the LAST target instead: cat([bos, targets[:, :-1]]).",
                     shift_drops_first),
        KnownMistake("<bos> missing",
                     "Your input has no start token (and is one position short). Put <bos> in front: the "
                     "first position must predict y_1 from <bos> alone.",
                     shift_no_bos),
        KnownMistake("started with <pad> instead of <bos>",
                     "Your first input token is pad_id. T5 does use its pad token as the start token, "
                     "but this course's models start with bos_id: torch.full_like(targets[:, :1], bos_id).",
                     shift_pad_as_start),
        KnownMistake("shifted left",
                     "You shifted to the LEFT (y_2 .. y_T, pad), the language-model shift that makes "
                     "targets. The decoder's input is the targets shifted right: <bos> y_1 .. y_{T-1}.",
                     shift_left),
        KnownMistake("last target kept",
                     "Your input is one token too long: <bos> y_1 .. y_T. Drop the last target, so that "
                     "input and targets have the same length T.",
                     shift_keeps_last),
        KnownMistake("-100 left in the input",
                     "-100 marks targets the loss ignores; it is not a token id and would crash the "
                     "embedding. Replace it by pad_id in the shifted input: masked_fill(x == -100, pad_id).",
                     shift_ignore_index_kept),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 10.cross_attention
# ---------------------------------------------------------------------------------------------------

BUILTIN_ATTENTION = Forbidden(
    "a ready-made attention module (nn.MultiheadAttention, F.scaled_dot_product_attention, "
    "course_lib's MultiHeadAttention)",
    ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention",
     "course_lib.attention.MultiHeadAttention"),
    "this exercise asks you to wire queries, keys and values yourself (course_lib's "
    "scaled_dot_product_attention, split_heads and merge_heads are allowed)",
)


def cross_attention(x: torch.Tensor, memory: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor,
                    W_V: torch.Tensor, W_O: torch.Tensor, n_heads: int,
                    memory_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head cross-attention: the decoder asks, the encoder's output answers.

    ::

        Q = x W_Q            (B, T, D)   queries from the decoder positions
        K = memory W_K       (B, S, D)   keys from the encoder output ("memory")
        V = memory W_V       (B, S, D)   values from the encoder output
        split into H heads                                       (B, H, T or S, D/H)
        Z = softmax(Q K^T / sqrt(D/H) + padding mask) V          (B, H, T, D/H)
        out = merge_heads(Z) W_O                                 (B, T, D)

    ``memory_mask`` (B, S), 1/True = real source token, 0 = padding: padding keys are blocked
    for every head and every query. No causal mask: every target position may look at the
    whole source sentence.
    """
    if x.dim() != 3 or memory.dim() != 3 or x.shape[0] != memory.shape[0] or x.shape[2] != memory.shape[2]:
        raise ValueError(f"x (B, T, D) and memory (B, S, D) must share B and D, got {tuple(x.shape)} "
                         f"and {tuple(memory.shape)}")
    q = split_heads(x @ W_Q, n_heads)  # (B, H, T, Dh)
    k = split_heads(memory @ W_K, n_heads)  # (B, H, S, Dh)
    v = split_heads(memory @ W_V, n_heads)  # (B, H, S, Dh)
    mask = None if memory_mask is None else padding_mask(memory_mask)  # (B, 1, 1, S)
    z = scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, Dh)
    return merge_heads(z) @ W_O  # (B, T, D)


def cross_keys_from_decoder(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    return cross_attention(x, x, W_Q, W_K, W_V, W_O, n_heads, None)


def cross_queries_from_encoder(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    q = split_heads(memory @ W_Q, n_heads)
    k = split_heads(x @ W_K, n_heads)
    v = split_heads(x @ W_V, n_heads)
    return merge_heads(scaled_dot_product_attention(q, k, v)) @ W_O


def cross_causal(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    T, S = x.shape[1], memory.shape[1]
    q = split_heads(x @ W_Q, n_heads)
    k = split_heads(memory @ W_K, n_heads)
    v = split_heads(memory @ W_V, n_heads)
    mask = torch.ones(T, S, dtype=torch.bool).tril()  # (T, S)
    if memory_mask is not None:
        mask = mask & padding_mask(memory_mask)
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask)) @ W_O


def cross_mask_ignored(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    return cross_attention(x, memory, W_Q, W_K, W_V, W_O, n_heads, None)


def cross_one_big_head(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    return cross_attention(x, memory, W_Q, W_K, W_V, W_O, 1, memory_mask)


def _cross_cases(gen, hidden):
    specs = [("no padding", 2, 3, 5, 8, 2, False, "T=3 target positions, S=5 source tokens, 2 heads")]
    specs += [("padded source", 3, 4, 6, 8, 2, True, "a padded source batch (memory_mask has zeros)")]
    if hidden:
        specs += [("no padding", 3, 6, 4, 12, 3, False, "T=6, S=4, 3 heads"),
                  ("no padding", 1, 1, 7, 16, 4, False, "one target position"),
                  ("padded source", 4, 5, 7, 16, 4, True, "padded source, 4 heads")]
    cases = []
    for group, B, T, S, D, H, padded, note in specs:
        x = torch.randn(B, T, D, generator=gen)
        memory = torch.randn(B, S, D, generator=gen)
        Ws = [torch.randn(D, D, generator=gen) / math.sqrt(D) * 2.0 for _ in range(4)]
        kwargs = {}
        if padded:
            lengths = torch.randint(1, S + 1, (B,), generator=gen)
            lengths[0] = S - 2
            kwargs["memory_mask"] = (torch.arange(S)[None, :] < lengths[:, None]).long()  # (B, S) 1 = real
        cases.append(Case((x, memory, *Ws, H), kwargs, group, note))
    return cases


def _padding_has_no_effect(case, out, derived) -> bool:
    """Changing the memory at padding positions must not change the output."""
    mask = case.kwargs.get("memory_mask")
    x = case.args[0]
    if mask is None or not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return True  # a wrong shape is reported as such, not as a padding problem
    return bool(torch.allclose(out, derived[0], atol=1e-5))


def _change_padding(case):
    mask = case.kwargs.get("memory_mask")
    if mask is None:
        return ()
    x, memory, *rest = case.args
    noise = torch.full_like(memory, 3.0) * (mask == 0)[:, :, None]
    return (Case((x, memory + noise, *rest), case.kwargs, case.group, case.note),)


CROSS_ATTENTION = Exercise(
    id="10.cross_attention", notebook=NOTEBOOK, function="cross_attention", points=3,
    title="Cross-attention", minutes=15,
    reference=cross_attention, make_cases=_cross_cases, forbidden=[BUILTIN_ATTENTION], atol=1e-5,
    properties=[Property("padding in the source is invisible",
                         "changing the encoder output at padding positions must not change the result: "
                         "block those keys with the memory mask", _padding_has_no_effect, _change_padding,
                         fires_for=("memory mask ignored", "memory mask added to the scores", "memory mask inverted",
                                    "scores multiplied by the memory mask", "heads split by a plain reshape"))],
    mistakes=[
        KnownMistake("keys and values taken from the decoder",
                     "Your keys and values come from x, the decoder: that is self-attention, and the "
                     "source sentence is never read. In cross-attention K = memory W_K and V = memory W_V; "
                     "only the queries come from the decoder.",
                     cross_keys_from_decoder),
        KnownMistake("queries taken from the encoder",
                     "Your queries come from the encoder and the keys/values from the decoder (the output "
                     "has one row per SOURCE token). Each target position asks: Q = x W_Q, K and V from memory.",
                     cross_queries_from_encoder),
        KnownMistake("causal mask in cross-attention",
                     "You applied a causal mask to cross-attention, so target position t sees only the "
                     "first t+1 source words. The whole source is known in advance: only padding is masked.",
                     cross_causal),
        KnownMistake("memory mask ignored",
                     "The queries attend to the padding of the source. Turn memory_mask (B, S) into a key "
                     "mask (B, 1, 1, S) (course_lib.attention.padding_mask) and pass it to the attention.",
                     cross_mask_ignored),
        KnownMistake("heads not split",
                     "You computed one attention over the full width D (scale sqrt(D)) instead of n_heads "
                     "heads of size D / n_heads: split_heads(Q, n_heads) etc., then merge_heads.",
                     cross_one_big_head),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 10.DecoderBlock (module)
# ---------------------------------------------------------------------------------------------------


class DecoderBlock(blocks.DecoderBlock):
    """The pre-norm decoder block, taking care of its own causal mask.

    ::

        x = x + self_attn(ln1(x), causal mask)                     (B, T, D)  looks back at the target
        x = x + cross_attn(ln2(x), memory, source padding mask)    (B, T, D)  reads the source
        x = x + mlp(ln3(x))                                        (B, T, D)

    ``memory`` (B, S, D) is the encoder output; ``memory_mask`` (B, S), 1 = real source token.
    Same parameters and result as ``course_lib.blocks.DecoderBlock`` called with
    ``self_mask=causal_mask(T)`` and ``memory_mask=padding_mask(memory_mask)``.
    """

    def __init__(self, d_model: int, n_heads: int, d_mlp: int | None = None):
        super().__init__(d_model, n_heads, d_mlp, norm_first=True)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None):
        self_mask = causal_mask(x.shape[1])  # (T, T)
        cross_mask = None if memory_mask is None else padding_mask(memory_mask)  # (B, 1, 1, S)
        x = x + self.self_attn(self.ln1(x), mask=self_mask)  # (B, T, D)
        x = x + self.cross_attn(self.ln2(x), memory, mask=cross_mask)  # (B, T, D)
        return x + self.mlp(self.ln3(x))  # (B, T, D)


class _BlockMistake(DecoderBlock):
    variant = ""

    def forward(self, x, memory, memory_mask=None):
        v = self.variant
        self_mask = None if v == "no causal" else causal_mask(x.shape[1])
        cross_mask = None if (memory_mask is None or v == "mask ignored") else padding_mask(memory_mask)
        if v == "cross first":
            x = x + self.cross_attn(self.ln2(x), memory, mask=cross_mask)
            x = x + self.self_attn(self.ln1(x), mask=self_mask)
            return x + self.mlp(self.ln3(x))
        x = x + self.self_attn(self.ln1(x), mask=self_mask)
        if v == "keys from decoder":
            h = self.ln2(x)
            x = x + self.cross_attn(h, h)
        elif v == "no residual":
            x = self.cross_attn(self.ln2(x), memory, mask=cross_mask)
        else:
            x = x + self.cross_attn(self.ln2(x), memory, mask=cross_mask)
        return x + self.mlp(self.ln3(x))


class BlockNoCausalMask(_BlockMistake):
    variant = "no causal"


class BlockKeysFromDecoder(_BlockMistake):
    variant = "keys from decoder"


class BlockCrossFirst(_BlockMistake):
    variant = "cross first"


class BlockNoResidual(_BlockMistake):
    variant = "no residual"


class BlockMaskIgnored(_BlockMistake):
    variant = "mask ignored"


def _block_state(seed: int, d_model: int, n_heads: int) -> dict:
    """A seeded reference block's state, with LayerNorm gains and biases moved away from 1 and 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = DecoderBlock(d_model, n_heads)
        with torch.no_grad():
            for ln in (block.ln1, block.ln2, block.ln3):
                ln.weight.add_(0.3 * torch.randn(d_model))
                ln.bias.add_(0.3 * torch.randn(d_model))
            for name, p in block.named_parameters():
                if name.endswith("bias") and not name.startswith("ln"):
                    p.normal_(0.0, 0.1)
    return {k: v.detach().clone() for k, v in block.state_dict().items()}


def _block_cases(gen, hidden):
    specs = [("no padding", 2, 4, 5, 16, 2, False, "T=4 target positions, S=5 source tokens")]
    specs += [("padded source", 3, 3, 6, 16, 2, True, "a padded source batch")]
    if hidden:
        specs += [("no padding", 2, 6, 3, 24, 3, False, "T=6, S=3, 3 heads"),
                  ("padded source", 4, 5, 7, 16, 4, True, "padded source, 4 heads")]
    cases = []
    for group, B, T, S, D, H, padded, note in specs:
        state = _block_state(_seed(gen), D, H)
        x = torch.randn(B, T, D, generator=gen)
        memory = torch.randn(B, S, D, generator=gen)
        args = (x, memory)
        if padded:
            lengths = torch.randint(1, S + 1, (B,), generator=gen)
            lengths[0] = S - 2
            args = (x, memory, (torch.arange(S)[None, :] < lengths[:, None]).long())
        cases.append(Case((ModuleInputs(dict(d_model=D, n_heads=H), state, args),), {}, group, note))
    return cases


def _block_is_causal(case, out, derived) -> bool:
    """Changing the last target position must not change the earlier positions' outputs."""
    return bool(torch.allclose(out[:, :-1], derived[0][:, :-1], atol=1e-5))


def _change_last_position(case):
    spec = case.args[0]
    x, *rest = spec.args
    x2 = x.clone()
    # not a constant (LayerNorm would remove a constant shift and hide the change): a ramp over the features
    x2[:, -1] += torch.linspace(-4.0, 4.0, x.shape[-1])
    return (Case((ModuleInputs(spec.init, spec.state, (x2, *rest)),), {}, case.group, case.note),)


DECODER_BLOCK = Exercise(
    id="10.DecoderBlock", notebook=NOTEBOOK, function="DecoderBlock", points=3,
    title="The decoder block", minutes=15, kind="module",
    reference=DecoderBlock, make_cases=_block_cases, atol=1e-5,
    forbidden=[Forbidden("course_lib's DecoderBlock", ("course_lib.blocks.DecoderBlock",),
                         "write the forward pass from the three sub-layers yourself")],
    properties=[Property("the past does not see the future",
                         "changing the last target position changed the outputs at earlier positions: "
                         "the self-attention needs a causal mask", _block_is_causal, _change_last_position)],
    mistakes=[
        KnownMistake("no causal mask in the self-attention",
                     "Your decoder's self-attention sees the future target words, which at training "
                     "time are the answers. Pass mask=causal_mask(T) to self_attn.",
                     BlockNoCausalMask),
        KnownMistake("cross-attention keys taken from the decoder",
                     "Your cross-attention reads the decoder's own states, not the source: call "
                     "self.cross_attn(self.ln2(x), memory, mask=...) so keys and values come from memory.",
                     BlockKeysFromDecoder),
        KnownMistake("cross-attention before self-attention",
                     "The order is: causal self-attention (ln1), then cross-attention (ln2), then the "
                     "MLP (ln3).", BlockCrossFirst),
        KnownMistake("residual missing around cross-attention",
                     "x = x + self.cross_attn(...): each sub-layer ADDS its result to the residual stream.",
                     BlockNoResidual),
        KnownMistake("source padding not masked",
                     "The cross-attention attends to source padding: pass "
                     "mask=padding_mask(memory_mask) (B, 1, 1, S) when memory_mask is given.",
                     BlockMaskIgnored),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 10.Translator (greedy decoding)
# ---------------------------------------------------------------------------------------------------
#
# The autograder hands inputs to the learner's code by value, never as live objects, so a model cannot
# be an argument: greedy decoding is the forward pass of a small wrapper module that owns the
# encoder-decoder (``self.model``), which the grader rebuilds from its config and weights.

COURSE_GREEDY = Forbidden(
    "course_lib's greedy_decode (course_lib.generation.greedy_decode)",
    ("course_lib.generation.greedy_decode",),
    "this exercise asks you to write the decoding loop yourself",
)


def make_test_seq2seq(seed: int, src_vocab_size: int = 12, tgt_vocab_size: int = 12, max_len: int = 10,
                      eos_boost: float = 1.0) -> EncoderDecoder:
    """A tiny random encoder-decoder for the exercise cases (pad 0, bos 1, eos 2).

    Built under a private RNG seeded with ``seed``. A freshly initialised model predicts nearly the
    same thing whatever the source, which would hide mistakes; so the attention weights and the
    output layer are scaled up and the target embeddings down (the argmax then depends strongly on
    the source and on the prefix), and ``<eos>``'s bias is raised so that rows finish at different
    steps. ``<pad>`` and ``<bos>`` are never predicted.
    """
    config = Seq2SeqConfig(**_seq2seq_config(src_vocab_size, tgt_vocab_size, max_len))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EncoderDecoder(config)
        with torch.no_grad():
            for block in list(model.encoder_blocks) + list(model.decoder_blocks):
                for attn in (getattr(block, "attn", None), getattr(block, "self_attn", None),
                             getattr(block, "cross_attn", None)):
                    if attn is not None:
                        for lin in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
                            lin.weight.mul_(2.5)
            model.tgt_emb.weight.mul_(0.3)
            model.out.weight.mul_(4.0)
            model.out.bias.zero_()
            model.out.bias[config.eos_id] = eos_boost
            model.out.bias[config.pad_id] = -10.0
            model.out.bias[config.bos_id] = -10.0
    return model.eval()


def _seq2seq_config(src_vocab_size=12, tgt_vocab_size=12, max_len=10) -> dict:
    return dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, max_len=max_len, n_layers=1,
                n_heads=2, d_model=16)


class Translator(nn.Module):
    """An encoder-decoder plus greedy decoding: calling it translates.

    ::

        src_mask = src_ids != pad_id                            (B, S)  real source tokens
        memory   = model.encode(src_ids, src_mask)              (B, S, D)  once
        out      = [[bos_id]] * B                               (B, 1)
        while out has fewer than max_len columns and some row is unfinished:
            logits = model.decode(out, memory, src_mask)        (B, t, V)
            next   = logits[:, -1, :].argmax(-1)                (B,)  pad_id for finished rows
            out    = concat(out, next); a row is finished once it produced eos_id

    Returns ``out`` (B, L), L <= max_len, starting with ``<bos>``; after a row's ``<eos>`` only
    ``pad_id``. ``pad_id``, ``bos_id`` and ``eos_id`` are the model config's.
    (``course_lib.generation.greedy_decode`` is the same loop.)
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, max_len: int, n_layers: int, n_heads: int,
                 d_model: int):
        super().__init__()
        self.model = EncoderDecoder(Seq2SeqConfig(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                                                  max_len=max_len, n_layers=n_layers, n_heads=n_heads,
                                                  d_model=d_model))

    def forward(self, src_ids: torch.Tensor, max_len: int) -> torch.Tensor:
        c = self.model.config
        B = src_ids.shape[0]
        src_mask = src_ids != c.pad_id  # (B, S)
        out = torch.full((B, 1), c.bos_id, dtype=torch.long)  # (B, 1)
        finished = torch.zeros(B, dtype=torch.bool)  # (B,)
        with torch.no_grad():
            memory = self.model.encode(src_ids, src_mask)  # (B, S, D), computed once
            while out.shape[1] < max_len and not bool(finished.all()):
                logits = self.model.decode(out, memory, src_mask)  # (B, t, V)
                next_token = logits[:, -1, :].argmax(dim=-1)  # (B,)
                next_token = torch.where(finished, c.pad_id, next_token)  # finished rows only pad
                out = torch.cat([out, next_token[:, None]], dim=1)  # (B, t + 1)
                finished |= next_token == c.eos_id
        return out


class _TranslatorMistake(Translator):
    keep_bos, stop, position, last_only, mask_memory, pad = True, True, -1, False, True, True

    def forward(self, src_ids, max_len):
        c = self.model.config
        src_mask = src_ids != c.pad_id
        B = src_ids.shape[0]
        out = torch.full((B, 1), c.bos_id, dtype=torch.long)
        finished = torch.zeros(B, dtype=torch.bool)
        with torch.no_grad():
            memory = self.model.encode(src_ids, src_mask)
            while out.shape[1] < max_len and not (self.stop and bool(finished.all())):
                inp = out[:, -1:] if self.last_only else out
                logits = self.model.decode(inp, memory, src_mask if self.mask_memory else None)
                nxt = logits[:, self.position, :].argmax(dim=-1)
                if self.stop and self.pad:
                    nxt = torch.where(finished, c.pad_id, nxt)
                out = torch.cat([out, nxt[:, None]], dim=1)
                finished |= nxt == c.eos_id
        return out if self.keep_bos else out[:, 1:]


class TranslatorNoBos(_TranslatorMistake):
    keep_bos = False


class TranslatorNoStop(_TranslatorMistake):
    stop = False


class TranslatorNoPad(_TranslatorMistake):
    pad = False  # stops when every row is finished, but finished rows go on writing tokens


class TranslatorFirstPosition(_TranslatorMistake):
    position = 0


class TranslatorLastTokenOnly(_TranslatorMistake):
    last_only = True


class TranslatorMemoryUnmasked(_TranslatorMistake):
    mask_memory = False


def _translator_cases(gen, hidden):
    specs = [("no padding", 5, 5, 8, 1.0, False, "5 source sentences of 5 tokens, max_len 8"),
             ("padded source", 5, 6, 9, 0.8, True, "a padded source batch, max_len 9"),
             ("every row finishes early", 4, 5, 10, 4.0, False, "every row ends with <eos> well before max_len 10")]
    if hidden:
        specs += [("no padding", 6, 3, 10, 0.5, False, "6 sentences, max_len 10"),
                  ("no padding", 4, 7, 6, 1.0, False, "max_len 6"),
                  ("padded source", 6, 7, 10, 0.8, True, "padded source, max_len 10"),
                  ("every row finishes early", 6, 4, 10, 5.0, False, "every row ends well before max_len 10")]
    config = _seq2seq_config()
    cases = []
    for group, B, S, max_len, boost, padded, note in specs:
        seed = _seed(gen)
        model = make_test_seq2seq(seed, eos_boost=boost)
        src = torch.randint(3, config["src_vocab_size"], (B, S), generator=gen)
        if padded:
            lengths = torch.randint(2, S + 1, (B,), generator=gen)
            lengths[0] = 2
            for b in range(B):
                src[b, int(lengths[b]):] = model.config.pad_id
        if group == "every row finishes early":
            # the <eos> bias (of a few) with which every row ends before max_len - 1, as late as possible, so
            # that a loop which does not stop once all rows are done shows it
            # (rows finishing at different steps preferred: then stopping at the FIRST finished row shows too)
            lengths = {b: _greedy_lengths(make_test_seq2seq(seed, eos_boost=b), src, max_len)
                       for b in (1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)}
            boost = max((b for b in lengths if lengths[b][0] < max_len - 1),
                        key=lambda b: (lengths[b][1] > 1, lengths[b][0], -b))
            model = make_test_seq2seq(seed, eos_boost=boost)
        state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        cases.append(Case((ModuleInputs(dict(config), state, (src, max_len)),), {}, group, note))
    return cases


def _greedy_lengths(model, src, max_len) -> tuple:
    """(columns of the greedy output, how many different steps the rows finish at)."""
    from ..generation import greedy_decode

    with torch.no_grad():
        out = greedy_decode(model, src, max_len)
    ends = {int((row != model.config.pad_id).sum()) for row in out}
    return int(out.shape[1]), len(ends)


def _starts_with_bos(case, out, derived) -> bool:
    return isinstance(out, torch.Tensor) and out.dim() == 2 and bool((out[:, 0] == 1).all())


TRANSLATOR = Exercise(
    id="10.Translator", notebook=NOTEBOOK, function="Translator", points=3,
    title="Greedy decoding until <eos>", minutes=15, kind="module",
    reference=Translator, make_cases=_translator_cases, forbidden=[COURSE_GREEDY],
    properties=[Property("starts with <bos>", "column 0 of the output must be bos_id", _starts_with_bos,
                         fires_for=("<bos> not returned", "started from <pad> instead of <bos>"))],
    mistakes=[
        KnownMistake("<bos> not returned",
                     "Return the whole decoder sequence, starting with the <bos> you started from "
                     "(column 0), shape (B, L) with L <= max_len.",
                     TranslatorNoBos),
        KnownMistake("does not stop at <eos>",
                     "A row that has produced <eos> is finished: its later tokens must be pad_id, and "
                     "decoding stops as soon as every row is finished.",
                     TranslatorNoStop),
        KnownMistake("no padding after <eos>",
                     "You stop when every row has produced <eos>, but a row that finished early goes on writing "
                     "tokens after its <eos>. After a row's <eos> write only pad_id: "
                     "next = torch.where(finished, pad_id, next).",
                     TranslatorNoPad),
        KnownMistake("logits of the first position",
                     "You pick the argmax at position 0 every step. The next token is predicted at the "
                     "LAST decoder position: logits[:, -1, :].",
                     TranslatorFirstPosition),
        KnownMistake("only the last token fed to the decoder",
                     "Feed the whole target prefix <bos> y_1 .. y_t to model.decode each step: the decoder "
                     "has no cache here, so with the last token alone it forgets what it wrote.",
                     TranslatorLastTokenOnly),
        KnownMistake("source padding not masked",
                     "Pass src_mask = (src_ids != pad_id) to model.encode AND model.decode, so the "
                     "cross-attention never reads the source padding.",
                     TranslatorMemoryUnmasked),
    ],
)


# ---------------------------------------------------------------------------------------------------
# Alternatives (correct, written differently) and more known mistakes, per exercise
# ---------------------------------------------------------------------------------------------------


def shift_right_by_assignment(targets, bos_id, pad_id):
    out = torch.full_like(targets, bos_id)  # (B, T), a new tensor: the input is not touched
    out[:, 1:] = targets[:, :-1]
    out[out == -100] = pad_id
    return out


def shift_right_with_roll(targets, bos_id, pad_id):
    rolled = torch.roll(targets, shifts=1, dims=1)  # the last target wraps to column 0 ...
    rolled[:, 0] = bos_id  # ... and is overwritten by <bos>
    return torch.where(rolled == -100, torch.full_like(rolled, pad_id), rolled)


def shift_pad_replaced_before_shift_kept_minus100_as_pad(targets, bos_id, pad_id):
    """Wrong: replaces -100 with bos_id (the wrong id) in the input."""
    start = torch.full_like(targets[:, :1], bos_id)
    shifted = torch.cat([start, targets[:, :-1]], dim=1)
    return shifted.masked_fill(shifted == -100, bos_id)


def cross_attention_einsum(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    B, T, D = x.shape
    S, Dh = memory.shape[1], D // n_heads
    q = (x @ W_Q).view(B, T, n_heads, Dh)  # (B, T, H, Dh)
    k = (memory @ W_K).view(B, S, n_heads, Dh)  # (B, S, H, Dh)
    v = (memory @ W_V).view(B, S, n_heads, Dh)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(Dh)  # (B, H, T, S)
    if memory_mask is not None:
        scores = scores.masked_fill(~memory_mask.bool()[:, None, None, :], float("-inf"))
    z = torch.einsum("bhts,bshd->bthd", torch.softmax(scores, dim=-1), v)  # (B, T, H, Dh)
    return z.reshape(B, T, D) @ W_O


def cross_attention_head_loop(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    D = x.shape[-1]
    Dh = D // n_heads
    heads = []
    for h in range(n_heads):
        cols = slice(h * Dh, (h + 1) * Dh)
        q, k, v = x @ W_Q[:, cols], memory @ W_K[:, cols], memory @ W_V[:, cols]  # (B, T|S, Dh)
        scores = q @ k.transpose(1, 2) / Dh ** 0.5  # (B, T, S)
        if memory_mask is not None:
            scores = torch.where(memory_mask[:, None, :] != 0, scores, torch.tensor(float("-inf")))
        heads.append(torch.softmax(scores, dim=-1) @ v)
    return torch.cat(heads, dim=-1) @ W_O


def cross_scaled_by_d_model(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    D = x.shape[-1]
    Dh = D // n_heads
    q = split_heads(x @ W_Q, n_heads) * (Dh ** 0.5 / D ** 0.5)  # net scale 1/sqrt(D)
    k = split_heads(memory @ W_K, n_heads)
    v = split_heads(memory @ W_V, n_heads)
    mask = None if memory_mask is None else padding_mask(memory_mask)
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask)) @ W_O


def cross_mask_added(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    Dh = x.shape[-1] // n_heads
    q = split_heads(x @ W_Q, n_heads)
    k = split_heads(memory @ W_K, n_heads)
    v = split_heads(memory @ W_V, n_heads)
    scores = q @ k.transpose(-2, -1) / Dh ** 0.5
    if memory_mask is not None:
        scores = scores + memory_mask[:, None, None, :].to(scores.dtype)  # adds 0/1 instead of blocking
    return merge_heads(torch.softmax(scores, dim=-1) @ v) @ W_O


class DecoderBlockSpelledOut(DecoderBlock):
    """Masks built by hand (tril of ones; memory_mask reshaped), one temporary per sub-layer."""

    def forward(self, x, memory, memory_mask=None):
        T = x.shape[1]
        self_mask = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
        cross_mask = None if memory_mask is None else memory_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        h = self.self_attn(self.ln1(x), mask=self_mask)
        x = x + h
        h = self.cross_attn(self.ln2(x), memory, mask=cross_mask)
        x = x + h
        h = self.mlp(self.ln3(x))
        return x + h


class DecoderBlockResidualList(DecoderBlock):
    """The three sub-layers as a list of functions applied in a loop."""

    def forward(self, x, memory, memory_mask=None):
        masks = (causal_mask(x.shape[1]), None if memory_mask is None else padding_mask(memory_mask))
        sublayers = [
            lambda h: self.self_attn(self.ln1(h), mask=masks[0]),
            lambda h: self.cross_attn(self.ln2(h), memory, mask=masks[1]),
            lambda h: self.mlp(self.ln3(h)),
        ]
        for f in sublayers:
            x = x + f(x)
        return x


class BlockPostNorm(_BlockMistake):
    """Wrong for this block: post-norm (LayerNorm after each residual addition)."""

    def forward(self, x, memory, memory_mask=None):
        cross_mask = None if memory_mask is None else padding_mask(memory_mask)
        x = self.ln1(x + self.self_attn(x, mask=causal_mask(x.shape[1])))
        x = self.ln2(x + self.cross_attn(x, memory, mask=cross_mask))
        return self.ln3(x + self.mlp(x))


class BlockNormsSwapped(_BlockMistake):
    """Wrong: ln2 before the self-attention and ln1 before the cross-attention."""

    def forward(self, x, memory, memory_mask=None):
        cross_mask = None if memory_mask is None else padding_mask(memory_mask)
        x = x + self.self_attn(self.ln2(x), mask=causal_mask(x.shape[1]))
        x = x + self.cross_attn(self.ln1(x), memory, mask=cross_mask)
        return x + self.mlp(self.ln3(x))


class TranslatorPreallocated(Translator):
    """A (B, max_len) buffer of pad_id filled column by column, cut at the last column written."""

    def forward(self, src_ids, max_len):
        c = self.model.config
        B = src_ids.shape[0]
        src_mask = src_ids != c.pad_id
        out = torch.full((B, max_len), c.pad_id, dtype=torch.long)
        out[:, 0] = c.bos_id
        alive = torch.ones(B, dtype=torch.bool)
        with torch.no_grad():
            memory = self.model.encode(src_ids, src_mask)
            t = 1
            while t < max_len and alive.any():
                step = self.model.decode(out[:, :t], memory, src_mask)[:, -1].argmax(-1)
                out[alive, t] = step[alive]
                alive = alive & (step != c.eos_id)
                t += 1
        return out[:, :t]


class TranslatorRowByRow(Translator):
    """Each sentence decoded alone (its own padding removed), then the rows padded to one length."""

    def forward(self, src_ids, max_len):
        c = self.model.config
        rows = []
        with torch.no_grad():
            for src in src_ids:
                src = src[None, :]  # (1, S)
                mask = src != c.pad_id
                memory = self.model.encode(src, mask)
                seq = [c.bos_id]
                while len(seq) < max_len and seq[-1] != c.eos_id:
                    logits = self.model.decode(torch.tensor([seq]), memory, mask)
                    seq.append(int(logits[0, -1].argmax()))
                rows.append(seq)
        L = max(len(r) for r in rows)
        return torch.tensor([r + [c.pad_id] * (L - len(r)) for r in rows], dtype=torch.long)


class TranslatorOneTooLong(_TranslatorMistake):
    """Wrong: the loop runs while out.shape[1] <= max_len, so an unfinished output has max_len + 1 columns."""

    def forward(self, src_ids, max_len):
        return Translator.forward(self, src_ids, max_len + 1)


SHIFT_RIGHT.alternatives = (Alternative("written into a new tensor by slice assignment", shift_right_by_assignment),
                            Alternative("torch.roll, then <bos> over the wrapped column, torch.where", shift_right_with_roll))
SHIFT_RIGHT.mistakes = tuple(SHIFT_RIGHT.mistakes) + (
    KnownMistake("-100 replaced by bos_id",
                 "You replaced the ignored targets (-100) by bos_id in the input. Padding positions of the decoder "
                 "input hold pad_id: masked_fill(x == -100, pad_id).", shift_pad_replaced_before_shift_kept_minus100_as_pad),)
CROSS_ATTENTION.alternatives = (Alternative("einsum over (B, T, H, Dh) views", cross_attention_einsum),
                                Alternative("a loop over heads with column slices of the weights", cross_attention_head_loop))
CROSS_ATTENTION.mistakes = tuple(CROSS_ATTENTION.mistakes) + (
    KnownMistake("scaled by sqrt(d_model) instead of sqrt(d_head)",
                 "Your scores are divided by sqrt(D), the model width. Each head compares vectors of size "
                 "D / n_heads, so divide by sqrt(D / n_heads) (course_lib's scaled_dot_product_attention does it "
                 "when you give it the split heads).", cross_scaled_by_d_model),
    KnownMistake("memory mask added to the scores",
                 "You ADDED the 0/1 memory mask to the scores, which shifts real tokens by 1 and blocks nothing. "
                 "Padding keys must get -inf before the softmax: pass mask=padding_mask(memory_mask) "
                 "(True = keep) to scaled_dot_product_attention.", cross_mask_added),
)
DECODER_BLOCK.alternatives = (Alternative("masks built by hand, one temporary per sub-layer", DecoderBlockSpelledOut),
                              Alternative("sub-layers as a list applied in a loop", DecoderBlockResidualList))
DECODER_BLOCK.mistakes = tuple(DECODER_BLOCK.mistakes) + (
    KnownMistake("post-norm instead of pre-norm",
                 "You normalise AFTER each residual addition (post-norm: x = ln(x + sublayer(x))). This block is "
                 "pre-norm: x = x + sublayer(ln(x)), the LayerNorm inside the branch, the residual stream untouched.",
                 BlockPostNorm),
    KnownMistake("LayerNorms swapped",
                 "Each sub-layer has its own LayerNorm: ln1 before the self-attention, ln2 before the "
                 "cross-attention, ln3 before the MLP. Yours uses ln2 and ln1 the other way round.", BlockNormsSwapped),
)
TRANSLATOR.alternatives = (Alternative("a preallocated (B, max_len) buffer", TranslatorPreallocated),
                           Alternative("one sentence at a time, padded at the end", TranslatorRowByRow))
TRANSLATOR.mistakes = tuple(TRANSLATOR.mistakes) + (
    KnownMistake("one column too many",
                 "Your output can have max_len + 1 columns: stop when the output HAS max_len columns "
                 "(while out.shape[1] < max_len).", TranslatorOneTooLong),
)



# ---------------------------------------------------------------------------------------------------
# More known mistakes, found by trying learners' answers that appear nowhere in the project (issue 11)
# ---------------------------------------------------------------------------------------------------


def shift_pad_hard_coded(targets, bos_id, pad_id):
    return shift_right(targets, bos_id, 0)


def shift_bos_hard_coded(targets, bos_id, pad_id):
    return shift_right(targets, 1, pad_id)


def shift_as_floats(targets, bos_id, pad_id):
    return shift_right(targets, bos_id, pad_id).float()


def shift_bos_in_first_row_only(targets, bos_id, pad_id):
    out = shift_right(targets, bos_id, pad_id)
    out[1:, 0] = torch.where(targets[1:, -1] == -100, pad_id, targets[1:, -1])  # what torch.roll left there
    return out


def shift_rolled_left(targets, bos_id, pad_id):
    out = torch.roll(targets, shifts=-1, dims=1)
    out[:, -1] = bos_id
    return out.masked_fill(out == -100, pad_id)


SHIFT_RIGHT.mistakes = tuple(SHIFT_RIGHT.mistakes) + (
    KnownMistake("pad id hard-coded as 0",
                 "You replace -100 by 0, not by the pad_id you are given (pad_id is 0 in this course's vocabularies, "
                 "not in every model's). Use the argument: masked_fill(x == -100, pad_id).", shift_pad_hard_coded),
    KnownMistake("<bos> hard-coded as 1",
                 "Your start token is 1, not the bos_id you are given (T5, for one, starts with its pad token 0). "
                 "Use the argument: torch.full_like(targets[:, :1], bos_id).", shift_bos_hard_coded),
    KnownMistake("decoder input as floats",
                 "Your decoder input is a float tensor (torch.full without dtype, or .float()). Token ids are int64: "
                 "torch.full_like(targets[:, :1], bos_id) keeps the targets' dtype.", shift_as_floats),
    KnownMistake("<bos> only in the first row",
                 "Only row 0 starts with <bos>; the other rows start with what torch.roll wrapped around (their "
                 "last target). Every row's column 0 is bos_id: out[:, 0] = bos_id.", shift_bos_in_first_row_only),
    KnownMistake("rolled left, <bos> at the end",
                 "torch.roll(targets, -1) shifts LEFT (y_2 .. y_T, then <bos> where you overwrote). Roll right, "
                 "shifts=1, and put <bos> in column 0: <bos> y_1 .. y_{T-1}.", shift_rolled_left),
)


def shift_non_positive_as_padding(targets, bos_id, pad_id):
    """Wrong: every id <= 0 taken for padding, so a real id 0 (here bos_id = 0) becomes pad_id too."""
    start = torch.full_like(targets[:, :1], bos_id)
    shifted = torch.cat([start, targets[:, :-1]], dim=1)
    return torch.where(shifted <= 0, pad_id, shifted)


def shift_rolled_without_bos(targets, bos_id, pad_id):
    """Wrong: torch.roll alone: column 0 holds the last target that wrapped around, never <bos>."""
    rolled = torch.roll(targets, shifts=1, dims=1)
    return rolled.masked_fill(rolled == -100, pad_id)


def shift_mask_from_unshifted_targets(targets, bos_id, pad_id):
    """Wrong: the -100 mask taken from the targets, one position off: a padded row's <eos> becomes pad_id."""
    shifted = torch.cat([torch.full_like(targets[:, :1], bos_id), targets[:, :-1]], dim=1)
    return shifted.masked_fill(targets == -100, pad_id)


def shift_right_negative_ids(targets, bos_id, pad_id):
    """Right: only -100 is negative, so `< 0` picks exactly the ignored targets (0 is a real id)."""
    shifted = torch.cat([torch.full_like(targets[:, :1], bos_id), targets[:, :-1]], dim=1)
    return torch.where(shifted < 0, torch.tensor(pad_id, dtype=shifted.dtype), shifted)


SHIFT_RIGHT.alternatives = tuple(SHIFT_RIGHT.alternatives) + (
    Alternative("torch.where(shifted < 0, pad_id, shifted): only -100 is negative", shift_right_negative_ids),)
SHIFT_RIGHT.mistakes = tuple(SHIFT_RIGHT.mistakes) + (
    KnownMistake("every id <= 0 taken for padding",
                 "You replaced every id <= 0 by pad_id (`<= 0` or `< 1`), but only -100 marks an ignored target: "
                 "0 is a real token id. With bos_id=0 (BART's <s> is id 0) your first column "
                 "became pad_id instead of <bos>. Replace exactly -100: masked_fill(shifted == -100, pad_id).",
                 shift_non_positive_as_padding),
    KnownMistake("rolled without writing <bos>",
                 "torch.roll(targets, 1, dims=1) wraps the LAST target around into column 0, so your rows start "
                 "with <eos> (or pad) instead of <bos>. After rolling, overwrite the first column: "
                 "rolled[:, 0] = bos_id (on a copy: roll returns a new tensor).", shift_rolled_without_bos),
    KnownMistake("<eos> of padded rows replaced by pad_id",
                 "In a padded row the <eos> moves one step right into the decoder input, and yours became pad_id. "
                 "Either the -100 mask came from the unshifted targets (targets == -100 is one position off), or "
                 "you replaced <eos> too. Mask the shifted tensor and replace only -100: "
                 "shifted.masked_fill(shifted == -100, pad_id). (That <eos> sits where the target is -100, so the "
                 "loss never sees it, but it is part of the input: <bos> y_1 .. y_{T-1}, as in Hugging Face's T5.)",
                 shift_mask_from_unshifted_targets),
)


def _heads3(x, memory, W_Q, W_K, W_V, n_heads):
    return split_heads(x @ W_Q, n_heads), split_heads(memory @ W_K, n_heads), split_heads(memory @ W_V, n_heads)


def cross_mask_inverted(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    q, k, v = _heads3(x, memory, W_Q, W_K, W_V, n_heads)
    mask = None if memory_mask is None else (memory_mask == 0)[:, None, None, :]  # True at the PADDING
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask)) @ W_O


def cross_no_output_projection(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    q, k, v = _heads3(x, memory, W_Q, W_K, W_V, n_heads)
    mask = None if memory_mask is None else padding_mask(memory_mask)
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask))


def cross_merged_without_transpose(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    q, k, v = _heads3(x, memory, W_Q, W_K, W_V, n_heads)
    mask = None if memory_mask is None else padding_mask(memory_mask)
    z = scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, Dh)
    return z.reshape(x.shape) @ W_O  # heads not moved back next to each other


def cross_split_without_transpose(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    B, T, D = x.shape
    S, Dh = memory.shape[1], D // n_heads
    q = (x @ W_Q).reshape(B, n_heads, T, Dh)
    k = (memory @ W_K).reshape(B, n_heads, S, Dh)
    v = (memory @ W_V).reshape(B, n_heads, S, Dh)
    mask = None if memory_mask is None else padding_mask(memory_mask)
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask)) @ W_O


def cross_scores_times_mask(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    q, k, v = _heads3(x, memory, W_Q, W_K, W_V, n_heads)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if memory_mask is not None:
        scores = scores * memory_mask[:, None, None, :]  # 0 is not -inf: padding keeps exp(0) = 1
    return merge_heads(torch.softmax(scores, dim=-1) @ v) @ W_O


def cross_weights_transposed(x, memory, W_Q, W_K, W_V, W_O, n_heads, memory_mask=None):
    return cross_attention(x, memory, W_Q.T, W_K.T, W_V.T, W_O.T, n_heads, memory_mask)


CROSS_ATTENTION.mistakes = tuple(CROSS_ATTENTION.mistakes) + (
    KnownMistake("memory mask inverted",
                 "Your mask keeps the PADDING and blocks the real source tokens. memory_mask is 1 for real tokens, "
                 "and course_lib's masks are True where a query may attend: padding_mask(memory_mask) as it is.",
                 cross_mask_inverted),
    KnownMistake("output projection W_O missing",
                 "After merging the heads, multiply by W_O: out = merge_heads(Z) @ W_O.", cross_no_output_projection),
    KnownMistake("heads merged without moving the head axis back",
                 "You reshaped (B, H, T, Dh) straight to (B, T, D), which mixes positions and heads. Move the head "
                 "axis next to Dh first: Z.transpose(1, 2).reshape(B, T, D), which is merge_heads(Z).",
                 cross_merged_without_transpose),
    KnownMistake("heads split by a plain reshape",
                 "You reshaped (B, T, D) straight to (B, H, T, Dh): that cuts the sequence, not the features, into "
                 "heads. Reshape to (B, T, H, Dh), then transpose(1, 2) (this is split_heads).",
                 cross_split_without_transpose),
    KnownMistake("scores multiplied by the memory mask",
                 "Multiplying the scores by the 0/1 mask gives padding a score of 0, and exp(0) = 1 is not zero "
                 "weight. Blocked keys need -inf before the softmax: pass mask=padding_mask(memory_mask).",
                 cross_scores_times_mask),
    KnownMistake("weight matrices transposed",
                 "You used x @ W.T (the nn.Linear habit). Here the weights are given as (in, out): Q = x @ W_Q, "
                 "K = memory @ W_K, V = memory @ W_V, out = ... @ W_O.", cross_weights_transposed),
)


class BlockCausalCross(_BlockMistake):
    """Wrong: the causal mask also given to the cross-attention."""

    def forward(self, x, memory, memory_mask=None):
        T, S = x.shape[1], memory.shape[1]
        cross = torch.ones(T, S, dtype=torch.bool).tril()
        if memory_mask is not None:
            cross = cross & padding_mask(memory_mask)
        x = x + self.self_attn(self.ln1(x), mask=causal_mask(T))
        x = x + self.cross_attn(self.ln2(x), memory, mask=cross)
        return x + self.mlp(self.ln3(x))


class BlockMemoryNormalised(_BlockMistake):
    """Wrong: ln2 applied to the memory as well."""

    def forward(self, x, memory, memory_mask=None):
        cross = None if memory_mask is None else padding_mask(memory_mask)
        x = x + self.self_attn(self.ln1(x), mask=causal_mask(x.shape[1]))
        x = x + self.cross_attn(self.ln2(x), self.ln2(memory), mask=cross)
        return x + self.mlp(self.ln3(x))


class BlockResidualFromNormalised(_BlockMistake):
    """Wrong: h = ln(x); x = h + sublayer(h) (the residual stream carries the normalised x)."""

    def forward(self, x, memory, memory_mask=None):
        cross = None if memory_mask is None else padding_mask(memory_mask)
        h = self.ln1(x)
        x = h + self.self_attn(h, mask=causal_mask(x.shape[1]))
        h = self.ln2(x)
        x = h + self.cross_attn(h, memory, mask=cross)
        h = self.ln3(x)
        return h + self.mlp(h)


class BlockNoMlpResidual(_BlockMistake):
    def forward(self, x, memory, memory_mask=None):
        cross = None if memory_mask is None else padding_mask(memory_mask)
        x = x + self.self_attn(self.ln1(x), mask=causal_mask(x.shape[1]))
        x = x + self.cross_attn(self.ln2(x), memory, mask=cross)
        return self.mlp(self.ln3(x))


class BlockTriuMask(_BlockMistake):
    """Wrong: triu instead of tril (each position sees itself and the FUTURE)."""

    def forward(self, x, memory, memory_mask=None):
        cross = None if memory_mask is None else padding_mask(memory_mask)
        T = x.shape[1]
        x = x + self.self_attn(self.ln1(x), mask=torch.ones(T, T, dtype=torch.bool).triu())
        x = x + self.cross_attn(self.ln2(x), memory, mask=cross)
        return x + self.mlp(self.ln3(x))


class BlockOneLayerNorm(_BlockMistake):
    """Wrong: ln1 before every sub-layer."""

    def forward(self, x, memory, memory_mask=None):
        cross = None if memory_mask is None else padding_mask(memory_mask)
        x = x + self.self_attn(self.ln1(x), mask=causal_mask(x.shape[1]))
        x = x + self.cross_attn(self.ln1(x), memory, mask=cross)
        return x + self.mlp(self.ln1(x))


class BlockParallel(_BlockMistake):
    """Wrong: the three sub-layers all read the block's input x."""

    def forward(self, x, memory, memory_mask=None):
        cross = None if memory_mask is None else padding_mask(memory_mask)
        a = self.self_attn(self.ln1(x), mask=causal_mask(x.shape[1]))
        c = self.cross_attn(self.ln2(x), memory, mask=cross)
        return x + a + c + self.mlp(self.ln3(x))


DECODER_BLOCK.mistakes = tuple(DECODER_BLOCK.mistakes) + (
    KnownMistake("causal mask in the cross-attention",
                 "You gave the cross-attention a causal mask, so target position t reads only the first t+1 source "
                 "words. The causal mask is for the SELF-attention; the cross-attention only masks source padding.",
                 BlockCausalCross),
    KnownMistake("memory normalised again",
                 "You apply ln2 to the memory too. The encoder output is already normalised (by the encoder's final "
                 "LayerNorm); ln2 normalises only the decoder stream: self.cross_attn(self.ln2(x), memory, ...).",
                 BlockMemoryNormalised),
    KnownMistake("residual added to the normalised input",
                 "You add each sub-layer's output to ln(x) instead of x (h = ln(x); x = h + f(h)). Pre-norm keeps "
                 "the residual stream un-normalised: x = x + f(ln(x)).", BlockResidualFromNormalised),
    KnownMistake("residual missing around the MLP",
                 "The MLP's output must be ADDED to the stream as well: return x + self.mlp(self.ln3(x)).",
                 BlockNoMlpResidual),
    KnownMistake("causal mask built with triu",
                 "Your self-attention mask is upper-triangular (triu): each position sees itself and the FUTURE. A "
                 "causal mask keeps the lower triangle: causal_mask(T), i.e. torch.ones(T, T).tril().bool().",
                 BlockTriuMask),
    KnownMistake("one LayerNorm for every sub-layer",
                 "Each sub-layer has its own LayerNorm with its own weights: ln1 before the self-attention, ln2 "
                 "before the cross-attention, ln3 before the MLP. You used ln1 everywhere.", BlockOneLayerNorm),
    KnownMistake("sub-layers in parallel",
                 "Your three sub-layers all read the block's input x and their outputs are summed. They run one "
                 "after the other: the cross-attention reads x AFTER the self-attention was added, the MLP after both.",
                 BlockParallel),
)
DECODER_BLOCK.properties = tuple(replace(p, fires_for=("no causal mask in the self-attention", "causal mask built with triu",
                                                       "cross-attention keys taken from the decoder"))
                                 for p in DECODER_BLOCK.properties)


class TranslatorStopsAtFirstEos(_TranslatorMistake):
    """Wrong: stops as soon as ANY row is finished."""

    def forward(self, src_ids, max_len):
        c = self.model.config
        src_mask = src_ids != c.pad_id
        out = torch.full((src_ids.shape[0], 1), c.bos_id, dtype=torch.long)
        finished = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        with torch.no_grad():
            memory = self.model.encode(src_ids, src_mask)
            while out.shape[1] < max_len and not bool(finished.any()):
                nxt = self.model.decode(out, memory, src_mask)[:, -1, :].argmax(dim=-1)
                out = torch.cat([out, nxt[:, None]], dim=1)
                finished |= nxt == c.eos_id
        return out


class TranslatorAlwaysMaxLen(_TranslatorMistake):
    """Wrong: always max_len columns (pads finished rows but never stops early)."""

    def forward(self, src_ids, max_len):
        c = self.model.config
        out = Translator.forward(self, src_ids, max_len)
        pad = torch.full((out.shape[0], max_len - out.shape[1]), c.pad_id, dtype=torch.long)
        return torch.cat([out, pad], dim=1)


class TranslatorEosReplaced(_TranslatorMistake):
    """Wrong: marks the row finished before writing, so the <eos> itself becomes <pad>."""

    def forward(self, src_ids, max_len):
        c = self.model.config
        out = Translator.forward(self, src_ids, max_len)
        return out.masked_fill(out == c.eos_id, c.pad_id)


class TranslatorStartsWithPad(_TranslatorMistake):
    """Wrong: the decoder starts from pad_id."""

    def forward(self, src_ids, max_len):
        c = self.model.config
        src_mask = src_ids != c.pad_id
        out = torch.full((src_ids.shape[0], 1), c.pad_id, dtype=torch.long)
        finished = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        with torch.no_grad():
            memory = self.model.encode(src_ids, src_mask)
            while out.shape[1] < max_len and not bool(finished.all()):
                nxt = self.model.decode(out, memory, src_mask)[:, -1, :].argmax(dim=-1)
                nxt = torch.where(finished, c.pad_id, nxt)
                out = torch.cat([out, nxt[:, None]], dim=1)
                finished |= nxt == c.eos_id
        return out


TRANSLATOR.mistakes = tuple(TRANSLATOR.mistakes) + (
    KnownMistake("stops when the first row is finished",
                 "Your loop stops as soon as ONE row produced <eos> (finished.any()). Keep going until EVERY row is "
                 "finished (finished.all()) or the output has max_len columns.", TranslatorStopsAtFirstEos),
    KnownMistake("does not stop when every row is finished",
                 "Your output always has max_len columns. Once every row has produced <eos> there is nothing left "
                 "to decode: stop the loop (while out.shape[1] < max_len and not finished.all()).",
                 TranslatorAlwaysMaxLen),
    KnownMistake("<eos> replaced by <pad>",
                 "Your rows never contain <eos>: you mark a row finished before writing its token, so the <eos> "
                 "itself becomes pad_id. Write the token first, then update finished |= next_token == eos_id.",
                 TranslatorEosReplaced),
    KnownMistake("started from <pad> instead of <bos>",
                 "The decoder starts from bos_id (the model config's), not pad_id: out = torch.full((B, 1), "
                 "c.bos_id).", TranslatorStartsWithPad),
)

register(SHIFT_RIGHT, CROSS_ATTENTION, DECODER_BLOCK, TRANSLATOR)
