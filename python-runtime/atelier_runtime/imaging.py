"""Pixel work around inpainting, outpainting and ControlNet: masks, feathering, pre-fill, overlay, canny.

Pure numpy / OpenCV / PIL (no torch), so the worker's reader thread can run ``canny`` at once.

The overlay is the guarantee of inpainting: ``out = (input * (255 - m) + gen * m + 127) // 255`` in
integers, with ``m`` the feathered mask in 0..255, so a pixel whose ``m`` is 0 comes back
byte-identical to the input and a pixel whose ``m`` is 255 is the generated one.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from .errors import BAD_REQUEST, WorkerError


def _bad(message: str) -> WorkerError:
    return WorkerError(BAD_REQUEST, message)


# ---------------------------------------------------------------------- masks


@dataclass
class InpaintCanvas:
    """The inputs of an inpaint job, prepared at the init image's size."""

    rgb: np.ndarray  # (h, w, 3) uint8: the init image's colour channels, untouched
    filled: np.ndarray  # (h, w, 3) uint8: ``rgb`` with the empty (transparent) pixels pre-filled
    feather: np.ndarray  # (h, w) uint8: the feathered mask m (0 keep .. 255 repaint)
    empty: np.ndarray  # (h, w) bool: pixels that were transparent (alpha < 255)

    @property
    def repaint(self) -> np.ndarray:
        """Where the pipeline repaints: everywhere the feathered mask is not 0."""
        return self.feather > 0


def prepare_canvas(init, mask, mask_blur: int, fill: str, seed: int) -> InpaintCanvas:
    """``init``: a PIL image (any mode; alpha < 255 is empty canvas); ``mask``: a PIL image (white = repaint)."""
    if mask.size != init.size:
        raise _bad(
            f"mask_image must have the size of init_image ({init.width}x{init.height}), "
            f"got {mask.width}x{mask.height}."
        )
    rgba = np.asarray(init.convert("RGBA"))
    rgb = np.ascontiguousarray(rgba[..., :3])
    empty = rgba[..., 3] < 255
    hard = (np.asarray(mask.convert("L")) >= 128) | empty
    if not hard.any():
        raise _bad("mask_image is empty (all black) and init_image has no transparent pixels: nothing to repaint.")
    feather = feather_mask(hard, mask_blur)
    feather[empty] = 255  # an empty pixel has nothing to blend with: it is generated whole
    filled = prefill(rgb, empty, fill, seed)
    return InpaintCanvas(rgb=rgb, filled=filled, feather=feather, empty=empty)


def feather_mask(hard: np.ndarray, radius: int) -> np.ndarray:
    """A binary mask feathered outward by ``radius`` px: 255 on the mask, falling to 0 within ``radius``.

    The mask is dilated by ``radius`` and then blurred with a ``2*radius+1`` kernel, so every masked
    pixel stays 255 and every pixel further than ``radius`` from the mask is exactly 0.
    """
    import cv2

    m = hard.astype(np.uint8) * 255
    if radius <= 0:
        return m
    k = 2 * radius + 1
    dilated = cv2.dilate(m, np.ones((k, k), np.uint8))
    blurred = cv2.GaussianBlur(dilated, (k, k), sigmaX=radius / 2.0, borderType=cv2.BORDER_REPLICATE)
    blurred[hard] = 255  # rounding must not leave 254 inside the mask
    blurred[dilated == 0] = 0  # nor a stray 1 outside the dilated mask
    return blurred


def prefill(rgb: np.ndarray, empty: np.ndarray, fill: str, seed: int) -> np.ndarray:
    """Fill the empty pixels of ``rgb`` before generation (outpainting); the others are kept."""
    import cv2

    if not empty.any():
        return rgb.copy()
    if fill == "noise" or empty.all():
        out = rgb.copy()
        if fill == "noise":
            noise = np.random.default_rng(seed).integers(0, 256, size=rgb.shape, dtype=np.uint8)
        else:
            noise = np.full_like(rgb, 127)  # nothing to extend: mid gray
        out[empty] = noise[empty]
        return out
    if fill == "telea":
        out = cv2.inpaint(rgb, empty.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    else:
        out = _nearest_fill(rgb, empty)
        if fill == "blur":
            h, w = empty.shape
            k = max(3, (max(h, w) // 8) | 1)
            blurred = cv2.GaussianBlur(out, (k, k), 0, borderType=cv2.BORDER_REPLICATE)
            out = np.where(empty[..., None], blurred, out)
    out = np.ascontiguousarray(out)
    out[~empty] = rgb[~empty]
    return out


def _nearest_fill(rgb: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Each empty pixel takes the colour of the nearest kept pixel (the edge colours, extended)."""
    import cv2

    # distanceTransformWithLabels labels the zero pixels of its input: make the kept pixels zero.
    _, labels = cv2.distanceTransformWithLabels(
        empty.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    kept_idx = np.flatnonzero(~empty.ravel())
    # Labels number the zero pixels 1.. in raster order.
    flat = rgb.reshape(-1, 3)
    return flat[kept_idx[labels.ravel() - 1]].reshape(rgb.shape)


def crop_box(
    repaint: np.ndarray, padding: int, aspect: float | None
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the bounding box of ``repaint`` grown by ``padding`` px and then, when
    ``aspect`` (width / height) is given, widened or heightened to that aspect ratio, within the image."""
    h, w = repaint.shape
    ys, xs = np.nonzero(repaint)
    x0, x1 = max(0, xs.min() - padding), min(w, xs.max() + 1 + padding)
    y0, y1 = max(0, ys.min() - padding), min(h, ys.max() + 1 + padding)
    if aspect:
        bw, bh = x1 - x0, y1 - y0
        if bw / bh < aspect:
            x0, x1 = _grow(x0, x1, min(w, round(bh * aspect)), w)
        else:
            y0, y1 = _grow(y0, y1, min(h, round(bw / aspect)), h)
    return int(x0), int(y0), int(x1), int(y1)


def _grow(a: int, b: int, size: int, limit: int) -> tuple[int, int]:
    """Grow [a, b) around its centre to ``size``, shifted to stay within [0, limit)."""
    extra = size - (b - a)
    a -= extra // 2
    b = a + size
    if a < 0:
        a, b = 0, size
    if b > limit:
        a, b = limit - size, limit
    return a, b


def round_size(width: float, height: float, longest: int) -> tuple[int, int]:
    """A generation size with the aspect of ``width``x``height``, longest side ``longest``, multiples of 8."""
    scale = longest / max(width, height)
    return tuple(int(min(4096, max(64, round(v * scale / 8) * 8))) for v in (width, height))


def overlay(rgb: np.ndarray, generated: np.ndarray, feather: np.ndarray) -> np.ndarray:
    """``rgb * (1 - m) + generated * m`` in integers: exact where m is 0 (the input) and 255 (generated)."""
    m = feather.astype(np.uint32)[..., None]
    out = (rgb.astype(np.uint32) * (255 - m) + generated.astype(np.uint32) * m + 127) // 255
    return out.astype(np.uint8)


# ---------------------------------------------------------------------- canny


def canny_edges(image, low: int, high: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """White-on-black edge map (h, w) uint8 of a PIL image: grayscale, resized (area/Lanczos) first."""
    import cv2
    from PIL import Image

    gray = image.convert("L")
    if size is not None and gray.size != size:
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    return cv2.Canny(np.asarray(gray), low, high)


def write_png_atomic(pixels: np.ndarray, path: str) -> None:
    """Write ``pixels`` as a PNG at ``path`` (a temporary name in the same folder, then os.replace)."""
    from PIL import Image

    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".canny.", suffix=".png.part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels).save(f, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_canny(p) -> dict:
    """The ``canny`` method (PROTOCOL.md): ``p`` is a ``CannyParams``."""
    from .params import open_image

    image = open_image(p.image, "image")
    size = (p.width, p.height) if p.width is not None else None
    edges = canny_edges(image, p.low, p.high, size)
    folder = os.path.dirname(p.out)
    try:
        os.makedirs(folder, exist_ok=True)
        write_png_atomic(edges, p.out)
    except OSError as exc:
        raise _bad(f"out {p.out} cannot be written: {exc.strerror or exc}.") from None
    h, w = edges.shape
    return {"path": p.out, "width": w, "height": h, "edge_fraction": round(float((edges > 0).mean()), 6)}
