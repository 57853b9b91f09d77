"""Procedural dataset: one flat-coloured shape on a plain background, with a caption.

Everything here is a pure function of a ``random.Random`` / seed, so the training scripts are
deterministic. Images are drawn at 4x and downsampled (box filter) for smooth edges.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross"]

# (color, shape) pairs never drawn in training: every colour and every shape is held out once,
# so the evaluation measures composition, not memorisation.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("blue", "ring"),
        ("green", "triangle"),
        ("yellow", "cross"),
        ("purple", "circle"),
        ("orange", "square"),
    }
)

# Plural-free synonyms used in training captions (the first name is the canonical one).
SHAPE_WORDS = {
    "circle": ["circle", "disc", "dot"],
    "square": ["square", "box"],
    "triangle": ["triangle"],
    "star": ["star"],
    "ring": ["ring", "donut"],
    "cross": ["cross", "plus sign"],
}
COLOR_WORDS = {c: [c] for c in COLOR_NAMES}
COLOR_WORDS["purple"] = ["purple", "violet"]
BACKGROUND_WORDS = ["background", "backdrop"]

# Caption templates used in training. {c}=shape colour, {s}=shape word, {b}=background colour,
# {bg}=background word.
TRAIN_TEMPLATES = [
    "a {c} {s} on a {b} {bg}",
    "a {c} {s} on a {b} {bg}",
    "a {c} {s} on a {b} {bg}",
    "a {b} {bg} with a {c} {s}",
    "{c} {s} on {b}",
    "a {c} {s}, {b} {bg}",
    "a {c} {s} against a {b} {bg}",
    "a {s} in {c} on a {b} {bg}",
    "{b} {bg}, {c} {s}",
    "a {c} {s} on a plain {b} {bg}",
    "an image of a {c} {s} on a {b} {bg}",
]

# Phrasings never used in training (evaluation only).
HELD_OUT_TEMPLATES = [
    "a {c} {s} in front of a {b} {bg}",
    "a {b} {bg} and a {c} {s} in the middle",
    "simple drawing: {c} {s}, {b} {bg}",
]

CANONICAL_TEMPLATE = "a {c} {s} on a {b} background"

# Words the tokenizer keeps whole (everything else falls back to characters).
VOCAB_WORDS = sorted(
    set(
        " ".join(
            [
                " ".join(COLOR_NAMES),
                "violet",
                " ".join(w for ws in SHAPE_WORDS.values() for w in ws),
                " ".join(BACKGROUND_WORDS),
                " ".join(t.replace("{c}", "").replace("{s}", "").replace("{b}", "").replace("{bg}", "").replace(",", " ") for t in TRAIN_TEMPLATES),
                "a an the of and with in on at over under front middle center centre left right top bottom "
                "small large big tiny shape picture image photo drawing simple plain flat color colour "
                "painting sketch cat dog tree house sun moon sky flower",
            ]
        ).split()
    )
)


def caption(color: str, shape: str, background: str, rng: random.Random | None = None, template: str | None = None) -> str:
    """A caption for the triple; random template and synonyms when ``rng`` is given."""
    if rng is None:
        return (template or CANONICAL_TEMPLATE).format(c=color, s=shape, b=background, bg="background")
    template = template or rng.choice(TRAIN_TEMPLATES)
    return template.format(
        c=rng.choice(COLOR_WORDS[color]),
        s=rng.choice(SHAPE_WORDS[shape]),
        b=rng.choice(COLOR_WORDS[background]),
        bg=rng.choice(BACKGROUND_WORDS),
    )


@dataclass(frozen=True)
class Sample:
    color: str
    shape: str
    background: str
    cx: float  # centre, pixels (0..SIZE)
    cy: float
    r: float  # "radius": half the bounding-box side, pixels


def random_sample(rng: random.Random, allow_held_out: bool = False) -> Sample:
    while True:
        color = rng.choice(COLOR_NAMES)
        shape = rng.choice(SHAPES)
        background = rng.choice(COLOR_NAMES)
        if background == color:
            continue
        if not allow_held_out and (color, shape) in HELD_OUT_PAIRS:
            continue
        break
    r = rng.uniform(9.0, 22.0)
    margin = r + 2.0
    cx = rng.uniform(margin, SIZE - margin)
    cy = rng.uniform(margin, SIZE - margin)
    return Sample(color, shape, background, cx, cy, r)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.9
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        # upright equilateral triangle with its bounding box centred on (cx, cy)
        h = 2 * r * 0.95
        w = h * 2 / math.sqrt(3)
        w = min(w, 2 * r)
        return [(cx, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
    if shape == "star":
        pts = []
        inner = r * 0.45
        for i in range(10):
            ang = -math.pi / 2 + i * math.pi / 5
            rad = r if i % 2 == 0 else inner
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang) + r * 0.1))
        return pts
    if shape == "cross":
        a = r * 0.36
        return [
            (cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a), (cx + r, cy + a), (cx + a, cy + a),
            (cx + a, cy + r), (cx - a, cy + r), (cx - a, cy + a), (cx - r, cy + a), (cx - r, cy - a), (cx - a, cy - a),
        ]
    raise ValueError(shape)


def _draw_mask(shape: str, cx: float, cy: float, r: float, scale: int) -> Image.Image:
    """A binary ('L', 0/255) mask of the shape at ``scale`` x resolution."""
    m = Image.new("L", (SIZE * scale, SIZE * scale), 0)
    d = ImageDraw.Draw(m)
    cx, cy, r = cx * scale, cy * scale, r * scale
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ri = r * 0.55
        d.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    else:
        d.polygon(_polygon(shape, cx, cy, r), fill=255)
    return m


def shape_mask(s: Sample) -> np.ndarray:
    """Float mask in [0, 1], SIZE x SIZE (antialiased)."""
    m = _draw_mask(s.shape, s.cx, s.cy, s.r, SUPERSAMPLE).resize((SIZE, SIZE), Image.BOX)
    return np.asarray(m, dtype=np.float32) / 255.0


def render(s: Sample) -> np.ndarray:
    """uint8 RGB array, SIZE x SIZE x 3."""
    m = shape_mask(s)[..., None]
    fg = np.array(COLORS[s.color], dtype=np.float32)
    bg = np.array(COLORS[s.background], dtype=np.float32)
    img = m * fg + (1 - m) * bg
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def canny_edges(s: Sample) -> np.ndarray:
    """uint8 H x W x 3 canny edge map (cv2.Canny 100/200) of the shape, white edges on black.

    Computed on a high-contrast (white-on-black) rendering of the same shape, so every colour pair
    gives a clean outline; this is what Canny gives on a contrasted photo of the shape."""
    import cv2

    m = np.clip(np.round(shape_mask(s) * 255), 0, 255).astype(np.uint8)
    e = cv2.Canny(m, 100, 200)
    return np.repeat(e[..., None], 3, axis=2)


def make_split(n: int, seed: int, allow_held_out: bool = False):
    """``n`` samples with their images (uint8 N x 64 x 64 x 3)."""
    rng = random.Random(seed)
    samples = [random_sample(rng, allow_held_out) for _ in range(n)]
    images = np.stack([render(s) for s in samples])
    return samples, images


def palette_array() -> np.ndarray:
    return np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float32)


def nearest_color(rgb) -> str:
    d = ((palette_array() - np.asarray(rgb, dtype=np.float32)[None]) ** 2).sum(1)
    return COLOR_NAMES[int(d.argmin())]


if __name__ == "__main__":  # write a contact sheet of the data for a quick look
    import sys

    samples, images = make_split(64, 0)
    sheet = images.reshape(8, 8, SIZE, SIZE, 3).transpose(0, 2, 1, 3, 4).reshape(8 * SIZE, 8 * SIZE, 3)
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/atelier-shapes-data.png"
    Image.fromarray(sheet).save(out)
    for s in samples[:8]:
        print(caption(s.color, s.shape, s.background, random.Random(1)))
    print(out)
