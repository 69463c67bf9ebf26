"""The vision transformer (unit 11): an image as a sequence of patch tokens.

Dosovitskiy et al. (2020), "An image is worth 16x16 words", feed an image to the same encoder that
reads sentences (units 07-08). The only new part is how the tokens are made::

    images (B, C, H, W)
      --patchify-->  patches (B, N, C*p*p)        N = (H/p) * (W/p) squares of p x p pixels, row by row
      --W_patch--->  x (B, N, D)                  one linear projection, shared by every patch
      --[CLS]----->  x (B, 1 + N, D)              a learned vector in front, as in BERT
      --+ W_pos--->  x (B, 1 + N, D)              one learned position vector per token ([CLS] too)
      --L blocks-->  x (B, 1 + N, D)              pre-norm EncoderBlocks, no mask (every patch sees all)
      --LN-------->  hidden states (B, 1 + N, D)  what ``ViTModel(...).last_hidden_state`` returns
      --head------>  logits (B, n_classes)        a linear layer on the [CLS] vector

Cutting an image into patches and projecting each one is exactly a ``Conv2d`` with kernel = stride = p
(:func:`patch_conv_equivalent` builds that convolution; ``tests/test_vit.py`` proves the two equal).
``vit_from_hf`` copies a Hugging Face ``ViTModel`` into the course's :class:`ViTEncoder`
(``tests/test_hf_vit.py``: same hidden states to 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from course_lib.blocks import ACTIVATIONS, EncoderBlock, LayerNorm
from course_lib.positional import LearnedPositionalEmbedding

__all__ = [
    "patchify",
    "unpatchify",
    "check_images",
    "PatchEmbedding",
    "patch_conv_equivalent",
    "ViTConfig",
    "ViTEncoder",
    "ViTForClassification",
    "vit_from_hf",
]


# --------------------------------------------------------------------------
# Images -> patches
# --------------------------------------------------------------------------


def check_images(images: Tensor, patch_size: int, channels: int | None = None, image_size: int | None = None) -> None:
    """Raise a ValueError naming the problem unless ``images`` is a float (B, C, H, W) batch whose H and W are
    multiples of ``patch_size`` (and, when given, C == ``channels`` and H == W == ``image_size``)."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor of shape (B, C, H, W), got {got}")
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must hold floats (pixel values), got dtype {images.dtype}")
    B, C, H, W = images.shape
    if channels is not None and C != channels:
        raise ValueError(f"images have C={C} channels but the model expects channels={channels} "
                         f"(shape (B, C, H, W) = {tuple(images.shape)})")
    if H % patch_size or W % patch_size:
        raise ValueError(f"image size H x W = {H} x {W} is not divisible by patch_size={patch_size}")
    if image_size is not None and (H, W) != (image_size, image_size):
        raise ValueError(f"images are {H} x {W} but the model's image_size is {image_size} "
                         f"(its position table has one row per patch of a {image_size} x {image_size} image)")


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping p x p patches and flatten each one.

    images (B, C, H, W) -> patches (B, N, C*p*p) with N = (H/p) * (W/p).

    Patch ``n = r * (W/p) + c`` is the square in patch-row ``r``, patch-column ``c`` (row by row, like
    reading a page), and its vector lists the pixels channel by channel, each channel row by row::

        patches[b, r * (W/p) + c, ch * p*p + i * p + j] = images[b, ch, r*p + i, c*p + j]

    That is the order in which a ``Conv2d`` kernel of shape (D, C, p, p) is flattened, so
    ``patchify(x) @ conv.weight.reshape(D, -1).T + conv.bias`` equals the convolution's output.
    """
    check_images(images, patch_size)
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, i, cols, j)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, i, j): patch position first, its pixels last
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)


def unpatchify(patches: Tensor, patch_size: int, channels: int, height: int, width: int) -> Tensor:
    """The inverse of :func:`patchify`: (B, N, C*p*p) -> (B, C, H, W)."""
    p = patch_size
    B = patches.shape[0]
    x = patches.reshape(B, height // p, width // p, channels, p, p)  # (B, rows, cols, C, i, j)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(B, channels, height, width)


class PatchEmbedding(nn.Module):
    """Patch tokens: ``patchify`` then one shared linear map, (B, C, H, W) -> (B, N, D).

    ::

        x_n = patch_n W_patch + b_patch        patch_n in R^{C p p},  W_patch (C p p, D)

    (stored as ``nn.Linear(C*p*p, D)``, i.e. ``proj.weight`` is (D, C*p*p)).
    """

    def __init__(self, patch_size: int, channels: int, d_model: int):
        super().__init__()
        self.patch_size, self.channels = patch_size, channels
        self.proj = nn.Linear(channels * patch_size * patch_size, d_model)

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, self.patch_size, self.channels)
        return self.proj(patchify(images, self.patch_size))  # (B, N, D)


def patch_conv_equivalent(embedding: PatchEmbedding) -> nn.Conv2d:
    """The ``Conv2d(C, D, kernel_size=p, stride=p)`` that computes the same patch vectors.

    Its output (B, D, H/p, W/p), flattened over the patch grid and transposed to (B, N, D), equals
    ``embedding(images)``: each output pixel of a stride-p convolution sees exactly one patch, and the
    kernel (D, C, p, p) flattened to (D, C*p*p) is the linear map's weight.
    """
    p, C = embedding.patch_size, embedding.channels
    D = embedding.proj.out_features
    conv = nn.Conv2d(C, D, kernel_size=p, stride=p)
    with torch.no_grad():
        conv.weight.copy_(embedding.proj.weight.reshape(D, C, p, p))
        conv.bias.copy_(embedding.proj.bias)
    return conv


# --------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------


@dataclass
class ViTConfig:
    """Hyper-parameters of a ViT encoder. ``image_size`` (square images) must be a multiple of
    ``patch_size``; ``d_mlp`` defaults to ``4 * d_model``; ViT uses the exact GELU."""

    image_size: int
    patch_size: int
    channels: int
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int | None = None
    dropout: float = 0.0
    eps: float = 1e-6
    activation: str = "gelu"

    def __post_init__(self) -> None:
        from course_lib.models import _check_config  # the checks every course model config shares

        _check_config(self, image_size=self.image_size, patch_size=self.patch_size, channels=self.channels)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")

    @property
    def grid(self) -> int:
        """Patches per side: image_size / patch_size."""
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid**2


class ViTEncoder(nn.Module):
    """The ViT encoder::

        x = concat([CLS], patchify(images) W_patch + b_patch) + W_pos      (B, 1 + N, D)
        x = block_l(x)   for l = 1..L      pre-norm EncoderBlocks, no mask
        h = LN(x)                                                          (B, 1 + N, D)

    ``forward(images)`` -> h. Position 0 is [CLS]; position 1 + n is patch n (row by row).
    ``attention_weights()`` returns each block's self-attention pattern (B, H, 1 + N, 1 + N) of the last call.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise ValueError(f"config must be a ViTConfig, got {type(config).__name__}")
        c = self.config = config
        self.patch_emb = PatchEmbedding(c.patch_size, c.channels, c.d_model)
        self.cls_token = nn.Parameter(torch.randn(c.d_model) * 0.02)  # (D,)
        self.pos_emb = LearnedPositionalEmbedding(1 + c.n_patches, c.d_model)  # (1 + N, D)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_heads, c.d_mlp, norm_first=True, dropout=c.dropout,
                         activation=c.activation, eps=c.eps)
            for _ in range(c.n_layers)
        )
        self.ln = LayerNorm(c.d_model, eps=c.eps)

    def embed(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) -> the input tokens (B, 1 + N, D): [CLS] and patches, positions added."""
        c = self.config
        check_images(images, c.patch_size, c.channels, c.image_size)
        patches = self.patch_emb(images)  # (B, N, D)
        cls = self.cls_token.expand(patches.shape[0], 1, -1)  # (B, 1, D)
        x = torch.cat([cls, patches], dim=1)  # (B, 1 + N, D)
        return self.drop(x + self.pos_emb(x.shape[1]))  # every token, [CLS] included, gets its position

    def forward(self, images: Tensor) -> Tensor:
        x = self.embed(images)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)  # (B, 1 + N, D)
        return self.ln(x)

    def attention_weights(self) -> list[Tensor]:
        """Each block's most recent self-attention weights (B, H, 1 + N, 1 + N), detached."""
        return [block.attn.last_weights for block in self.blocks]


class ViTForClassification(nn.Module):
    """A ViT encoder and a linear head on the final [CLS] vector: (B, C, H, W) -> logits (B, n_classes)."""

    def __init__(self, config: ViTConfig, n_classes: int):
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.encoder = ViTEncoder(config)
        self.head = nn.Linear(config.d_model, n_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images)[:, 0])  # (B, n_classes) from [CLS]


# --------------------------------------------------------------------------
# Hugging Face weights
# --------------------------------------------------------------------------

# Our name -> Hugging Face's, per layer. transformers >= 5 uses the first spelling, older releases the second.
_LAYER_NAMES = {
    "attn.W_Q": ("attention.q_proj", "attention.attention.query"),
    "attn.W_K": ("attention.k_proj", "attention.attention.key"),
    "attn.W_V": ("attention.v_proj", "attention.attention.value"),
    "attn.W_O": ("attention.o_proj", "attention.output.dense"),
    "ln1": ("layernorm_before",),
    "ln2": ("layernorm_after",),
    "mlp.up": ("mlp.fc1", "intermediate.dense"),
    "mlp.down": ("mlp.fc2", "output.dense"),
}


def _hf_submodule(layer: nn.Module, names: tuple, where: str) -> nn.Module:
    for name in names:
        try:
            return layer.get_submodule(name)
        except AttributeError:
            continue
    raise ValueError(f"{where}: none of {names} found; this version of Hugging Face's ViT is not supported")


def vit_from_hf(hf_model) -> ViTEncoder:
    """Build a course :class:`ViTEncoder` with the weights of a Hugging Face ``ViTModel`` (or a model with a
    ``.vit`` attribute, e.g. ``ViTForImageClassification``).

    The patch projection is a ``Conv2d`` there: its kernel (D, C, p, p) is flattened to the linear map's
    (D, C*p*p) (see :func:`patch_conv_equivalent`). The blocks are pre-norm, ``layernorm_before`` /
    ``layernorm_after`` are our ``ln1`` / ``ln2``, and the final ``layernorm`` is our ``ln``. The pooler
    is not copied. Options the course model does not implement raise a ValueError naming them. The
    result is in eval mode.
    """
    hf = getattr(hf_model, "vit", hf_model)
    cfg = hf.config
    if getattr(cfg, "model_type", None) != "vit":
        raise ValueError(f"expected a ViT config (model_type 'vit'), got model_type={getattr(cfg, 'model_type', None)!r}")
    if not getattr(cfg, "qkv_bias", True):
        raise ValueError("qkv_bias=False is not supported: the course's attention has a bias on W_Q, W_K and W_V")
    image_size, patch_size = cfg.image_size, cfg.patch_size
    for name, value in (("image_size", image_size), ("patch_size", patch_size)):
        if not isinstance(value, int):
            raise ValueError(f"{name}={value!r} is not supported: the course's ViT takes square images (one int)")
    from course_lib.models import _activation_name, _copy  # raises for activations the course lacks

    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        channels=cfg.num_channels,
        n_layers=cfg.num_hidden_layers,
        n_heads=cfg.num_attention_heads,
        d_model=cfg.hidden_size,
        d_mlp=cfg.intermediate_size,
        dropout=0.0,
        eps=cfg.layer_norm_eps,
        activation=_activation_name(cfg.hidden_act),
    )
    model = ViTEncoder(config)
    emb = hf.embeddings
    D, C, p = config.d_model, config.channels, config.patch_size
    conv = emb.patch_embeddings.projection
    _copy(model.patch_emb.proj.weight, conv.weight.reshape(D, C * p * p), "patch_embeddings.projection.weight")
    _copy(model.patch_emb.proj.bias, conv.bias, "patch_embeddings.projection.bias")
    _copy(model.cls_token, emb.cls_token.reshape(D), "cls_token")
    _copy(model.pos_emb.weight, emb.position_embeddings.reshape(1 + config.n_patches, D), "position_embeddings")
    layers = hf.layers if hasattr(hf, "layers") else hf.encoder.layer
    for l, (ours, theirs) in enumerate(zip(model.blocks, layers)):
        for our_name, their_names in _LAYER_NAMES.items():
            dst = ours.get_submodule(our_name)
            src = _hf_submodule(theirs, their_names, f"layer {l}")
            _copy(dst.weight, src.weight, f"layers.{l}.{their_names[0]}.weight")
            _copy(dst.bias, src.bias, f"layers.{l}.{their_names[0]}.bias")
    _copy(model.ln.weight, hf.layernorm.weight, "layernorm.weight")
    _copy(model.ln.bias, hf.layernorm.bias, "layernorm.bias")
    return model.eval()
