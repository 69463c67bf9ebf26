"""Unit 11's ViT parts: patchify is a strided Conv2d, [CLS] and positions, bad input."""

import pytest
import torch

from course_lib.vit import (PatchEmbedding, ViTConfig, ViTEncoder, ViTForClassification, patch_conv_equivalent,
                            patchify, unpatchify)


@pytest.mark.parametrize("B, C, H, W, p", [(2, 3, 8, 8, 4), (1, 1, 12, 6, 3), (3, 2, 10, 4, 2), (2, 3, 5, 5, 5)])
def test_patch_embedding_equals_a_conv2d_with_kernel_and_stride_p(B, C, H, W, p):
    torch.manual_seed(0)
    emb = PatchEmbedding(p, C, 7)
    conv = patch_conv_equivalent(emb)
    assert conv.kernel_size == (p, p) and conv.stride == (p, p)
    x = torch.randn(B, C, H, W)
    by_conv = conv(x).flatten(2).transpose(1, 2)  # (B, N, D), patches row by row
    torch.testing.assert_close(emb(x), by_conv, atol=1e-5, rtol=1e-5)
    # and an independently initialised Conv2d loaded the other way round agrees too
    conv2 = torch.nn.Conv2d(C, 7, p, stride=p)
    emb.proj.weight.data = conv2.weight.data.reshape(7, -1).clone()
    emb.proj.bias.data = conv2.bias.data.clone()
    torch.testing.assert_close(emb(x), conv2(x).flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_patchify_layout_and_inverse():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    P = patchify(x, 2)  # (2, 6, 12): 2 rows x 3 columns of patches
    assert P.shape == (2, 6, 12)
    # patch 4 = patch-row 1, patch-column 1; element ch*4 + i*2 + j = x[b, ch, 2 + i, 2 + j]
    for ch in range(3):
        for i in range(2):
            for j in range(2):
                assert P[1, 4, ch * 4 + i * 2 + j] == x[1, ch, 2 + i, 2 + j]
    torch.testing.assert_close(unpatchify(P, 2, 3, 4, 6), x)
    # a plain reshape (no permute) is NOT patchify
    assert not torch.equal(P, x.reshape(2, 6, 12))


def test_vit_encoder_tokens_and_cls_position():
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=8, patch_size=4, channels=3, n_layers=1, n_heads=2, d_model=16)
    enc = ViTEncoder(cfg).eval()
    x = torch.randn(2, 3, 8, 8)
    tokens = enc.embed(x)
    assert tokens.shape == (2, 5, 16)
    torch.testing.assert_close(tokens[:, 0], (enc.cls_token + enc.pos_emb.weight[0]).expand(2, 16))
    torch.testing.assert_close(tokens[:, 1:], enc.patch_emb(x) + enc.pos_emb.weight[1:])
    assert enc(x).shape == (2, 5, 16)
    assert len(enc.attention_weights()) == 1 and enc.attention_weights()[0].shape == (2, 2, 5, 5)
    clf = ViTForClassification(cfg, n_classes=4)
    assert clf(x).shape == (2, 4)


def test_bad_configs_and_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="image_size=10 is not divisible by patch_size=4"):
        ViTConfig(image_size=10, patch_size=4, channels=1, n_layers=1, n_heads=1, d_model=8)
    with pytest.raises(ValueError, match="channels"):
        ViTConfig(image_size=8, patch_size=4, channels=0, n_layers=1, n_heads=1, d_model=8)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.randn(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="not divisible by patch_size=3"):
        patchify(torch.randn(1, 1, 8, 9), 3)
    with pytest.raises(ValueError, match="dtype"):
        patchify(torch.zeros(1, 1, 8, 8, dtype=torch.long), 4)
    enc = ViTEncoder(ViTConfig(image_size=8, patch_size=4, channels=3, n_layers=1, n_heads=1, d_model=8))
    with pytest.raises(ValueError, match="channels=3"):
        enc(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="n_classes"):
        ViTForClassification(enc.config, n_classes=1)
