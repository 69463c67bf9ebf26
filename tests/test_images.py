"""The unit-11 datasets: deterministic, the right shapes, and held-out specs never in training."""

import pytest
import torch

from course_lib.captioning import CaptionerConfig, ImageCaptioner, caption_loss
from course_lib.images import (SHAPES, caption_of, caption_vocabulary, decode_caption, draw_shape, encode_caption,
                               scene_specs, scenes_dataset, shapes_dataset, split_specs)
from course_lib.vit import ViTConfig


def test_shapes_dataset_is_deterministic_balanced_and_disjoint():
    a, b = shapes_dataset(400, 100, seed=3), shapes_dataset(400, 100, seed=3)
    assert torch.equal(a["train"][0], b["train"][0]) and torch.equal(a["test"][1], b["test"][1])
    X, y = a["train"]
    assert X.shape[1:] == (1, 16, 16) and X.dtype == torch.float32 and y.dtype == torch.long
    assert 380 <= len(y) <= 400 and len(a["test"][1]) == 100
    assert set(y.tolist()) == set(range(len(SHAPES)))
    assert not set(a["specs"]["train"]) & set(a["specs"]["test"])
    assert not torch.equal(shapes_dataset(50, 10, seed=4)["train"][0][:5], X[:5])


def test_split_specs_dedupes_before_splitting():
    specs = ["a", "b", "a", "c", "d", "b", "e"] * 3
    train, test = split_specs(specs, 2)
    assert not set(train) & set(test) and len(train) + len(test) == 5
    with pytest.raises(ValueError, match="n_test"):
        split_specs(specs, 5)


def test_scenes_dataset_captions_and_disjoint_specs():
    d = scenes_dataset(300, 50, seed=0)
    X, ids, caps = d["train"]
    assert X.shape[1:] == (3, 24, 24) and ids.shape == (len(caps), 10)
    assert not set(d["specs"]["train"]) & set(d["specs"]["test"])
    for s, c, row in zip(d["specs"]["train"][:20], caps, ids):
        assert c == caption_of(s) and decode_caption(row) == c
        assert (s.colour1, s.shape1) != (s.colour2, s.shape2)
        assert (s.y1 < s.y2) if s.relation == "above" else (s.x1 < s.x2)


def test_shapes_are_drawn_where_the_spec_says():
    m = draw_shape("square", 16, 8.0, 4.0, 2.0)
    assert m[8, 4] == 1 and m[8, 12] == 0 and m.sum() == 16
    assert draw_shape("circle", 16, 8, 8, 3).sum() < draw_shape("square", 16, 8, 8, 3).sum()
    with pytest.raises(ValueError, match="shape"):
        draw_shape("star", 16, 8, 8, 3)


def test_captions_longer_than_the_context_raise():
    assert len(encode_caption("a red square above a blue circle", 10)) == 10
    with pytest.raises(ValueError, match="max_len is 8"):
        encode_caption("a red square above a blue circle", 8)
    with pytest.raises(ValueError, match="vocabulary"):
        encode_caption("a purple square", 10)
    cfg = CaptionerConfig(ViTConfig(image_size=24, patch_size=6, channels=3, n_layers=1, n_heads=2, d_model=16),
                          vocab_size=len(caption_vocabulary()), max_len=10, n_layers=1, n_heads=2)
    model = ImageCaptioner(cfg)
    images = torch.rand(2, 3, 24, 24)
    assert model(images, torch.ones(2, 9, dtype=torch.long)).shape == (2, 9, len(caption_vocabulary()))
    with pytest.raises(ValueError, match="max_len"):
        model(images, torch.ones(2, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="channels=3"):
        model(torch.rand(2, 1, 24, 24), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(images, max_new_tokens=10)
    out = model.generate(images)
    assert out.shape[0] == 2 and out.shape[1] <= 9
    assert model.cross_attention_weights()[0].shape[-1] == 16  # attends to the 16 patches, not [CLS]
    ids = torch.tensor([encode_caption("a red square above a blue circle", 10)] * 2)
    assert torch.isfinite(caption_loss(model, (images, ids)))
