"""Whole models from the blocks of unit 07: BERT (unit 08), GPT (unit 09), encoder-decoder (unit 10).

All three are the same recipe::

    ids (B, T) --embed--> x (B, T, D) --N blocks--> x (B, T, D) --head--> outputs

and differ only in which blocks they stack and which mask they use:

=================  ===========================  ======================  ==================
model              blocks                       mask                    head
=================  ===========================  ======================  ==================
BERT (encoder)     EncoderBlock, post-norm      padding                 MLM / classifier
GPT (decoder)      EncoderBlock, pre-norm       causal                  unembedding -> V
encoder-decoder    EncoderBlock + DecoderBlock  padding / causal+cross  unembedding -> V
=================  ===========================  ======================  ==================

Attention, masks, LayerNorm, MLP and the blocks come from :mod:`course_lib.attention`,
:mod:`course_lib.blocks` and :mod:`course_lib.positional`; nothing is re-implemented here.

``gpt_from_hf`` and ``bert_from_hf`` copy the weights of Hugging Face's ``GPT2LMHeadModel`` and
``BertModel`` into the course models (``tests/test_hf_equivalence.py`` proves the outputs agree
to 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.attention import KVCache, causal_mask, padding_mask
from course_lib.blocks import ACTIVATIONS, DecoderBlock, EncoderBlock, LayerNorm
from course_lib.positional import LearnedPositionalEmbedding, sinusoidal_encoding

__all__ = [
    "GPTConfig",
    "GPT",
    "BertConfig",
    "BertEncoder",
    "BertForMLM",
    "BertForClassification",
    "Seq2SeqConfig",
    "EncoderDecoder",
    "gpt_from_hf",
    "bert_from_hf",
]


# --------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------


def _check_positive_ints(**sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_heads(d_model: int, n_heads: int) -> None:
    if d_model % n_heads != 0:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads} (d_head = d_model / n_heads)")


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _check_config(config, **sizes: int) -> None:
    """What every model config checks: ``d_mlp`` defaults to ``4 * d_model``; the given sizes and
    n_layers, n_heads, d_model, d_mlp are positive ints; heads divide d_model; dropout and the
    activation name are valid."""
    if config.d_mlp is None:
        config.d_mlp = 4 * config.d_model if isinstance(config.d_model, int) else config.d_model
    _check_positive_ints(
        **sizes, n_layers=config.n_layers, n_heads=config.n_heads, d_model=config.d_model, d_mlp=config.d_mlp
    )
    _check_heads(config.d_model, config.n_heads)
    _check_dropout(config.dropout)
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {config.activation!r}")


def _check_special_ids(vocab_size: int, vocab_name: str, **ids: int) -> None:
    for name, value in ids.items():
        if not 0 <= value < vocab_size:
            raise ValueError(f"{name}={value} must be a token id in [0, {vocab_name}={vocab_size})")


def _check_ids(name: str, ids: Tensor, vocab_size: int, max_len: int, what: str = "max_len") -> None:
    """ids must be (B, T) integers with 1 <= T <= max_len."""
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        got = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a LongTensor of shape (B, T), got {got}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    T = ids.shape[1]
    if T == 0:
        raise ValueError(f"{name} has no tokens (shape {tuple(ids.shape)})")
    if T > max_len:
        raise ValueError(f"{name} has T={T} tokens but the model's {what} is {max_len}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must lie in [0, {vocab_size}) (the vocabulary size), found {low if low < 0 else high}")


# --------------------------------------------------------------------------
# GPT
# --------------------------------------------------------------------------


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT-2 style decoder-only model.

    ``d_mlp`` defaults to ``4 * d_model``; ``activation`` is a name from
    ``course_lib.blocks.ACTIVATIONS`` ("gelu_new" is GPT-2's tanh approximation, "gelu" the exact
    one); ``bias`` switches the biases of the attention and MLP projections; ``tie_weights``
    makes the unembedding the transpose of the token embedding (one shared matrix).
    """

    vocab_size: int
    block_size: int
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int | None = None
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    eps: float = 1e-5
    activation: str = "gelu_new"

    def __post_init__(self) -> None:
        _check_config(self, vocab_size=self.vocab_size, block_size=self.block_size)


class GPT(nn.Module):
    """Decoder-only transformer (GPT-2 layout)::

        x      = W_E[ids] + W_pos[positions]           (B, T, D)
        x      = block_l(x, causal mask)  for l = 1..L  pre-norm EncoderBlocks
        logits = ln_f(x) @ W_U                          (B, T, V)    W_U = W_E^T when tied

    ``forward(input_ids, targets=None, kv_caches=None)`` returns logits (B, T, V), or
    ``(logits, loss)`` when ``targets`` (B, T) are given (mean cross-entropy, ``-100`` ignored).

    With ``kv_caches`` (one :class:`~course_lib.attention.KVCache` per block, see
    :meth:`new_kv_caches`) the ids are the *new* tokens only: they are placed at positions
    ``len(cache) ..`` and attend to everything cached so far (used by
    :func:`course_lib.generation.generate`).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
        c = self.config = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)  # W_E (V, D)
        self.pos_emb = LearnedPositionalEmbedding(c.block_size, c.d_model)  # W_pos (block_size, D)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                c.d_model,
                c.n_heads,
                c.d_mlp,
                norm_first=True,
                dropout=c.dropout,
                activation=c.activation,
                eps=c.eps,
                bias=c.bias,
            )
            for _ in range(c.n_layers)
        )
        self.ln_f = LayerNorm(c.d_model, eps=c.eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)  # W_U, stored (V, D)
        if c.tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # one shared Parameter
        # the (block_size, block_size) causal mask, built once and sliced in forward
        self.register_buffer("causal", causal_mask(c.block_size), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) for matrices and embeddings, zero biases, and the
        projections that write into the residual stream (W_O, MLP down) scaled by 1/sqrt(2 L),
        so the variance of the residual stream does not grow with depth."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Embedding, LearnedPositionalEmbedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.W_O.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.down.weight, mean=0.0, std=residual_std)

    def new_kv_caches(self) -> list[KVCache]:
        """One empty KV cache per block."""
        return [KVCache() for _ in self.blocks]

    def forward(
        self,
        input_ids: Tensor,
        targets: Tensor | None = None,
        kv_caches: list[KVCache] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        c = self.config
        past = 0
        if kv_caches is not None:
            if len(kv_caches) != c.n_layers:
                raise ValueError(f"kv_caches has {len(kv_caches)} caches but the model has {c.n_layers} blocks")
            past = len(kv_caches[0])
        if isinstance(input_ids, Tensor) and input_ids.dim() == 2 and past + input_ids.shape[1] > c.block_size:
            raise ValueError(
                f"input_ids has T={input_ids.shape[1]} tokens (+{past} cached) but block_size is "
                f"{c.block_size}; crop the context to the last {c.block_size} tokens"
            )
        _check_ids("input_ids", input_ids, c.vocab_size, c.block_size, "block_size")
        T = input_ids.shape[1]

        positions = T if past == 0 else torch.arange(past, past + T, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(positions)  # (B, T, D)
        x = self.drop(x)
        # query i (absolute position past + i) may see keys 0 .. past + i; one new token sees all
        mask = None if T == 1 else self.causal[past : past + T, : past + T]  # (T, past + T)
        for l, block in enumerate(self.blocks):
            cache = None if kv_caches is None else kv_caches[l]
            x = block(x, mask=mask, kv_cache=cache)  # (B, T, D)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits
        if targets.shape != input_ids.shape:
            raise ValueError(f"targets must have shape {tuple(input_ids.shape)} like input_ids, got {tuple(targets.shape)}")
        # F.cross_entropy computes exactly course_lib.softmax.cross_entropy (tests/test_softmax.py);
        # the fused kernel is used here because this line runs at every training step.
        loss = F.cross_entropy(logits.reshape(-1, c.vocab_size), targets.reshape(-1), ignore_index=-100)
        return logits, loss


# --------------------------------------------------------------------------
# BERT
# --------------------------------------------------------------------------


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder. ``d_mlp`` defaults to ``4 * d_model``; BERT uses
    the exact GELU and LayerNorm eps 1e-12."""

    vocab_size: int
    max_len: int
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int | None = None
    type_vocab_size: int = 2
    dropout: float = 0.0
    eps: float = 1e-12
    pad_id: int = 0
    activation: str = "gelu"

    def __post_init__(self) -> None:
        _check_config(self, vocab_size=self.vocab_size, max_len=self.max_len, type_vocab_size=self.type_vocab_size)
        _check_special_ids(self.vocab_size, "vocab_size", pad_id=self.pad_id)


class BertEncoder(nn.Module):
    """BERT: bidirectional encoder with post-norm blocks::

        x = LN(W_E[ids] + W_pos[positions] + W_type[token_type_ids])     (B, T, D)
        x = block_l(x, padding mask)  for l = 1..L        x = LN(x + attn(x)); x = LN(x + mlp(x))

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` -> hidden states (B, T, D).
    ``attention_mask`` (B, T) is 1 for real tokens and 0 for padding (Hugging Face's convention);
    padding keys are blocked for every query. ``token_type_ids`` (B, T) default to 0 (segment A).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise ValueError(f"config must be a BertConfig, got {type(config).__name__}")
        c = self.config = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)  # (V, D)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)  # (max_len, D)
        self.type_emb = nn.Embedding(c.type_vocab_size, c.d_model)  # (n_types, D)
        self.emb_ln = LayerNorm(c.d_model, eps=c.eps)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                c.d_model, c.n_heads, c.d_mlp, norm_first=False, dropout=c.dropout, activation=c.activation, eps=c.eps
            )
            for _ in range(c.n_layers)
        )

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        c = self.config
        _check_ids("input_ids", input_ids, c.vocab_size, c.max_len)
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids must have shape {tuple(input_ids.shape)} like input_ids, got {tuple(token_type_ids.shape)}"
            )
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must have shape (B, T) = {tuple(input_ids.shape)} (1 = real token), "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = padding_mask(attention_mask)  # (B, 1, 1, T) True = real token
        x = self.tok_emb(input_ids) + self.pos_emb(T) + self.type_emb(token_type_ids)  # (B, T, D)
        x = self.drop(self.emb_ln(x))
        for block in self.blocks:
            x = block(x, mask=mask)  # (B, T, D)
        return x


class BertForMLM(nn.Module):
    """BERT with the masked-language-model head (as in the paper and Hugging Face)::

        h      = LN(gelu(hidden W_t + b_t))      (B, T, D)   a "transform" layer
        logits = h W_E^T + b                     (B, T, V)   tied to the word embeddings
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.encoder = BertEncoder(config)
        D, V = config.d_model, config.vocab_size
        self.transform = nn.Linear(D, D)
        self.act = ACTIVATIONS[config.activation]
        self.transform_ln = LayerNorm(D, eps=config.eps)
        self.out_bias = nn.Parameter(torch.zeros(V))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        h = self.transform_ln(self.act(self.transform(hidden)))  # (B, T, D)
        return h @ self.encoder.tok_emb.weight.T + self.out_bias  # (B, T, V)


class BertForClassification(nn.Module):
    """Sentence classifier on top of a BERT encoder, reading the [CLS] position (0)::

        pooled = tanh(hidden[:, 0] W_p + b_p)    (B, D)     BERT's "pooler"
        logits = dropout(pooled) W_c + b_c       (B, n_classes)
    """

    def __init__(self, encoder: BertEncoder, n_classes: int, dropout: float = 0.0):
        super().__init__()
        if not isinstance(encoder, BertEncoder):
            raise ValueError(f"encoder must be a BertEncoder, got {type(encoder).__name__}")
        _check_positive_ints(n_classes=n_classes)
        D = encoder.config.d_model
        self.encoder = encoder
        self.pooler = nn.Linear(D, D)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(D, n_classes)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # (B, D) the [CLS] position
        return self.classifier(self.drop(pooled))  # (B, n_classes)


# --------------------------------------------------------------------------
# Encoder-decoder
# --------------------------------------------------------------------------


@dataclass
class Seq2SeqConfig:
    """Hyper-parameters of the encoder-decoder (translation) model. The same ``n_layers`` is
    used for the encoder and the decoder; ``max_len`` bounds source and target lengths."""

    src_vocab_size: int
    tgt_vocab_size: int
    max_len: int
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int | None = None
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    activation: str = "gelu"
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_config(
            self, src_vocab_size=self.src_vocab_size, tgt_vocab_size=self.tgt_vocab_size, max_len=self.max_len
        )
        _check_special_ids(self.src_vocab_size, "src_vocab_size", pad_id=self.pad_id)
        _check_special_ids(self.tgt_vocab_size, "tgt_vocab_size", pad_id=self.pad_id, bos_id=self.bos_id, eos_id=self.eos_id)
        if self.d_model % 2:
            raise ValueError(f"d_model={self.d_model} must be even for the sinusoidal positional encoding")


class EncoderDecoder(nn.Module):
    """The transformer of "Attention is all you need", with pre-norm blocks::

        memory = ln_enc(enc_blocks(sqrt(D) E_src[src] + PE))       (B, S, D)   padding mask
        x      = dec_blocks(sqrt(D) E_tgt[tgt] + PE, memory)        (B, T, D)   causal + cross
        logits = ln_dec(x) W_out                                    (B, T, V_tgt)

    Positions use the fixed sinusoidal encoding of the paper (section 3.5), and the embeddings
    are scaled by sqrt(D) as there. We use pre-norm blocks (plus a final LayerNorm on each side)
    rather than the paper's post-norm because they train reliably without a learning-rate
    warm-up, which matters for the course's small CPU runs.

    Teacher forcing: ``forward(src_ids, tgt_in_ids)`` feeds ``<bos> y_1 .. y_{T-1}`` and the loss
    compares with ``y_1 .. y_T``. Source padding (``pad_id``) is masked out of the encoder
    self-attention and of the cross-attention. After a forward pass,
    :meth:`cross_attention_weights` returns each decoder layer's cross-attention pattern
    (B, H, T, S), handy for alignment heatmaps.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise ValueError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        c = self.config = config
        self.src_emb = nn.Embedding(c.src_vocab_size, c.d_model)  # (V_src, D)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.d_model)  # (V_tgt, D)
        self.register_buffer("pe", sinusoidal_encoding(c.max_len, c.d_model), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        block_args = dict(d_mlp=c.d_mlp, norm_first=True, dropout=c.dropout, activation=c.activation, eps=c.eps)
        self.encoder_blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_heads, **block_args) for _ in range(c.n_layers))
        self.decoder_blocks = nn.ModuleList(DecoderBlock(c.d_model, c.n_heads, **block_args) for _ in range(c.n_layers))
        self.ln_enc = LayerNorm(c.d_model, eps=c.eps)
        self.ln_dec = LayerNorm(c.d_model, eps=c.eps)
        self.out = nn.Linear(c.d_model, c.tgt_vocab_size)  # W_out (D -> V_tgt)
        self.register_buffer("causal", causal_mask(c.max_len), persistent=False)

    def _embed(self, emb: nn.Embedding, ids: Tensor) -> Tensor:
        T = ids.shape[1]
        x = emb(ids) * math.sqrt(self.config.d_model) + self.pe[:T]  # (B, T, D)
        return self.drop(x)

    def _source_mask(self, src_ids: Tensor, src_mask: Tensor | None) -> Tensor:
        """(B, 1, 1, S) key mask, True = real source token; default: src_ids != pad_id."""
        if src_mask is None:
            return padding_mask(src_ids, pad_id=self.config.pad_id)
        if src_mask.shape != src_ids.shape:
            raise ValueError(
                f"src_mask must have shape (B, S) = {tuple(src_ids.shape)} (1 = real token), got {tuple(src_mask.shape)}"
            )
        return padding_mask(src_mask)

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src_ids (B, S) -> memory (B, S, D)."""
        c = self.config
        _check_ids("src_ids", src_ids, c.src_vocab_size, c.max_len)
        mask = self._source_mask(src_ids, src_mask)  # (B, 1, 1, S)
        x = self._embed(self.src_emb, src_ids)  # (B, S, D)
        for block in self.encoder_blocks:
            x = block(x, mask=mask)
        return self.ln_enc(x)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """tgt_ids (B, T), memory (B, S, D) -> logits (B, T, V_tgt).

        ``src_mask`` (B, S) marks real source tokens (1) so padding is not attended to;
        :meth:`forward` derives it from ``pad_id``.
        """
        c = self.config
        _check_ids("tgt_ids", tgt_ids, c.tgt_vocab_size, c.max_len)
        if memory.dim() != 3 or memory.shape[0] != tgt_ids.shape[0] or memory.shape[2] != c.d_model:
            raise ValueError(
                f"memory must have shape (B={tgt_ids.shape[0]}, S, D={c.d_model}), got {tuple(memory.shape)}"
            )
        memory_mask = None if src_mask is None else padding_mask(src_mask)  # (B, 1, 1, S)
        T = tgt_ids.shape[1]
        self_mask = self.causal[:T, :T]  # (T, T)
        x = self._embed(self.tgt_emb, tgt_ids)  # (B, T, D)
        for block in self.decoder_blocks:
            x = block(x, memory, self_mask=self_mask, memory_mask=memory_mask)
        return self.out(self.ln_dec(x))  # (B, T, V_tgt)

    def forward(self, src_ids: Tensor, tgt_in_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src_ids (B, S), tgt_in_ids (B, T) -> logits (B, T, V_tgt)."""
        if src_mask is None:
            _check_ids("src_ids", src_ids, self.config.src_vocab_size, self.config.max_len)
            src_mask = src_ids != self.config.pad_id  # (B, S)
        memory = self.encode(src_ids, src_mask)
        return self.decode(tgt_in_ids, memory, src_mask)

    def cross_attention_weights(self) -> list[Tensor]:
        """Each decoder layer's most recent cross-attention weights (B, H, T, S), detached."""
        return [block.cross_attn.last_weights for block in self.decoder_blocks]


# --------------------------------------------------------------------------
# Loading Hugging Face weights
# --------------------------------------------------------------------------


def _copy(dst: Tensor, src: Tensor, name: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"{name}: expected a tensor of shape {tuple(dst.shape)}, got {tuple(src.shape)}")
    with torch.no_grad():
        dst.copy_(src)


def _activation_name(hf_name: str) -> str:
    """Map a Hugging Face activation name to one of course_lib.blocks.ACTIVATIONS."""
    names = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
    if hf_name not in names:
        raise ValueError(f"activation {hf_name!r} is not supported; supported: {sorted(names)}")
    return names[hf_name]


def gpt_from_hf(hf_model) -> GPT:
    """Build a course :class:`GPT` with the weights of a Hugging Face ``GPT2LMHeadModel``.

    Hugging Face's GPT-2 uses ``Conv1D`` layers, which compute ``x @ W + b`` with ``W`` stored
    as (in, out); ``nn.Linear`` computes ``x @ W.T + b`` with ``W`` stored as (out, in). So every
    matrix is transposed on the way in. ``c_attn`` holds W_Q, W_K, W_V side by side (D, 3D):
    it is split into three (D, D) blocks. Everything the config says (sizes, eps, activation,
    tied embeddings) is carried over; options the course model does not implement raise
    ValueError. The result is in eval mode.
    """
    hf = hf_model
    cfg = hf.config
    for option, default in (("scale_attn_by_inverse_layer_idx", False), ("reorder_and_upcast_attn", False)):
        if getattr(cfg, option, default) != default:
            raise ValueError(f"GPT-2 config option {option}={getattr(cfg, option)} is not supported")
    if not getattr(cfg, "scale_attn_weights", True):
        raise ValueError("GPT-2 config option scale_attn_weights=False is not supported")
    transformer = hf.transformer
    tied = hf.lm_head.weight.data_ptr() == transformer.wte.weight.data_ptr()
    config = GPTConfig(
        vocab_size=cfg.vocab_size,
        block_size=cfg.n_positions,
        n_layers=cfg.n_layer,
        n_heads=cfg.n_head,
        d_model=cfg.n_embd,
        d_mlp=cfg.n_inner if cfg.n_inner is not None else 4 * cfg.n_embd,
        dropout=0.0,
        bias=True,
        tie_weights=tied,
        eps=cfg.layer_norm_epsilon,
        activation=_activation_name(cfg.activation_function),
    )
    model = GPT(config)
    D = config.d_model
    _copy(model.tok_emb.weight, transformer.wte.weight, "wte")
    _copy(model.pos_emb.weight, transformer.wpe.weight, "wpe")
    for l, (ours, theirs) in enumerate(zip(model.blocks, transformer.h)):
        p = f"h.{l}."
        _copy(ours.ln1.weight, theirs.ln_1.weight, p + "ln_1.weight")
        _copy(ours.ln1.bias, theirs.ln_1.bias, p + "ln_1.bias")
        W_qkv, b_qkv = theirs.attn.c_attn.weight, theirs.attn.c_attn.bias  # (D, 3D), (3D,)
        for i, lin in enumerate((ours.attn.W_Q, ours.attn.W_K, ours.attn.W_V)):
            _copy(lin.weight, W_qkv[:, i * D : (i + 1) * D].T, p + "attn.c_attn.weight")  # (D, D)
            _copy(lin.bias, b_qkv[i * D : (i + 1) * D], p + "attn.c_attn.bias")
        _copy(ours.attn.W_O.weight, theirs.attn.c_proj.weight.T, p + "attn.c_proj.weight")
        _copy(ours.attn.W_O.bias, theirs.attn.c_proj.bias, p + "attn.c_proj.bias")
        _copy(ours.ln2.weight, theirs.ln_2.weight, p + "ln_2.weight")
        _copy(ours.ln2.bias, theirs.ln_2.bias, p + "ln_2.bias")
        _copy(ours.mlp.up.weight, theirs.mlp.c_fc.weight.T, p + "mlp.c_fc.weight")  # (d_mlp, D)
        _copy(ours.mlp.up.bias, theirs.mlp.c_fc.bias, p + "mlp.c_fc.bias")
        _copy(ours.mlp.down.weight, theirs.mlp.c_proj.weight.T, p + "mlp.c_proj.weight")  # (D, d_mlp)
        _copy(ours.mlp.down.bias, theirs.mlp.c_proj.bias, p + "mlp.c_proj.bias")
    _copy(model.ln_f.weight, transformer.ln_f.weight, "ln_f.weight")
    _copy(model.ln_f.bias, transformer.ln_f.bias, "ln_f.bias")
    if not tied:
        _copy(model.lm_head.weight, hf.lm_head.weight, "lm_head.weight")
    return model.eval()


def bert_from_hf(hf_model) -> BertEncoder:
    """Build a course :class:`BertEncoder` with the weights of a Hugging Face ``BertModel``
    (or any model with a ``.bert`` attribute, e.g. ``BertForMaskedLM``).

    ``nn.Linear`` on both sides, so no transposes. Name map per layer::

        attention.self.query/key/value   -> attn.W_Q / W_K / W_V
        attention.output.dense           -> attn.W_O
        attention.output.LayerNorm       -> ln1      (post-norm: after the attention residual)
        intermediate.dense, output.dense -> mlp.up, mlp.down
        output.LayerNorm                 -> ln2

    The pooler is not copied (the encoder returns the last hidden states). The result is in
    eval mode.
    """
    hf = getattr(hf_model, "bert", hf_model)
    cfg = hf.config
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type={cfg.position_embedding_type!r} is not supported (only 'absolute')")
    config = BertConfig(
        vocab_size=cfg.vocab_size,
        max_len=cfg.max_position_embeddings,
        n_layers=cfg.num_hidden_layers,
        n_heads=cfg.num_attention_heads,
        d_model=cfg.hidden_size,
        d_mlp=cfg.intermediate_size,
        type_vocab_size=cfg.type_vocab_size,
        dropout=0.0,
        eps=cfg.layer_norm_eps,
        pad_id=cfg.pad_token_id if cfg.pad_token_id is not None else 0,
        activation=_activation_name(cfg.hidden_act),
    )
    model = BertEncoder(config)
    emb = hf.embeddings
    _copy(model.tok_emb.weight, emb.word_embeddings.weight, "word_embeddings")
    _copy(model.pos_emb.weight, emb.position_embeddings.weight, "position_embeddings")
    _copy(model.type_emb.weight, emb.token_type_embeddings.weight, "token_type_embeddings")
    _copy(model.emb_ln.weight, emb.LayerNorm.weight, "embeddings.LayerNorm.weight")
    _copy(model.emb_ln.bias, emb.LayerNorm.bias, "embeddings.LayerNorm.bias")
    pairs = (
        ("attn.W_Q", "attention.self.query"),
        ("attn.W_K", "attention.self.key"),
        ("attn.W_V", "attention.self.value"),
        ("attn.W_O", "attention.output.dense"),
        ("ln1", "attention.output.LayerNorm"),
        ("mlp.up", "intermediate.dense"),
        ("mlp.down", "output.dense"),
        ("ln2", "output.LayerNorm"),
    )
    for l, (ours, theirs) in enumerate(zip(model.blocks, hf.encoder.layer)):
        for our_name, their_name in pairs:
            dst, src = ours.get_submodule(our_name), theirs.get_submodule(their_name)
            _copy(dst.weight, src.weight, f"encoder.layer.{l}.{their_name}.weight")
            _copy(dst.bias, src.bias, f"encoder.layer.{l}.{their_name}.bias")
    return model.eval()

# --------------------------------------------------------------------------
# Unit 11: the vision transformer lives in its own module (course_lib.vit)
# --------------------------------------------------------------------------
from course_lib.vit import ViTConfig, ViTEncoder, ViTForClassification, vit_from_hf  # noqa: E402

__all__ += ["ViTConfig", "ViTEncoder", "ViTForClassification", "vit_from_hf"]


# --------------------------------------------------------------------------
# T5 (unit 10, "what T5 changed") lives in its own module; re-exported here.
# --------------------------------------------------------------------------

from course_lib.t5 import T5, T5Config, t5_from_hf  # noqa: E402

__all__ += ["T5Config", "T5", "t5_from_hf"]
