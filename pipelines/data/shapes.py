"""Shapes world: procedural, seeded images of coloured shapes with captions and exact labels.

The training and evaluation data for the image tokenizers (TexTok, KARL), the generators (xAR, GDT) and
binding accuracy (ToMe) -- built here, nothing downloaded. Each image holds 1..K non-overlapping objects
(shape, colour, size, position) on a muted, varied background (base colour + linear gradient + optional
stripes). Labels are exact by construction:

- object colours are saturated palette colours, backgrounds are desaturated, so they never coincide;
- objects never overlap (bounding circles are at least 1 px apart), so the pixel holding an object's centre
  has exactly that object's colour (anti-aliasing only touches the 1 px rim);
- relations (``left of``, ``above``) compare object centres strictly.

Splits: a batch is a pure function of ``(split, index)``; its generator is
``numpy.random.default_rng([SPLIT_SEEDS[split], index])``. The train and eval splits use different first
seed words, so their random streams are independent and no ``(split, index)`` of one split can produce a
batch of the other; training code only ever asks for the ``train`` split, evaluation for ``eval``.
(Continuous positions and sizes make a byte-identical image across splits vanishingly unlikely; the tests
check a sample.)

Rasterisation is vectorised over all objects of a batch with signed distance functions in pixel units;
it renders > 1000 images/s at 64 px on one core (``benchmarks/shapes_world.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "green": (0.14, 0.72, 0.22),
    "blue": (0.15, 0.32, 0.90),
    "yellow": (0.95, 0.86, 0.12),
    "cyan": (0.12, 0.84, 0.88),
    "magenta": (0.85, 0.18, 0.80),
    "orange": (0.97, 0.55, 0.10),
    "white": (0.97, 0.97, 0.97),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# Muted backgrounds (saturation <= 0.4, value <= 0.6): never confusable with an object colour.
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.06, 0.06, 0.07),
    "dark gray": (0.24, 0.24, 0.25),
    "gray": (0.45, 0.45, 0.46),
    "slate": (0.24, 0.29, 0.38),
    "dark teal": (0.12, 0.28, 0.28),
    "brown": (0.34, 0.25, 0.17),
    "olive": (0.33, 0.34, 0.20),
    "plum": (0.30, 0.20, 0.30),
}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)

SPLIT_SEEDS: dict[str, int] = {"train": 0x5EED_7A17, "eval": 0xE7A1_0000}
"""First seed word of each split's generator; see the module docstring."""

CAPTION_STYLES: tuple[str, ...] = ("coarse", "exact")
"""``coarse`` names what a person would (``caption``); ``exact`` pins the geometry (``exact_caption``)."""

NUM_CLASSES = len(SHAPES) * len(COLOURS)
"""Class-conditional mode: class id = shape index * len(COLOURS) + colour index (single object)."""

SMALL_LARGE_THRESHOLD = 0.16
"""An object is ``large`` when its radius is at least this fraction of the image side."""

_BOUND = 1.15
"""Every shape fits in a circle of ``_BOUND * radius`` around its centre (used to keep objects apart)."""


@dataclass(frozen=True)
class ShapeObject:
    """One object. ``x``, ``y`` are its centre in pixels (x right, y down); ``radius`` in pixels."""

    shape: str
    colour: str
    radius: float
    x: float
    y: float
    size: str
    """``small`` or ``large`` (see ``SMALL_LARGE_THRESHOLD``)."""
    position: str
    """Coarse position word, e.g. ``top left``, ``center`` (thirds of the image)."""

    @property
    def class_id(self) -> int:
        return class_id(self.shape, self.colour)


@dataclass(frozen=True)
class Relation:
    """``objects[subject] <predicate> objects[obj]``; predicate is ``left of`` or ``above`` (strict, centres)."""

    subject: int
    predicate: str
    obj: int


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image, plus its caption."""

    objects: tuple[ShapeObject, ...]
    background: str
    gradient: tuple[float, float, float]
    """(direction in radians, brightness amplitude, unused=0) of the background's linear gradient."""
    stripes: tuple[float, float, float]
    """(direction in radians, period in pixels, amplitude); amplitude 0 means a plain background."""
    image_size: int
    caption: str

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def relations(self) -> tuple[Relation, ...]:
        out = []
        for i, a in enumerate(self.objects):
            for j, b in enumerate(self.objects):
                if i != j and a.x < b.x:
                    out.append(Relation(i, "left of", j))
                if i != j and a.y < b.y:
                    out.append(Relation(i, "above", j))
        return tuple(out)


@dataclass
class ShapesBatch:
    """A rendered batch. ``images`` (B, 3, S, S) float32 in [0, 1]; label tensors padded with -1."""

    images: torch.Tensor
    scenes: list[Scene]
    shape_ids: torch.Tensor
    """(B, K) index into ``SHAPES`` per object slot, -1 where the image has fewer objects."""
    colour_ids: torch.Tensor
    """(B, K) index into ``COLOUR_NAMES``, -1 padded."""
    counts: torch.Tensor
    """(B,) number of objects."""

    @property
    def captions(self) -> list[str]:
        return [s.caption for s in self.scenes]

    def captions_in(self, style: str) -> list[str]:
        """Captions in one of ``CAPTION_STYLES``: ``coarse`` (``captions``) or ``exact`` (``exact_caption``)."""
        if style not in CAPTION_STYLES:
            raise ValueError(f"unknown caption style {style!r}; styles are {CAPTION_STYLES}")
        return self.captions if style == "coarse" else [exact_caption(s) for s in self.scenes]

    @property
    def class_ids(self) -> torch.Tensor:
        """(B,) shape x colour class of the first object (the class in class-conditional mode)."""
        return self.shape_ids[:, 0] * len(COLOURS) + self.colour_ids[:, 0]


def class_id(shape: str, colour: str) -> int:
    if shape not in SHAPES or colour not in COLOURS:
        raise ValueError(f"unknown class ({shape!r}, {colour!r}); shapes {SHAPES}, colours {COLOUR_NAMES}")
    return SHAPES.index(shape) * len(COLOURS) + COLOUR_NAMES.index(colour)


def class_name(index: int) -> str:
    """``class_name(0) == "red circle"``."""
    if not 0 <= index < NUM_CLASSES:
        raise ValueError(f"class id {index} is outside [0, {NUM_CLASSES})")
    shape, colour = divmod(index, len(COLOURS))
    return f"{COLOUR_NAMES[colour]} {SHAPES[shape]}"


class ShapesWorld:
    """Seeded generator of shapes-world batches.

    Args:
        image_size: side S of the square images, 32..256 pixels.
        min_objects, max_objects: object count range per image (1..6).
        min_radius, max_radius: object radius range as a fraction of S.
    """

    def __init__(self, image_size: int = 64, min_objects: int = 1, max_objects: int = 3,
                 min_radius: float = 0.1, max_radius: float = 0.22) -> None:
        if not 32 <= image_size <= 256:
            raise ValueError(f"image_size {image_size} is outside the supported 32..256 px")
        if not 1 <= min_objects <= max_objects <= 6:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 6, got {min_objects}, {max_objects}")
        if not 0.1 <= min_radius <= max_radius <= 0.3:
            # Below 0.1 S a 32 px cross is thinner than 2 px and its centre pixel is no longer pure colour.
            raise ValueError(f"need 0.1 <= min_radius <= max_radius <= 0.3, got {min_radius}, {max_radius}")
        self.image_size = image_size
        self.min_objects, self.max_objects = min_objects, max_objects
        self.min_radius, self.max_radius = min_radius, max_radius
        centres = torch.arange(image_size, dtype=torch.float32) + 0.5  # pixel centres
        self._ys, self._xs = centres.view(-1, 1), centres.view(1, -1)

    # ---- public API -------------------------------------------------------------------------------------

    def batch(self, split: str, index: int, batch_size: int, class_ids: Sequence[int] | None = None
              ) -> ShapesBatch:
        """The ``index``-th batch of a split: a pure function of its arguments."""
        return self.sample(batch_size, split_rng(split, index), class_ids)

    def iterate(self, split: str, batch_size: int, start: int = 0) -> Iterator[ShapesBatch]:
        """Endless batches ``start, start + 1, ...`` of a split (resume training from a batch index)."""
        index = start
        while True:
            yield self.batch(split, index, batch_size)
            index += 1

    def sample(self, batch_size: int, rng: np.random.Generator, class_ids: Sequence[int] | None = None
               ) -> ShapesBatch:
        """Sample and render scenes. With ``class_ids`` (length B): one object of each given class."""
        return self.render(self.sample_scenes(batch_size, rng, class_ids))

    def sample_scenes(self, batch_size: int, rng: np.random.Generator,
                      class_ids: Sequence[int] | None = None) -> list[Scene]:
        """Scene descriptions only (a hook for group sampling: edit scenes, then ``render`` them)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        size = self.image_size
        if class_ids is not None:
            ids = np.asarray(class_ids, dtype=np.int64)
            if ids.shape != (batch_size,) or ids.min() < 0 or ids.max() >= NUM_CLASSES:
                raise ValueError(f"class_ids must be {batch_size} ints in [0, {NUM_CLASSES}), got {class_ids}")
            counts = np.ones(batch_size, dtype=np.int64)
            shapes, colours = (ids // len(COLOURS))[:, None], (ids % len(COLOURS))[:, None]
        else:
            counts = rng.integers(self.min_objects, self.max_objects + 1, size=batch_size)
            shapes = rng.integers(0, len(SHAPES), size=(batch_size, self.max_objects))
            colours = rng.integers(0, len(COLOURS), size=(batch_size, self.max_objects))
        k = shapes.shape[1]
        radius = rng.uniform(self.min_radius, self.max_radius, size=(batch_size, k)) * size
        xy, placed = _place(rng, radius, counts, size)
        background = rng.integers(0, len(BACKGROUNDS), size=batch_size)
        gradient = np.stack([rng.uniform(0, 2 * np.pi, batch_size), rng.uniform(0.0, 0.12, batch_size),
                             np.zeros(batch_size)], axis=1)
        has_stripes = rng.random(batch_size) < 0.4
        stripes = np.stack([rng.uniform(0, np.pi, batch_size), rng.uniform(4, 12, batch_size) * size / 64,
                            np.where(has_stripes, rng.uniform(0.03, 0.08, batch_size), 0.0)], axis=1)
        scenes = []
        for b in range(batch_size):
            objects = tuple(_object(int(shapes[b, j]), int(colours[b, j]), float(radius[b, j]),
                                    float(xy[b, j, 0]), float(xy[b, j, 1]), size)
                            for j in range(k) if placed[b, j])
            bg = BACKGROUND_NAMES[background[b]]
            scenes.append(Scene(objects, bg, tuple(map(float, gradient[b])), tuple(map(float, stripes[b])),
                                size, caption(objects, bg, bool(has_stripes[b]))))
        return scenes

    def render(self, scenes: Sequence[Scene]) -> ShapesBatch:
        """Rasterise scenes (all of this world's ``image_size``) -> a batch with label tensors."""
        if not scenes:
            raise ValueError("render needs at least one scene")
        if any(s.image_size != self.image_size for s in scenes):
            raise ValueError(f"every scene must be {self.image_size} px to render in this world")
        images = self._backgrounds(scenes)
        objects = [(b, o) for b, s in enumerate(scenes) for o in s.objects]
        if objects:
            owner = torch.tensor([b for b, _ in objects])
            alpha = self._coverage([o for _, o in objects])  # (N, S, S)
            colour = torch.tensor([COLOURS[o.colour] for _, o in objects])  # (N, 3)
            # Objects never overlap, so compositing is a sum of per-object deltas over the background.
            delta = alpha[:, None] * (colour[:, :, None, None] - images[owner])
            images.index_add_(0, owner, delta)
        k = max(1, max(s.count for s in scenes))
        shape_ids = torch.full((len(scenes), k), -1, dtype=torch.long)
        colour_ids = torch.full((len(scenes), k), -1, dtype=torch.long)
        for b, s in enumerate(scenes):
            for j, o in enumerate(s.objects):
                shape_ids[b, j], colour_ids[b, j] = SHAPES.index(o.shape), COLOUR_NAMES.index(o.colour)
        counts = torch.tensor([s.count for s in scenes])
        return ShapesBatch(images.clamp_(0.0, 1.0), list(scenes), shape_ids, colour_ids, counts)

    # ---- rasterisation ----------------------------------------------------------------------------------

    def _backgrounds(self, scenes: Sequence[Scene]) -> torch.Tensor:
        """(B, 3, S, S): base colour * (1 + linear gradient) + stripes, all muted."""
        base = torch.tensor([BACKGROUNDS[s.background] for s in scenes])  # (B, 3)
        grad = torch.tensor([s.gradient for s in scenes], dtype=torch.float32)
        stripe = torch.tensor([s.stripes for s in scenes], dtype=torch.float32)
        size = self.image_size
        u = (self._xs - size / 2) / size, (self._ys - size / 2) / size  # centred coords in [-0.5, 0.5]
        along = torch.cos(grad[:, 0, None, None]) * u[0] + torch.sin(grad[:, 0, None, None]) * u[1]
        shade = 1.0 + 2.0 * grad[:, 1, None, None] * along  # (B, S, S)
        across = torch.cos(stripe[:, 0, None, None]) * self._xs + torch.sin(stripe[:, 0, None, None]) * self._ys
        waves = stripe[:, 2, None, None] * torch.sin(2 * torch.pi * across / stripe[:, 1, None, None])
        return base[:, :, None, None] * shade[:, None] + waves[:, None]

    def _coverage(self, objects: Sequence[ShapeObject]) -> torch.Tensor:
        """(N, S, S) anti-aliased coverage in [0, 1] from signed distances in pixels (< 0 inside)."""
        sdf = torch.empty(len(objects), self.image_size, self.image_size)
        names = [o.shape for o in objects]
        for shape in set(names):
            idx = [i for i, n in enumerate(names) if n == shape]
            params = torch.tensor([(objects[i].x, objects[i].y, objects[i].radius) for i in idx])
            dx = self._xs - params[:, 0, None, None]  # (n, 1, S)
            dy = self._ys - params[:, 1, None, None]  # (n, S, 1)
            sdf[idx] = _SDF[shape](dx, dy, params[:, 2, None, None])
        # Coverage ramps over one pixel across the edge; >= 0.5 px inside is exactly 1 (exact colour labels).
        return (0.5 - sdf).clamp_(0.0, 1.0)


def split_rng(split: str, index: int) -> np.random.Generator:
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; splits are {sorted(SPLIT_SEEDS)}")
    if index < 0:
        raise ValueError(f"batch index must be >= 0, got {index}")
    return np.random.default_rng([SPLIT_SEEDS[split], index])


def caption(objects: Sequence[ShapeObject], background: str, striped: bool) -> str:
    """``"a large red circle at the top left and a small blue square at the bottom right, on a striped
    gray background"``; with two or more objects a relation between the first two is added."""
    parts = [f"a {o.size} {o.colour} {o.shape} {_at(o.position)}" for o in objects]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    text += f", on a {'striped ' if striped else ''}{background} background"
    if len(objects) >= 2:
        a, b = objects[0], objects[1]
        predicate = "left of" if a.x < b.x else "right of"
        text += f"; the {a.colour} {a.shape} is {predicate} the {b.colour} {b.shape}"
    return text


def exact_caption(scene: Scene) -> str:
    """The whole scene in whole pixels, degrees and percent, e.g. ``"red circle x 23 y 41 r 7; gray
    background, gradient 8 percent toward 135 degrees, stripes 5 percent every 7.3 pixels at 60 degrees"``.

    Rendering needs nothing else (up to the rounding), so a tokenizer given this caption has nothing left to
    store but the rounding error: the upper end of what text can carry, for TexTok's ablation.
    """
    parts = [f"{o.colour} {o.shape} x {round(o.x)} y {round(o.y)} r {round(o.radius)}" for o in scene.objects]
    direction, amplitude, _ = scene.gradient
    text = f"{scene.background} background, gradient {round(100 * amplitude)} percent toward " \
           f"{round(math.degrees(direction)) % 360} degrees, "
    angle, period, strength = scene.stripes
    if strength > 0:
        text += f"stripes {round(100 * strength)} percent every {period:.1f} pixels at " \
                f"{round(math.degrees(angle)) % 180} degrees"
    else:
        text += "no stripes"
    return "; ".join([*parts, text])


def _at(position: str) -> str:
    if position == "center":
        return "in the center"
    return f"on the {position}" if position in ("left", "right") else f"at the {position}"


def _object(shape: int, colour: int, radius: float, x: float, y: float, size: int) -> ShapeObject:
    return ShapeObject(SHAPES[shape], COLOUR_NAMES[colour], radius, x, y,
                       "large" if radius >= SMALL_LARGE_THRESHOLD * size else "small", _position(x, y, size))


def _position(x: float, y: float, size: int) -> str:
    col = ("left", "center", "right")[min(2, int(3 * x / size))]
    row = ("top", "middle", "bottom")[min(2, int(3 * y / size))]
    if row == "middle":
        return "center" if col == "center" else col
    return row if col == "center" else f"{row} {col}"


def _place(rng: np.random.Generator, radius: np.ndarray, counts: np.ndarray, size: int, tries: int = 24
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rejection-sample centres (B, K, 2) so each object lies inside the image and bounding circles are
    >= 1 px apart. Returns centres and a (B, K) mask of placed objects (an object that finds no room in
    ``tries`` draws is dropped, and the image's count says so)."""
    batch, k = radius.shape
    bound = _BOUND * radius
    xy = np.zeros((batch, k, 2))
    placed = np.zeros((batch, k), dtype=bool)
    for j in range(k):
        todo = counts > j
        for _ in range(tries):
            if not todo.any():
                break
            lo, hi = bound[todo, j] + 1.0, size - bound[todo, j] - 1.0
            cand = rng.uniform(lo[:, None], hi[:, None], size=(int(todo.sum()), 2))
            gap = np.linalg.norm(xy[todo, :j] - cand[:, None], axis=-1) - bound[todo, :j] - bound[todo, j, None]
            ok = np.where(placed[todo, :j], gap >= 1.0, True).all(axis=1)
            rows = np.flatnonzero(todo)[ok]
            xy[rows, j], placed[rows, j] = cand[ok], True
            todo[rows] = False
    return xy, placed


def _box(dx: torch.Tensor, dy: torch.Tensor, half_w: torch.Tensor, half_h: torch.Tensor) -> torch.Tensor:
    """Exact signed distance to an axis-aligned box (inside: negative)."""
    qx, qy = dx.abs() - half_w, dy.abs() - half_h
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _circle(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(dx * dx + dy * dy) - r


def _square(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return _box(dx, dy, 0.8 * r, 0.8 * r)


def _diamond(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # A square rotated 45 degrees whose corners touch the radius (exact inside, lower bound outside).
    return (dx.abs() + dy.abs() - r) * (0.5**0.5)


def _triangle(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # Upward equilateral triangle with circumradius r, centred on its centroid: the max of the distances to
    # its three edge lines (inradius r / 2). Exact inside, slightly low outside near corners.
    s = 3**0.5 / 2
    edges = (-dy, s * dx + 0.5 * dy, -s * dx + 0.5 * dy)  # outward normals (0,-1), (s, .5), (-s, .5)
    return torch.maximum(torch.maximum(edges[0], edges[1]), edges[2]) - 0.5 * r


def _cross(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # A plus sign: the union of two bars with half-length 0.95 r and half-width 0.38 r.
    return torch.minimum(_box(dx, dy, 0.95 * r, 0.38 * r), _box(dx, dy, 0.38 * r, 0.95 * r))


_SDF = {"circle": _circle, "square": _square, "triangle": _triangle, "diamond": _diamond, "cross": _cross}
