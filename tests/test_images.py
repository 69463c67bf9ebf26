"""The unit-11 datasets: deterministic, the right shapes, and held-out specs never in training."""

import pytest
import torch

from course_lib.captioning import CaptionerConfig, ImageCaptioner, caption_loss
from course_lib.images import (JITTER, SHAPES, caption_of, caption_vocabulary, decode_caption, draw_scene, draw_shape,
                               encode_caption, scene_specs, scenes_dataset, shape_drawing, shape_specs, shapes_dataset,
                               split_specs)
from course_lib.vit import ViTConfig


def _pixels(drawing):
    return drawing.numpy().tobytes()


def test_shapes_dataset_is_deterministic_balanced_and_disjoint():
    a, b = shapes_dataset(400, 100, seed=3), shapes_dataset(400, 100, seed=3)
    assert torch.equal(a["train"][0], b["train"][0]) and torch.equal(a["test"][1], b["test"][1])
    X, y = a["train"]
    assert X.shape[1:] == (1, 16, 16) and X.dtype == torch.float32 and y.dtype == torch.long
    assert torch.bincount(y).tolist() == [100] * 4 and torch.bincount(a["test"][1]).tolist() == [25] * 4
    assert [s.label for s in a["specs"]["train"]] == y.tolist()
    assert not set(a["specs"]["train"]) & set(a["specs"]["test"])
    assert not torch.equal(shapes_dataset(50, 10, seed=4)["train"][0][:5], X[:5])


def test_split_specs_dedupes_before_splitting():
    specs = ["a", "b", "a", "c", "d", "b", "e"] * 3
    train, test = split_specs(specs, 2)
    assert not set(train) & set(test) and len(train) + len(test) == 5
    with pytest.raises(ValueError, match="n_test"):
        split_specs(specs, 5)
    # with a key, items with equal keys are duplicates: only one of "A"/"a" survives
    train, test = split_specs(["a", "A", "b", "B", "c"], 1, key=str.lower)
    assert len(train) + len(test) == 3 and not {x.lower() for x in train} & {x.lower() for x in test}


def test_different_shape_specs_can_share_a_drawing_so_the_split_compares_drawings():
    # the reason the datasets dedupe by drawing: a spec-only split of these specs would leak drawings
    specs = [s for s in shape_specs(4000, 16, seed=0) if s.shape == "square"]
    train, test = split_specs(specs, 100, seed=0)  # by spec only
    assert {_pixels(shape_drawing(s, 16)) for s in train} & {_pixels(shape_drawing(s, 16)) for s in test}
    train, test = split_specs(specs, 100, seed=0, key=lambda s: _pixels(shape_drawing(s, 16)))
    assert not {_pixels(shape_drawing(s, 16)) for s in train} & {_pixels(shape_drawing(s, 16)) for s in test}


def test_no_held_out_image_of_the_notebook_is_a_training_drawing():
    """Unit 11's two datasets at the notebook's sizes: no held-out spec, and no held-out noise-free drawing, is
    in training (the noisy images are those drawings plus noise)."""
    shapes = shapes_dataset(n_train=2400, n_test=400, seed=0)
    tr, te = shapes["specs"]["train"], shapes["specs"]["test"]
    assert len(tr) == 2400 and len(te) == 400 and not set(tr) & set(te)
    assert not {_pixels(shape_drawing(s, 16)) for s in tr} & {_pixels(shape_drawing(s, 16)) for s in te}
    scenes = scenes_dataset(n_train=4000, n_test=300, seed=0)
    tr, te = scenes["specs"]["train"], scenes["specs"]["test"]
    assert len(te) == 300 and len(tr) > 3800 and not set(tr) & set(te)
    assert not {_pixels(draw_scene(s, 24)) for s in tr} & {_pixels(draw_scene(s, 24)) for s in te}


def test_scene_grammar_gives_every_scene_one_true_caption():
    for s in scene_specs(2000, 24, seed=1):
        along, across = ((s.y1, s.y2), (s.x1, s.x2)) if s.relation == "above" else ((s.x1, s.x2), (s.y1, s.y2))
        assert along[1] - along[0] >= 10 and abs(across[1] - across[0]) <= JITTER  # never "above" and "left of"
        assert s.r2 == 10  # one size: radius 5 px
        a = draw_shape(s.shape1, 24, s.y1, s.x1, s.r2 / 2)
        b = draw_shape(s.shape2, 24, s.y2, s.x2, s.r2 / 2)
        assert all(5 <= v <= 19 for v in (s.y1, s.x1, s.y2, s.x2))  # radius 5: both shapes whole, inside the image
        assert (a * b).sum() == 0  # and apart
        assert (s.colour1, s.shape1) != (s.colour2, s.shape2)


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
