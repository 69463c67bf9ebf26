"""The course ViT computes exactly what Hugging Face's ViTModel computes.

Tiny random configs are built here (no download): copy the weights with ``vit_from_hf``, then compare
``last_hidden_state`` of ``ViTModel(config, add_pooling_layer=False)`` to 1e-5.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import ViTConfig as HFViTConfig  # noqa: E402
from transformers import ViTForImageClassification, ViTModel  # noqa: E402

from course_lib.models import vit_from_hf  # noqa: E402
from course_lib.vit import ViTEncoder  # noqa: E402

ATOL = RTOL = 1e-5


def _tiny_vit(seed: int = 0, **overrides) -> ViTModel:
    torch.manual_seed(seed)
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  image_size=16, patch_size=4, num_channels=3)
    kwargs.update(overrides)
    model = ViTModel(HFViTConfig(**kwargs, attn_implementation="eager"), add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial LayerNorms, [CLS] and positions, so copying them is tested too
        for name, p in model.named_parameters():
            if "layernorm" in name or "cls_token" in name or "position" in name:
                p.add_(0.5 * torch.randn_like(p))
    return model


def _pixels(B: int, C: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(num_channels=1, image_size=12, patch_size=3, layer_norm_eps=1e-6, intermediate_size=40),
        dict(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, patch_size=8, initializer_range=0.3),
        dict(patch_size=2, image_size=8, num_channels=2),
    ],
    ids=["defaults", "grey-12px-patch3-eps", "wide-patch8-large-init", "patch2"],
)
def test_vit_hidden_states_match_hugging_face(overrides):
    hf = _tiny_vit(**overrides)
    ours = vit_from_hf(hf)
    assert isinstance(ours, ViTEncoder) and not ours.training
    cfg = hf.config
    assert ours.config.eps == cfg.layer_norm_eps and ours.config.n_layers == cfg.num_hidden_layers
    x = _pixels(3, cfg.num_channels, cfg.image_size)
    with torch.no_grad():
        expected = hf(pixel_values=x).last_hidden_state
        got = ours(x)
    n_patches = (cfg.image_size // cfg.patch_size) ** 2
    assert got.shape == expected.shape == (3, 1 + n_patches, cfg.hidden_size)
    err = (got - expected).abs().max().item()
    print(f"max |course - HF| = {err:.2e}")
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


def test_vit_from_a_classification_model_and_a_wrong_copy_is_caught():
    torch.manual_seed(1)
    cfg = HFViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                      image_size=8, patch_size=4, num_channels=3, num_labels=5, attn_implementation="eager")
    hf = ViTForImageClassification(cfg).eval()
    ours = vit_from_hf(hf)  # reads .vit
    x = _pixels(2, 3, 8, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf.vit(pixel_values=x).last_hidden_state, atol=ATOL, rtol=RTOL)
        # the comparison can fail: patch positions swapped (row/column order) must differ
        ours.pos_emb.weight[1:3] = ours.pos_emb.weight[1:3].flip(0).clone()
        assert (ours(x) - hf.vit(pixel_values=x).last_hidden_state).abs().max() > 1e-3


@pytest.mark.parametrize(
    "overrides, parameter",
    [
        (dict(qkv_bias=False), "qkv_bias"),
        (dict(hidden_act="silu"), "silu"),
        (dict(image_size=(16, 12)), "image_size"),
    ],
)
def test_unsupported_hugging_face_configs_raise(overrides, parameter):
    hf = _tiny_vit(**overrides)
    with pytest.raises(ValueError, match=parameter):
        vit_from_hf(hf)


def test_bad_pixel_values_raise_value_errors_naming_the_parameter():
    ours = vit_from_hf(_tiny_vit())
    with pytest.raises(ValueError, match="channels=3"):
        ours(_pixels(2, 1, 16))
    with pytest.raises(ValueError, match="image_size is 16"):
        ours(_pixels(2, 3, 12))
    with pytest.raises(ValueError, match="not divisible by patch_size=4"):
        ours(torch.randn(2, 3, 18, 18))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ours(torch.randn(3, 16, 16))
