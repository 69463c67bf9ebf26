"""Small image datasets the course draws itself (unit 11): no download, deterministic, seconds to make.

Two datasets, both drawn from a *spec* (a tuple of the choices that define one picture) plus noise:

* :func:`shapes_dataset`: one grey shape (square, circle, triangle, cross) per image, at a random place
  and size, with pixel noise and clutter (random specks and a stray line). Classifying it needs
  features that do not care where the shape is, which a linear classifier on raw pixels lacks.
* :func:`scenes_dataset`: two coloured shapes per image, one above the other or side by side, with a
  caption such as "a red square above a blue circle" (the final project's captioning task).

Held-out items never appear in training: :func:`split_specs` drops duplicate specs *before* splitting, so
a test image is never the training drawing of the same shape at the same place with other noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SHAPES", "COLOURS", "RELATIONS", "SCENE_SHAPES", "SCENE_COLOURS", "draw_shape", "shape_specs", "render_shape", "shapes_dataset",
    "SceneSpec", "scene_specs", "render_scene", "caption_of", "scenes_dataset", "split_specs",
    "caption_vocabulary", "encode_caption", "decode_caption", "ShapeSpec",
]

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.15, 0.3, 1.0), "yellow": (1.0, 0.9, 0.1)}
RELATIONS = ("above", "left of")
SCENE_SHAPES = ("square", "circle", "triangle")  # the captioning task uses three shapes and three colours
SCENE_COLOURS = ("red", "green", "blue")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def draw_shape(shape: str, size: int, cy: float, cx: float, r: float) -> Tensor:
    """A (size, size) mask in [0, 1] of ``shape`` centred at pixel coordinates (cy, cx) with "radius" r.

    Pixel (y, x) has its centre at (y + 0.5, x + 0.5); with dy, dx its offset from the centre:
    square ``max(|dx|, |dy|) <= r``; circle ``dx^2 + dy^2 <= r^2``; triangle (pointing up)
    ``-r <= dy <= r`` and ``|dx| <= (dy + r) / 2``; cross (a plus sign) two bars of half-width r/3.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dy = (coords - cy).unsqueeze(1)  # (size, 1)
    dx = (coords - cx).unsqueeze(0)  # (1, size)
    if shape == "square":
        m = (dx.abs() <= r) & (dy.abs() <= r)
    elif shape == "circle":
        m = dx**2 + dy**2 <= r**2
    elif shape == "triangle":
        m = (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)
    else:
        bar = max(r / 3, 0.75)
        m = ((dx.abs() <= bar) & (dy.abs() <= r)) | ((dy.abs() <= bar) & (dx.abs() <= r))
    return m.float()  # (size, size)


# --------------------------------------------------------------------------
# One shape per image: classification
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeSpec:
    """What defines one classification image: the shape, its centre (in quarter pixels) and radius."""

    shape: str
    cy4: int
    cx4: int
    r2: int  # radius in half pixels

    @property
    def label(self) -> int:
        return SHAPES.index(self.shape)


def shape_specs(n: int, size: int = 16, seed: int = 0) -> list[ShapeSpec]:
    """``n`` random specs (duplicates possible), classes in turn so that they are balanced."""
    _check_int("n", n, 1)
    _check_int("size", size, 12)
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        r2 = rng.randint(6, 10)  # radius 3 .. 5 pixels
        margin = r2 / 2 + 0.5
        cy = rng.uniform(margin, size - margin)
        cx = rng.uniform(margin, size - margin)
        specs.append(ShapeSpec(SHAPES[i % len(SHAPES)], round(4 * cy), round(4 * cx), r2))
    return specs


def render_shape(spec: ShapeSpec, size: int, gen: torch.Generator, noise: float = 0.15, clutter: int = 6) -> Tensor:
    """One grey image (1, size, size): the shape at brightness ~0.8-1, ``clutter`` random specks, a stray
    line segment, and Gaussian pixel noise of standard deviation ``noise``."""
    img = draw_shape(spec.shape, size, spec.cy4 / 4, spec.cx4 / 4, spec.r2 / 2)
    img = img * (0.8 + 0.2 * torch.rand((), generator=gen))
    ys = torch.randint(0, size, (clutter,), generator=gen)
    xs = torch.randint(0, size, (clutter,), generator=gen)
    img[ys, xs] = torch.maximum(img[ys, xs], 0.5 + 0.5 * torch.rand(clutter, generator=gen))
    start = torch.randint(0, size - 3, (2,), generator=gen)
    if bool(torch.rand((), generator=gen) < 0.5):  # a short horizontal or vertical stroke
        img[start[0], start[1]: start[1] + 3] = 0.7
    else:
        img[start[0]: start[0] + 3, start[1]] = 0.7
    img = img + noise * torch.randn(size, size, generator=gen)
    return img.clamp(0.0, 1.0).unsqueeze(0)  # (1, size, size)


def shapes_dataset(n_train: int = 2000, n_test: int = 500, size: int = 16, seed: int = 0) -> dict:
    """Train / test images of single shapes with noise, shifts and clutter.

    Returns ``{"train": (images (n, 1, size, size), labels (n,)), "test": (...), "classes": SHAPES}``.
    Specs are deduplicated before the split (:func:`split_specs`), so no test image is a redrawing of
    a training one; the sizes can therefore come out slightly below ``n_train``.
    """
    _check_int("n_train", n_train, 1)
    _check_int("n_test", n_test, 1)
    specs = shape_specs(int((n_train + n_test) * 1.1) + 8, size, seed)
    train_specs, test_specs = split_specs(specs, n_test, seed)
    train_specs = train_specs[:n_train]
    gen = torch.Generator().manual_seed(seed)
    out = {"classes": SHAPES}
    for name, part in (("train", train_specs), ("test", test_specs)):
        images = torch.stack([render_shape(s, size, gen) for s in part])  # (n, 1, size, size)
        labels = torch.tensor([s.label for s in part], dtype=torch.long)  # (n,)
        out[name] = (images, labels)
    out["specs"] = {"train": train_specs, "test": test_specs}
    return out


def split_specs(specs: list, n_test: int, seed: int = 0) -> tuple[list, list]:
    """Drop duplicate specs (keeping the first), shuffle with ``seed``, and hold out the last ``n_test``.

    Deduplicating first is what makes the split honest: the two lists share no spec.
    """
    distinct = list(dict.fromkeys(specs))
    if n_test >= len(distinct):
        raise ValueError(f"n_test={n_test} leaves no training items ({len(distinct)} distinct specs)")
    random.Random(seed + 1).shuffle(distinct)
    return distinct[: len(distinct) - n_test], distinct[len(distinct) - n_test:]


# --------------------------------------------------------------------------
# Two shapes per image: captions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneSpec:
    """Two coloured shapes: ``first`` is above (or left of) ``second``; positions in whole pixels."""

    colour1: str
    shape1: str
    colour2: str
    shape2: str
    relation: str
    y1: int
    x1: int
    y2: int
    x2: int
    r2: int  # radius of both shapes, in half pixels


def caption_of(spec: SceneSpec) -> str:
    """"a red square above a blue circle" / "a green cross left of a yellow triangle"."""
    return f"a {spec.colour1} {spec.shape1} {spec.relation} a {spec.colour2} {spec.shape2}"


def scene_specs(n: int, size: int = 24, seed: int = 0) -> list[SceneSpec]:
    """``n`` random scene specs: two different (colour, shape) pairs, one above or left of the other."""
    _check_int("n", n, 1)
    _check_int("size", size, 16)
    rng = random.Random(seed)
    colours = list(SCENE_COLOURS)
    specs = []
    half = size // 2
    while len(specs) < n:
        c1, c2 = rng.choice(colours), rng.choice(colours)
        s1, s2 = rng.choice(SCENE_SHAPES), rng.choice(SCENE_SHAPES)
        if (c1, s1) == (c2, s2):
            continue  # "a red square above a red square" has no word that tells the two apart
        relation = rng.choice(RELATIONS)
        r2 = rng.randint(8, 10)  # radius 4 .. 5 pixels
        lo, hi = 5, half - 5  # a centre 5 px from each edge of its half
        a, b = rng.randint(lo, hi), rng.randint(5, size - 5)  # the first shape: along / across the relation
        a2, b2 = rng.randint(lo, hi) + half, rng.randint(5, size - 5)
        if relation == "above":
            y1, x1, y2, x2 = a, b, a2, b2
        else:
            y1, x1, y2, x2 = b, a, b2, a2
        specs.append(SceneSpec(c1, s1, c2, s2, relation, y1, x1, y2, x2, r2))
    return specs


def render_scene(spec: SceneSpec, size: int, gen: torch.Generator, noise: float = 0.05) -> Tensor:
    """A colour image (3, size, size) on a dark background with a little noise."""
    img = torch.zeros(3, size, size)
    for colour, shape, y, x in ((spec.colour1, spec.shape1, spec.y1, spec.x1),
                                (spec.colour2, spec.shape2, spec.y2, spec.x2)):
        m = draw_shape(shape, size, y, x, spec.r2 / 2)  # (size, size)
        rgb = torch.tensor(COLOURS[colour]).view(3, 1, 1)
        img = img * (1 - m) + rgb * m
    img = img + noise * torch.randn(3, size, size, generator=gen)
    return img.clamp(0.0, 1.0)


def caption_vocabulary() -> list[str]:
    """Token strings of the captions: 0 <pad>, 1 <bos>, 2 <eos>, then the words."""
    words = ["a", *SCENE_COLOURS, *SCENE_SHAPES, "above", "left", "of"]
    return ["<pad>", "<bos>", "<eos>", *words]


def encode_caption(caption: str, max_len: int) -> list[int]:
    """<bos> words <eos>, padded with <pad> to ``max_len`` tokens; ValueError if it does not fit."""
    vocab = {w: i for i, w in enumerate(caption_vocabulary())}
    words = caption.split()
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ValueError(f"caption has words outside the vocabulary: {unknown}")
    ids = [1] + [vocab[w] for w in words] + [2]
    if len(ids) > max_len:
        raise ValueError(f"caption has {len(ids)} tokens with <bos> and <eos> but max_len is {max_len}: {caption!r}")
    return ids + [0] * (max_len - len(ids))


def decode_caption(ids) -> str:
    """Token ids -> words, stopping at <eos> and skipping <pad>/<bos>."""
    vocab = caption_vocabulary()
    words = []
    for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
        if i == 2:
            break
        if i > 2:
            words.append(vocab[i])
    return " ".join(words)


def scenes_dataset(n_train: int = 3000, n_test: int = 300, size: int = 24, max_len: int = 10, seed: int = 0) -> dict:
    """Captioned two-shape scenes.

    Returns ``{"train": (images (n, 3, size, size), caption ids (n, max_len), captions), "test": (...),
    "specs": {"train": [...], "test": [...]}}``. Specs are deduplicated before the split.
    """
    _check_int("n_train", n_train, 1)
    _check_int("n_test", n_test, 1)
    specs = scene_specs(n_train + n_test + 16, size, seed)
    train_specs, test_specs = split_specs(specs, n_test, seed)
    train_specs = train_specs[:n_train]
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, part in (("train", train_specs), ("test", test_specs)):
        images = torch.stack([render_scene(s, size, gen) for s in part])  # (n, 3, size, size)
        captions = [caption_of(s) for s in part]
        ids = torch.tensor([encode_caption(c, max_len) for c in captions], dtype=torch.long)  # (n, max_len)
        out[name] = (images, ids, captions)
    out["specs"] = {"train": train_specs, "test": test_specs}
    return out
