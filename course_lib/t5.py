"""T5 (Raffel et al. 2020, "Exploring the limits of transfer learning"): what it changed in the 2017 transformer.

T5 is an encoder-decoder like :class:`course_lib.models.EncoderDecoder` (unit 10): a bidirectional encoder
reads the source, a causal decoder writes the target and cross-attends to the encoder's output. It changes
a handful of details, each of which is one short piece below:

==========================  ==============================================  ===============================
piece                       2017 transformer (course ``EncoderDecoder``)    T5
==========================  ==============================================  ===============================
positions                   sinusoidal vectors added to the embeddings      none; a learned bias per head
                                                                            on the scores, by bucketed
                                                                            relative distance
                                                                            (:mod:`course_lib.relative_position`)
attention scores            ``q . k / sqrt(d_k)``                           ``q . k + bias`` (the 1/sqrt(d_k)
                                                                            lives in the initialisation of W_Q)
LayerNorm                   ``(x - mean) / std * g + b``                    RMS: ``x / rms(x) * g`` (no mean,
                                                                            no bias)
biases in linear layers     yes                                             none
feed-forward                ``W_2 gelu(W_1 x)``                             ``W_o relu(W_i x)`` (T5), or
                                                                            ``W_o (gelu(W_0 x) * W_1 x)``
                                                                            (T5 v1.1, "gated-gelu")
vocabulary                  one per language                                one shared by encoder, decoder
                                                                            and (tied) output layer
output layer                ``W_out`` of its own                            tied: ``(x * d_model^-0.5) E^T``
decoder's first input       ``<bos>``                                       the pad token
==========================  ==============================================  ===============================

The blocks are pre-norm: ``x = x + sublayer(norm(x))``, with a final norm at the end of each stack.
``t5_from_hf`` copies a Hugging Face ``T5ForConditionalGeneration`` into :class:`T5`;
``tests/test_hf_t5.py`` proves the logits agree to 1e-5 and greedy decoding gives the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from course_lib.attention import attention_scores, causal_mask, merge_heads, padding_mask, split_heads
from course_lib.blocks import MLP, gelu_new
from course_lib.relative_position import RelativePositionBias, _check_bucket_sizes

__all__ = [
    "rms_norm",
    "T5LayerNorm",
    "GatedFeedForward",
    "biased_attention",
    "T5Attention",
    "T5EncoderBlock",
    "T5DecoderBlock",
    "T5Config",
    "T5",
    "t5_from_hf",
    "FEED_FORWARDS",
]

#: The feed-forward layers the course's T5 implements (Hugging Face's ``feed_forward_proj``).
FEED_FORWARDS = ("relu", "gated-gelu")


# --------------------------------------------------------------------------
# RMS LayerNorm
# --------------------------------------------------------------------------


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    """T5's LayerNorm: divide each vector by its root mean square, then scale. No mean, no bias.

    ::

        rms(x) = sqrt( mean_i x_i^2 + eps )            (over the last axis, D features)
        y      = x / rms(x) * weight

    Compared with unit 07's ``layer_norm`` the mean is not subtracted (so a constant vector is NOT sent
    to zero) and there is no shift ``bias``: cheaper, and it trains as well (Zhang and Sennrich 2019).
    """
    D = x.shape[-1]
    if weight.shape != (D,):
        raise ValueError(f"weight must have shape ({D},) to match x {tuple(x.shape)}, got {tuple(weight.shape)}")
    mean_square = x.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
    return x * torch.rsqrt(mean_square + eps) * weight  # (..., D)


class T5LayerNorm(nn.Module):
    """``rms_norm`` with a learnable ``weight`` (starts at 1) and no bias."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"x must have last dim d_model={self.weight.shape[0]}, got shape {tuple(x.shape)}")
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


# --------------------------------------------------------------------------
# Feed-forward
# --------------------------------------------------------------------------


class GatedFeedForward(nn.Module):
    """T5 v1.1's gated-GELU feed-forward (Shazeer 2020, "GLU variants improve transformer")::

        h   = gelu(x W_0) * (x W_1)       (B, T, d_ff)   one branch decides how much of the other passes
        out = h W_o                       (B, T, D)

    No biases. The GELU is the tanh approximation (Hugging Face's "gelu_new"). The original T5 uses unit
    07's ``MLP`` with ReLU and no biases instead: ``W_o relu(W_i x)``.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.gate = nn.Linear(d_model, d_ff, bias=False)  # W_0, through the GELU
        self.up = nn.Linear(d_model, d_ff, bias=False)  # W_1, linear
        self.down = nn.Linear(d_ff, d_model, bias=False)  # W_o
        self.act = gelu_new  # the formula written out, as Hugging Face computes it
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must have last dim d_model={self.d_model}, got shape {tuple(x.shape)}")
        h = self.act(self.gate(x)) * self.up(x)  # (B, T, d_ff)
        return self.down(self.dropout(h))  # (B, T, D)


def _feed_forward(kind: str, d_model: int, d_ff: int, dropout: float) -> nn.Module:
    if kind == "relu":
        return MLP(d_model, d_ff, activation="relu", bias=False, dropout=dropout)  # up = W_i, down = W_o
    if kind == "gated-gelu":
        return GatedFeedForward(d_model, d_ff, dropout)
    raise ValueError(f"feed_forward must be one of {FEED_FORWARDS}, got {kind!r}")


# --------------------------------------------------------------------------
# Attention with a bias and without 1/sqrt(d_k)
# --------------------------------------------------------------------------


def _additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A bool mask (True = may attend) as an additive one: 0 where allowed, the most negative float where not."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (True = may attend), got dtype {mask.dtype}")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, mask: Tensor | None = None,
                     dropout_p: float = 0.0) -> tuple[Tensor, Tensor]:
    """T5's attention: the position bias is added to the UNSCALED scores, before the softmax.

    q (B, H, T_q, Dh), k and v (B, H, T_k, Dh); bias broadcastable to (B, H, T_q, T_k) (e.g. (1, H, T_q, T_k)
    from :class:`~course_lib.relative_position.RelativePositionBias`); mask bool, True = may attend,
    broadcastable to the scores. Returns the output (B, H, T_q, Dh) and the weights (B, H, T_q, T_k)::

        weights = softmax(q k^T + bias + mask)      mask: 0 where allowed, a huge negative number where not
        out     = weights v

    There is no ``1 / sqrt(d_k)``: T5 initialises W_Q with a standard deviation ``sqrt(d_k)`` times smaller
    instead, which gives the same scores at the start of training. A key that is blocked for every query of
    a row would give a uniform row here, as in Hugging Face's T5 (the course's models never ask for one).
    """
    scores = attention_scores(q, k, scale=False)  # (B, H, T_q, T_k), no 1/sqrt(d_k)
    if bias is not None:
        scores = scores + bias  # the position bias, one number per head and distance
    if mask is not None:
        scores = scores + _additive(mask, scores.dtype)  # blocked keys -> weight 0
    weights = torch.softmax(scores, dim=-1)  # (B, H, T_q, T_k), rows sum to 1
    dropped = nn.functional.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    return dropped @ v, weights  # (B, H, T_q, Dh)


class T5Attention(nn.Module):
    """Multi-head attention the T5 way: no biases in the projections, no 1/sqrt(d_k), a position bias.

    ::

        Q = x_q W_Q, K = x_kv W_K, V = x_kv W_V      (B, T, H * d_kv) -> heads (B, H, T, d_kv)
        Z = softmax(Q K^T + position_bias + mask) V  (B, H, T_q, d_kv)
        out = concat_h(Z) W_O                        (B, T_q, D)

    ``d_kv`` (the size of each head) need not be ``d_model / n_heads`` in T5 (it is in every model this
    course trains). Self-attention when ``x_kv`` is None, cross-attention otherwise (which T5 gives no
    position bias). ``last_weights`` keeps the last attention pattern (B, H, T_q, T_k), detached.
    """

    def __init__(self, d_model: int, n_heads: int, d_kv: int, dropout: float = 0.0):
        super().__init__()
        self.d_model, self.n_heads, self.d_kv = d_model, n_heads, d_kv
        inner = n_heads * d_kv
        self.W_Q = nn.Linear(d_model, inner, bias=False)
        self.W_K = nn.Linear(d_model, inner, bias=False)
        self.W_V = nn.Linear(d_model, inner, bias=False)
        self.W_O = nn.Linear(inner, d_model, bias=False)
        self.dropout = dropout
        self.last_weights: Tensor | None = None

    def forward(self, x_q: Tensor, x_kv: Tensor | None = None, bias: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        x_kv = x_q if x_kv is None else x_kv
        H = self.n_heads
        q = split_heads(self.W_Q(x_q), H)  # (B, H, T_q, d_kv)
        k = split_heads(self.W_K(x_kv), H)  # (B, H, T_k, d_kv)
        v = split_heads(self.W_V(x_kv), H)  # (B, H, T_k, d_kv)
        p = self.dropout if self.training else 0.0
        z, weights = biased_attention(q, k, v, bias=bias, mask=mask, dropout_p=p)  # (B, H, T_q, d_kv)
        self.last_weights = weights.detach()
        return self.W_O(merge_heads(z))  # (B, T_q, D)


# --------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------


class T5EncoderBlock(nn.Module):
    """Pre-norm encoder block with RMS norms::

        x = x + attn(ln1(x), bias = encoder position bias, mask = source padding)
        x = x + ff(ln2(x))

    The position bias is passed in: the stack computes it once and every block adds the same one.
    """

    def __init__(self, d_model: int, n_heads: int, d_kv: int, d_ff: int, feed_forward: str = "relu",
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        self.ln1 = T5LayerNorm(d_model, eps)
        self.attn = T5Attention(d_model, n_heads, d_kv, dropout)
        self.ln2 = T5LayerNorm(d_model, eps)
        self.ff = _feed_forward(feed_forward, d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), bias=bias, mask=mask))  # (B, S, D)
        return x + self.drop(self.ff(self.ln2(x)))


class T5DecoderBlock(nn.Module):
    """Pre-norm decoder block with RMS norms::

        x = x + self_attn(ln1(x), bias = decoder (causal) position bias, mask = causal)
        x = x + cross_attn(ln2(x), memory, mask = source padding)      no position bias
        x = x + ff(ln3(x))
    """

    def __init__(self, d_model: int, n_heads: int, d_kv: int, d_ff: int, feed_forward: str = "relu",
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        self.ln1 = T5LayerNorm(d_model, eps)
        self.self_attn = T5Attention(d_model, n_heads, d_kv, dropout)
        self.ln2 = T5LayerNorm(d_model, eps)
        self.cross_attn = T5Attention(d_model, n_heads, d_kv, dropout)
        self.ln3 = T5LayerNorm(d_model, eps)
        self.ff = _feed_forward(feed_forward, d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, self_bias: Tensor | None = None, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.self_attn(self.ln1(x), bias=self_bias, mask=self_mask))  # (B, T, D)
        x = x + self.drop(self.cross_attn(self.ln2(x), memory, mask=memory_mask))
        return x + self.drop(self.ff(self.ln3(x)))


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass
class T5Config:
    """Hyper-parameters of a T5 model (Hugging Face's names in brackets).

    ``d_kv`` [d_kv] is the size of each head (default ``d_model // n_heads``); ``d_ff`` [d_ff] the hidden
    size of the feed-forward; ``n_decoder_layers`` [num_decoder_layers] defaults to ``n_layers``
    [num_layers]. ``feed_forward`` [feed_forward_proj] is "relu" (T5) or "gated-gelu" (T5 v1.1).
    ``num_buckets`` and ``max_distance`` [relative_attention_num_buckets / _max_distance] shape the
    relative position buckets. ``tie_weights``: the output layer is the shared embedding matrix;
    ``scale_output`` multiplies the decoder's output by ``d_model^-0.5`` before it (default: the same as
    ``tie_weights``, as in the original T5; T5 v1.1 unties and does not rescale).
    ``decoder_start_id`` defaults to ``pad_id``: T5's decoder starts from the pad token.
    """

    vocab_size: int
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    d_kv: int | None = None
    n_decoder_layers: int | None = None
    feed_forward: str = "relu"
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6
    dropout: float = 0.0
    pad_id: int = 0
    eos_id: int = 1
    decoder_start_id: int | None = None
    tie_weights: bool = True
    scale_output: bool | None = None

    def __post_init__(self) -> None:
        if self.d_kv is None and isinstance(self.d_model, int) and isinstance(self.n_heads, int) and self.n_heads > 0:
            if self.d_model % self.n_heads:
                raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                                 "pass d_kv (the size of each head) explicitly")
            self.d_kv = self.d_model // self.n_heads
        if self.n_decoder_layers is None:
            self.n_decoder_layers = self.n_layers
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "n_decoder_layers", "d_ff", "d_kv"):
            _positive_int(name, getattr(self, name))
        if self.feed_forward not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {FEED_FORWARDS}, got {self.feed_forward!r}")
        _check_bucket_sizes(self.num_buckets, self.max_distance, bidirectional=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.decoder_start_id is None:
            self.decoder_start_id = self.pad_id
        if self.scale_output is None:
            self.scale_output = self.tie_weights
        for name in ("pad_id", "eos_id", "decoder_start_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"{name}={value!r} must be a token id in [0, vocab_size={self.vocab_size})")


def _check_ids(name: str, ids, vocab_size: int) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        got = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a LongTensor of shape (B, T), got {got}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.shape[1] == 0:
        raise ValueError(f"{name} has no tokens (shape {tuple(ids.shape)})")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must lie in [0, {vocab_size}) (the vocabulary size), found {low if low < 0 else high}")


class T5(nn.Module):
    """T5 encoder-decoder::

        memory = ln_enc(enc_blocks(E[input_ids], bias_enc, padding))            (B, S, D)
        x      = ln_dec(dec_blocks(E[decoder_input_ids], memory, bias_dec))     (B, T, D)
        logits = (x * d_model^-0.5) E^T     when tied (else x W_out^T)         (B, T, V)

    ``E`` is ONE embedding (V, D) for the encoder, the decoder and (tied) the output. No positions are
    added to it: ``bias_enc`` (bidirectional) and ``bias_dec`` (causal) are computed once per forward pass
    from two :class:`~course_lib.relative_position.RelativePositionBias` tables and added in every layer of
    their stack. ``forward(input_ids, decoder_input_ids, attention_mask=None)`` -> logits (B, T_dec, V);
    ``attention_mask`` (B, S) is 1 for real source tokens and 0 for padding (Hugging Face's convention).
    Training: the decoder reads the targets shifted right with the pad token in front
    (``config.decoder_start_id``).
    """

    def __init__(self, config: T5Config):
        super().__init__()
        if not isinstance(config, T5Config):
            raise ValueError(f"config must be a T5Config, got {type(config).__name__}")
        c = self.config = config
        self.shared = nn.Embedding(c.vocab_size, c.d_model)  # E (V, D), one for everything
        self.encoder_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance, bidirectional=True)
        self.decoder_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance, bidirectional=False)
        args = dict(feed_forward=c.feed_forward, eps=c.eps, dropout=c.dropout)
        self.encoder_blocks = nn.ModuleList(
            T5EncoderBlock(c.d_model, c.n_heads, c.d_kv, c.d_ff, **args) for _ in range(c.n_layers))
        self.decoder_blocks = nn.ModuleList(
            T5DecoderBlock(c.d_model, c.n_heads, c.d_kv, c.d_ff, **args) for _ in range(c.n_decoder_layers))
        self.ln_enc = T5LayerNorm(c.d_model, c.eps)
        self.ln_dec = T5LayerNorm(c.d_model, c.eps)
        self.drop = nn.Dropout(c.dropout)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)  # (V, D)
        if c.tie_weights:
            self.lm_head.weight = self.shared.weight  # one shared Parameter
        self._init_weights()

    def _init_weights(self) -> None:
        """T5's initialisation (Mesh TensorFlow's): every matrix N(0, 1/fan_in), except W_Q, whose standard
        deviation is a further ``1/sqrt(d_kv)`` smaller. That is where the ``1/sqrt(d_k)`` of the 2017
        attention went: the scores start with the same size, and the model may learn to grow them.
        Embeddings N(0, 1); norms 1."""
        c = self.config
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features ** -0.5)
            elif isinstance(module, RelativePositionBias):
                nn.init.normal_(module.weight, std=c.d_model ** -0.5)
        for module in self.modules():
            if isinstance(module, T5Attention):
                nn.init.normal_(module.W_Q.weight, std=(c.d_model * c.d_kv) ** -0.5)
        nn.init.normal_(self.shared.weight, std=1.0)  # after the loop: the tied head must not overwrite it

    # -- the two halves ---------------------------------------------------------------------------

    def _source_mask(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        if attention_mask is None:
            return None
        if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
            got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
            raise ValueError(f"attention_mask must have shape (B, S) = {tuple(input_ids.shape)} like input_ids "
                             f"(1 = real token, 0 = padding), got {got}")
        return padding_mask(attention_mask)  # (B, 1, 1, S) True = real token

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """input_ids (B, S) -> memory (B, S, D)."""
        c = self.config
        _check_ids("input_ids", input_ids, c.vocab_size)
        mask = self._source_mask(input_ids, attention_mask)  # (B, 1, 1, S) or None
        S = input_ids.shape[1]
        bias = self.encoder_bias(S, S)  # (1, H, S, S), computed once, shared by every layer
        x = self.drop(self.shared(input_ids))  # (B, S, D), no positions added
        for block in self.encoder_blocks:
            x = block(x, bias=bias, mask=mask)
        return self.drop(self.ln_enc(x))

    def decode(self, decoder_input_ids: Tensor, memory: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """decoder_input_ids (B, T), memory (B, S, D), attention_mask (B, S) of the source -> logits (B, T, V)."""
        c = self.config
        _check_ids("decoder_input_ids", decoder_input_ids, c.vocab_size)
        B, T = decoder_input_ids.shape
        if not isinstance(memory, Tensor) or memory.dim() != 3 or memory.shape[0] != B or memory.shape[2] != c.d_model:
            got = tuple(memory.shape) if isinstance(memory, Tensor) else type(memory).__name__
            raise ValueError(f"memory must have shape (B={B}, S, D={c.d_model}), got {got}")
        memory_mask = None
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor) or attention_mask.shape != memory.shape[:2]:
                got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
                raise ValueError(f"attention_mask must have shape (B, S) = {tuple(memory.shape[:2])}, got {got}")
            memory_mask = padding_mask(attention_mask)  # (B, 1, 1, S)
        self_mask = causal_mask(T, device=decoder_input_ids.device)  # (T, T)
        self_bias = self.decoder_bias(T, T)  # (1, H, T, T), causal buckets
        x = self.drop(self.shared(decoder_input_ids))  # (B, T, D)
        for block in self.decoder_blocks:
            x = block(x, memory, self_bias=self_bias, self_mask=self_mask, memory_mask=memory_mask)
        x = self.drop(self.ln_dec(x))
        if c.scale_output:
            x = x * c.d_model ** -0.5  # the embedding vectors have norm ~sqrt(D); keep the logits O(1)
        return self.lm_head(x)  # (B, T, V)

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """input_ids (B, S), decoder_input_ids (B, T), attention_mask (B, S) or None -> logits (B, T, V)."""
        _check_ids("input_ids", input_ids, self.config.vocab_size)
        if isinstance(decoder_input_ids, Tensor) and decoder_input_ids.dim() == 2 and \
                decoder_input_ids.shape[0] != input_ids.shape[0]:
            raise ValueError(f"decoder_input_ids has batch size {decoder_input_ids.shape[0]} but input_ids has "
                             f"{input_ids.shape[0]}")
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, attention_mask)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int, attention_mask: Tensor | None = None,
                 stop_at_eos: bool = True) -> Tensor:
        """Greedy decoding from ``decoder_start_id``: (B, 1 + n) with n <= max_new_tokens.

        Encode once; then repeatedly run the decoder on the tokens so far and append the argmax of the last
        position. With ``stop_at_eos`` a row that produced ``eos_id`` continues with ``pad_id``, and decoding
        stops once every row has. Re-reads the whole prefix each step (no KV cache: short outputs here).
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        c = self.config
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(input_ids, attention_mask)  # (B, S, D)
            B = input_ids.shape[0]
            out = torch.full((B, 1), c.decoder_start_id, dtype=torch.long, device=input_ids.device)  # (B, 1)
            finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
            for _ in range(max_new_tokens):
                next_token = self.decode(out, memory, attention_mask)[:, -1].argmax(dim=-1)  # (B,)
                if stop_at_eos:
                    next_token = torch.where(finished, c.pad_id, next_token)
                    finished |= next_token == c.eos_id
                out = torch.cat([out, next_token[:, None]], dim=1)  # (B, t + 1)
                if stop_at_eos and bool(finished.all()):
                    break
        finally:
            self.train(was_training)
        return out

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


def t5_from_hf(hf_model) -> T5:
    """Build a course :class:`T5` with the weights of a Hugging Face ``T5ForConditionalGeneration``.

    Name map (``nn.Linear`` on both sides, no transposes)::

        shared                                         -> shared
        encoder.block.0.layer.0.SelfAttention.relative_attention_bias  -> encoder_bias.weight
        decoder.block.0.layer.0.SelfAttention.relative_attention_bias  -> decoder_bias.weight
        block.i.layer.0: SelfAttention.q/k/v/o, layer_norm              -> [en|de]coder_blocks[i].(self_)attn.W_Q/K/V/O, ln1
        decoder block.i.layer.1: EncDecAttention.q/k/v/o, layer_norm    -> decoder_blocks[i].cross_attn, ln2
        block.i.layer[-1]: DenseReluDense.wi (wi_0, wi_1), wo; layer_norm -> ff.up (gate, up), down; ln2 / ln3
        final_layer_norm                                                -> ln_enc / ln_dec
        lm_head                                                          -> lm_head (unless tied)

    Hugging Face keeps the bias table inside layer 0's self-attention and hands the computed bias to the
    later layers; the course keeps it next to the stack, which makes the sharing visible. The output is
    rescaled by ``d_model^-0.5`` when the config says so (``scale_decoder_outputs`` in transformers >= 5,
    ``tie_word_embeddings`` before). Unsupported options (another ``feed_forward_proj``, ...) raise
    ``ValueError``. The result is in eval mode.
    """
    cfg = getattr(hf_model, "config", None)
    if cfg is None or not all(hasattr(hf_model, name) for name in ("shared", "encoder", "decoder", "lm_head")):
        raise ValueError(f"hf_model must be a transformers T5ForConditionalGeneration, got {type(hf_model).__name__}")
    ff = getattr(cfg, "feed_forward_proj", "relu")
    if ff not in FEED_FORWARDS:
        raise ValueError(f"feed_forward_proj={ff!r} is not supported; the course's T5 implements {FEED_FORWARDS}")
    act = getattr(cfg, "dense_act_fn", "relu" if ff == "relu" else "gelu_new")
    if act != ("relu" if ff == "relu" else "gelu_new"):
        raise ValueError(f"dense_act_fn={act!r} with feed_forward_proj={ff!r} is not supported")
    start = getattr(cfg, "decoder_start_token_id", None)
    start = cfg.pad_token_id if start is None else start
    eos = cfg.eos_token_id[0] if isinstance(cfg.eos_token_id, (list, tuple)) else cfg.eos_token_id
    tied = hf_model.lm_head.weight.data_ptr() == hf_model.shared.weight.data_ptr()
    scale = getattr(cfg, "scale_decoder_outputs", None)
    scale = cfg.tie_word_embeddings if scale is None else scale
    config = T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_heads=cfg.num_heads, n_layers=cfg.num_layers,
        n_decoder_layers=cfg.num_decoder_layers, d_ff=cfg.d_ff, d_kv=cfg.d_kv, feed_forward=ff,
        num_buckets=cfg.relative_attention_num_buckets, max_distance=cfg.relative_attention_max_distance,
        eps=cfg.layer_norm_epsilon, dropout=0.0, pad_id=cfg.pad_token_id, eos_id=1 if eos is None else eos,
        decoder_start_id=start, tie_weights=tied, scale_output=bool(scale),
    )
    model = T5(config)
    _copy(model.shared.weight, hf_model.shared.weight, "shared.weight")
    if not tied:
        _copy(model.lm_head.weight, hf_model.lm_head.weight, "lm_head.weight")

    def attention(ours: T5Attention, theirs, name: str) -> None:
        for our, their in (("W_Q", "q"), ("W_K", "k"), ("W_V", "v"), ("W_O", "o")):
            _copy(getattr(ours, our).weight, getattr(theirs, their).weight, f"{name}.{their}.weight")

    def feed_forward(ours: nn.Module, theirs, name: str) -> None:
        pairs = (("up", "wi"), ("down", "wo")) if ff == "relu" else (("gate", "wi_0"), ("up", "wi_1"), ("down", "wo"))
        for our, their in pairs:
            _copy(getattr(ours, our).weight, getattr(theirs, their).weight, f"{name}.{their}.weight")

    for side, blocks, bias in (("encoder", model.encoder_blocks, model.encoder_bias),
                               ("decoder", model.decoder_blocks, model.decoder_bias)):
        stack = getattr(hf_model, side)
        first = stack.block[0].layer[0].SelfAttention
        _copy(bias.weight, first.relative_attention_bias.weight,
              f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        for i, (ours, theirs) in enumerate(zip(blocks, stack.block)):
            p = f"{side}.block.{i}.layer"
            self_attn = ours.attn if side == "encoder" else ours.self_attn
            attention(self_attn, theirs.layer[0].SelfAttention, f"{p}.0.SelfAttention")
            _copy(ours.ln1.weight, theirs.layer[0].layer_norm.weight, f"{p}.0.layer_norm.weight")
            if side == "decoder":
                attention(ours.cross_attn, theirs.layer[1].EncDecAttention, f"{p}.1.EncDecAttention")
                _copy(ours.ln2.weight, theirs.layer[1].layer_norm.weight, f"{p}.1.layer_norm.weight")
            last = len(theirs.layer) - 1
            feed_forward(ours.ff, theirs.layer[last].DenseReluDense, f"{p}.{last}.DenseReluDense")
            ln = ours.ln2 if side == "encoder" else ours.ln3
            _copy(ln.weight, theirs.layer[last].layer_norm.weight, f"{p}.{last}.layer_norm.weight")
        _copy((model.ln_enc if side == "encoder" else model.ln_dec).weight, stack.final_layer_norm.weight,
              f"{side}.final_layer_norm.weight")
    return model.eval()
