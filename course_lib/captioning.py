"""The final project (unit 11): a captioner, a text decoder that cross-attends to an image's patches.

It is unit 10's encoder-decoder with the text encoder swapped for a ViT::

    memory = ViTEncoder(images)[:, 1:]                      (B, N, D)   the patch vectors ([CLS] dropped)
    x      = W_E[caption_in] + W_pos[positions]             (B, T, D)
    x      = DecoderBlock_l(x, memory, causal mask)         (B, T, D)   unit 10's blocks:
                 x = x + SelfAttn(LN1(x), causal)                        words see earlier words,
                 x = x + CrossAttn(LN2(x), memory)                       queries from the words, keys and
                 x = x + MLP(LN3(x))                                     values from the image patches
    logits = LN(x) W_out                                    (B, T, V)

Trained with teacher forcing (input ``<bos> w_1 .. w_{T-1}``, target ``w_1 .. w_T <eos>``) and decoded
greedily. After a forward pass, :meth:`ImageCaptioner.cross_attention_weights` gives each decoder layer's
(B, H, T, N) attention from every word to every patch: what the word "red" looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.attention import causal_mask
from course_lib.blocks import DecoderBlock, LayerNorm
from course_lib.positional import LearnedPositionalEmbedding
from course_lib.vit import ViTConfig, ViTEncoder

__all__ = ["CaptionerConfig", "ImageCaptioner", "caption_loss"]


@dataclass
class CaptionerConfig:
    """A ViT encoder (``vit``) and a text decoder of ``n_layers`` DecoderBlocks of the ViT's width.
    ``max_len`` bounds the caption length in tokens, ``<bos>`` and ``<eos>`` included."""

    vit: ViTConfig
    vocab_size: int
    max_len: int
    n_layers: int
    n_heads: int
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        from course_lib.models import _check_heads, _check_positive_ints, _check_special_ids

        if not isinstance(self.vit, ViTConfig):
            raise ValueError(f"vit must be a ViTConfig, got {type(self.vit).__name__}")
        _check_positive_ints(vocab_size=self.vocab_size, max_len=self.max_len, n_layers=self.n_layers,
                             n_heads=self.n_heads)
        _check_heads(self.vit.d_model, self.n_heads)
        _check_special_ids(self.vocab_size, "vocab_size", pad_id=self.pad_id, bos_id=self.bos_id, eos_id=self.eos_id)


class ImageCaptioner(nn.Module):
    """ViT encoder + causal text decoder with cross-attention to the patches (see the module docstring).

    ``forward(images, caption_in)`` -> logits (B, T, V); ``generate(images)`` -> greedy ids (B, <= max_len - 1).
    """

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        if not isinstance(config, CaptionerConfig):
            raise ValueError(f"config must be a CaptionerConfig, got {type(config).__name__}")
        c = self.config = config
        D = c.vit.d_model
        self.encoder = ViTEncoder(c.vit)
        self.tok_emb = nn.Embedding(c.vocab_size, D)  # (V, D)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, D)  # (max_len, D)
        self.blocks = nn.ModuleList(
            DecoderBlock(D, c.n_heads, c.vit.d_mlp, norm_first=True, activation=c.vit.activation, eps=c.vit.eps)
            for _ in range(c.n_layers)
        )
        self.ln = LayerNorm(D, eps=c.vit.eps)
        self.out = nn.Linear(D, c.vocab_size)  # W_out (D -> V)
        self.register_buffer("causal", causal_mask(c.max_len), persistent=False)

    def encode(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) -> memory (B, N, D): the encoder's patch vectors, without [CLS]."""
        return self.encoder(images)[:, 1:]

    def decode(self, caption_in: Tensor, memory: Tensor) -> Tensor:
        """caption_in (B, T) token ids, memory (B, N, D) -> logits (B, T, V)."""
        from course_lib.models import _check_ids

        c = self.config
        _check_ids("caption_in", caption_in, c.vocab_size, c.max_len)
        if memory.dim() != 3 or memory.shape[0] != caption_in.shape[0]:
            raise ValueError(f"memory must have shape (B={caption_in.shape[0]}, N, D), got {tuple(memory.shape)}")
        T = caption_in.shape[1]
        x = self.tok_emb(caption_in) + self.pos_emb(T)  # (B, T, D)
        for block in self.blocks:
            x = block(x, memory, self_mask=self.causal[:T, :T])  # (B, T, D)
        return self.out(self.ln(x))  # (B, T, V)

    def forward(self, images: Tensor, caption_in: Tensor) -> Tensor:
        return self.decode(caption_in, self.encode(images))

    @torch.no_grad()
    def generate(self, images: Tensor, max_new_tokens: int | None = None) -> Tensor:
        """Greedy captions: start from <bos>, append the most likely word until every row said <eos>.

        Returns the generated ids (B, n) without the <bos>; rows that ended early are padded with <eos>.
        """
        c = self.config
        n = c.max_len - 1 if max_new_tokens is None else max_new_tokens
        if n > c.max_len - 1:
            raise ValueError(f"max_new_tokens={n} does not fit: the decoder's max_len is {c.max_len} (with <bos>)")
        memory = self.encode(images)  # (B, N, D), computed once
        ids = torch.full((images.shape[0], 1), c.bos_id, dtype=torch.long, device=images.device)
        done = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for _ in range(n):
            nxt = self.decode(ids, memory)[:, -1].argmax(dim=-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, c.eos_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == c.eos_id
            if bool(done.all()):
                break
        return ids[:, 1:]

    def cross_attention_weights(self) -> list[Tensor]:
        """Each decoder layer's most recent cross-attention weights (B, H, T, N), detached."""
        return [block.cross_attn.last_weights for block in self.blocks]


def caption_loss(model: ImageCaptioner, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Teacher forcing on (images (B, C, H, W), ids (B, L) = <bos> words <eos> <pad>...): mean cross-entropy of
    predicting ids[:, 1:] from ids[:, :-1], padding ignored."""
    images, ids = batch
    logits = model(images, ids[:, :-1])  # (B, L-1, V)
    target = ids[:, 1:].masked_fill(ids[:, 1:] == model.config.pad_id, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
