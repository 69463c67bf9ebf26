"""Small image datasets the course draws itself (unit 11): no download, deterministic, seconds to make.

Two datasets, both drawn from a *spec* (a tuple of the choices that define one picture) plus noise:

* :func:`shapes_dataset`: one grey shape (square, circle, triangle, cross) per image, at a random place
  and size, with pixel noise and clutter (random specks and a stray line). Classifying it needs
  features that do not care where the shape is, which a linear classifier on raw pixels lacks.
* :func:`scenes_dataset`: two coloured shapes per image, one above the other or side by side, with a
  caption such as "a red square above a blue circle" (the final project's captioning task).

Held-out items never appear in training: :func:`split_specs` drops duplicates *before* splitting, and two
specs count as duplicates when their noise-free drawings are equal (a circle of radius 3 and one of radius 3.5
cover the same pixels), so a test image is never a training drawing redrawn with other noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SHAPES", "COLOURS", "RELATIONS", "SCENE_SHAPES", "SCENE_COLOURS", "JITTER", "draw_shape", "shape_specs",
    "shape_drawing", "render_shape", "shapes_dataset",
    "SceneSpec", "scene_specs", "draw_scene", "render_scene", "caption_of", "scenes_dataset", "split_specs",
    "caption_vocabulary", "encode_caption", "decode_caption", "ShapeSpec",
]

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.15, 0.3, 1.0), "yellow": (1.0, 0.9, 0.1)}
RELATIONS = ("above", "left of")
SCENE_SHAPES = ("square", "circle", "triangle")  # the captioning task uses three shapes and three colours
SCENE_COLOURS = ("red", "green", "blue")
JITTER = 2  # px: how far a scene's two shapes may be off one line ("above": one column, "left of": one row)


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


def shape_drawing(spec: ShapeSpec, size: int) -> Tensor:
    """The noise-free mask (size, size) of a classification spec."""
    return draw_shape(spec.shape, size, spec.cy4 / 4, spec.cx4 / 4, spec.r2 / 2)


def render_shape(spec: ShapeSpec, size: int, gen: torch.Generator, noise: float = 0.15, clutter: int = 6) -> Tensor:
    """One grey image (1, size, size): the shape at brightness ~0.8-1, ``clutter`` random specks, a stray
    line segment, and Gaussian pixel noise of standard deviation ``noise``."""
    img = shape_drawing(spec, size)
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


def shapes_dataset(n_train: int = 2400, n_test: int = 400, size: int = 16, seed: int = 0) -> dict:
    """Train / test images of single shapes with noise, shifts and clutter, balanced over the classes.

    Returns ``{"train": (images (n, 1, size, size), labels (n,)), "test": (...), "classes": SHAPES,
    "specs": {"train": [...], "test": [...]}}``. Each class gets ``n_test / 4`` test and up to ``n_train / 4``
    training images. Specs are deduplicated by their noise-free drawing before the split
    (:func:`split_specs`), so no test image is a redrawing of a training one. A 16 x 16 grid has few
    distinct squares (about 900), so asking for many more than 600 per class leaves the training set short.
    """
    _check_int("n_train", n_train, 1)
    _check_int("n_test", n_test, len(SHAPES))
    k = len(SHAPES)
    specs = shape_specs(3 * (n_train + n_test), size, seed)  # classes in turn; many drawings repeat
    train_specs, test_specs = [], []
    for c, shape in enumerate(SHAPES):
        mine = [s for s in specs if s.shape == shape]
        tr, te = split_specs(mine, n_test // k + (c < n_test % k), seed + c,
                             key=lambda s: _pixels(shape_drawing(s, size)))
        train_specs += tr[: n_train // k + (c < n_train % k)]
        test_specs += te
    order = random.Random(seed + 7)
    order.shuffle(train_specs)
    order.shuffle(test_specs)
    gen = torch.Generator().manual_seed(seed)
    out = {"classes": SHAPES}
    for name, part in (("train", train_specs), ("test", test_specs)):
        images = torch.stack([render_shape(s, size, gen) for s in part])  # (n, 1, size, size)
        labels = torch.tensor([s.label for s in part], dtype=torch.long)  # (n,)
        out[name] = (images, labels)
    out["specs"] = {"train": train_specs, "test": test_specs}
    return out


def _pixels(drawing: Tensor) -> bytes:
    """A hashable copy of a noise-free drawing (its exact float values)."""
    return drawing.numpy().tobytes()


def split_specs(specs: list, n_test: int, seed: int = 0, key=None) -> tuple[list, list]:
    """Drop duplicates (keeping the first), shuffle with ``seed``, and hold out the last ``n_test``.

    Two specs are duplicates when ``key(spec)`` is equal (default: the spec itself; the datasets use the
    noise-free drawing). Deduplicating first is what makes the split honest: no key is on both sides.
    """
    first_of = {}  # key -> the first spec with that key
    for spec in specs:
        first_of.setdefault(spec if key is None else key(spec), spec)
    distinct = list(first_of.values())
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
    """``n`` random scene specs: two different (colour, shape) pairs, one above or left of the other.

    The grammar makes every caption the only true one: "above" puts the two centres in one column (at most
    ``JITTER`` px apart sideways) and in different halves, "left of" in one row and different halves, so a
    scene is never both. Every shape has the same radius: with radii of 4 to 5 px a large circle and a small
    square cover almost the same pixels, and a small captioner confused the two (unit 11 measured 0.87 of
    held-out scenes exactly right with mixed sizes, against 0.99 with one size).
    """
    _check_int("n", n, 1)
    _check_int("size", size, 16)
    rng = random.Random(seed)
    colours = list(SCENE_COLOURS)
    specs = []
    half = size // 2
    margin = size // 4 - 1  # 5 px for size 24: the largest shape stays inside the image and its half
    while len(specs) < n:
        c1, c2 = rng.choice(colours), rng.choice(colours)
        s1, s2 = rng.choice(SCENE_SHAPES), rng.choice(SCENE_SHAPES)
        if (c1, s1) == (c2, s2):
            continue  # "a red square above a red square" has no word that tells the two apart
        relation = rng.choice(RELATIONS)
        r2 = (5 * size) // 12  # radius in half pixels: 5 px for size 24, the same for every shape (see above)
        lo, hi = margin, half - margin  # along the relation: the first centre `margin` px from each edge of its
        a, a2 = rng.randint(lo, hi), rng.randint(lo, hi) + half  # half, the second in the other half
        b = rng.randint(margin + JITTER, size - margin - JITTER)  # across it: (nearly) one line for both
        b2 = b + rng.randint(-JITTER, JITTER)
        if relation == "above":
            y1, x1, y2, x2 = a, b, a2, b2
        else:
            y1, x1, y2, x2 = b, a, b2, a2
        specs.append(SceneSpec(c1, s1, c2, s2, relation, y1, x1, y2, x2, r2))
    return specs


def draw_scene(spec: SceneSpec, size: int) -> Tensor:
    """The noise-free colour image (3, size, size) of a scene: two shapes on a black background."""
    img = torch.zeros(3, size, size)
    for colour, shape, y, x in ((spec.colour1, spec.shape1, spec.y1, spec.x1),
                                (spec.colour2, spec.shape2, spec.y2, spec.x2)):
        m = draw_shape(shape, size, y, x, spec.r2 / 2)  # (size, size)
        rgb = torch.tensor(COLOURS[colour]).view(3, 1, 1)
        img = img * (1 - m) + rgb * m
    return img


def render_scene(spec: SceneSpec, size: int, gen: torch.Generator, noise: float = 0.05) -> Tensor:
    """A colour image (3, size, size): :func:`draw_scene` plus Gaussian pixel noise, clamped to [0, 1]."""
    return _add_noise(draw_scene(spec, size), gen, noise)


def _add_noise(drawing: Tensor, gen: torch.Generator, noise: float) -> Tensor:
    return (drawing + noise * torch.randn(drawing.shape, generator=gen)).clamp(0.0, 1.0)


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
    "specs": {"train": [...], "test": [...]}}``. Specs are deduplicated by their noise-free drawing before the
    split, so the training set can come out below ``n_train``.
    """
    _check_int("n_train", n_train, 1)
    _check_int("n_test", n_test, 1)
    specs = scene_specs(n_train + n_test + 16, size, seed)
    drawings = {s: draw_scene(s, size) for s in specs}  # noise-free, drawn once
    train_specs, test_specs = split_specs(specs, n_test, seed, key=lambda s: _pixels(drawings[s]))
    train_specs = train_specs[:n_train]
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, part in (("train", train_specs), ("test", test_specs)):
        images = torch.stack([_add_noise(drawings[s], gen, 0.05) for s in part])  # (n, 3, size, size), as render_scene
        captions = [caption_of(s) for s in part]
        ids = torch.tensor([encode_caption(c, max_len) for c in captions], dtype=torch.long)  # (n, max_len)
        out[name] = (images, ids, captions)
    out["specs"] = {"train": train_specs, "test": test_specs}
    return out
