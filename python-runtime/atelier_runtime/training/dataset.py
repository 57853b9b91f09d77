"""The training dataset: images with kohya-style sidecar captions, and aspect-ratio buckets.

A dataset is one folder: images (``.png .jpg .jpeg .webp .bmp``) and, next to each, an optional
caption ``<stem>.txt`` (a missing caption is ""). Only files directly in the folder are used.
Anything that cannot be used (not an image, damaged, too small, unreadable, a caption without an
image, a sub-folder) is skipped with a reason; nothing here raises for a bad file.

Buckets: sizes of about ``resolution²`` pixels with sides that are multiples of 64 (of 8 below a
resolution of 256), aspect ratios up to 2:1. Each image goes to the bucket nearest its aspect
ratio, is resized (Lanczos) to cover it and centre-cropped.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BAD_REQUEST, WorkerError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Files a dataset folder legitimately holds besides images and captions (Atelier's dataset.json,
# kohya's dataset configs and cached latents): not training data, and not worth a "skipped" line.
SIDE_FILE_EXTENSIONS = (".json", ".toml", ".yaml", ".yml", ".npz")


def ext_of(name: str) -> str:
    return os.path.splitext(name)[1].lower()
CAPTION_EXTENSION = ".txt"
MAX_ASPECT = 2.0  # the widest bucket is 2:1 (and 1:2)


@dataclass
class Item:
    file: str  # the name inside the dataset folder
    path: str
    caption: str  # with the trigger
    size: tuple[int, int]  # (w, h) of the image as shown (EXIF orientation applied)
    bucket: tuple[int, int]  # (w, h) it is trained at
    resized: tuple[int, int]  # (w, h) it is resized to before the centre crop
    crop: tuple[int, int]  # (top, left) of the crop in the resized image (SDXL's crop conditioning)
    digest: str  # sha256 of the file


@dataclass
class Dataset:
    folder: str
    items: list[Item]
    skipped: list[dict]  # [{"file", "reason"}]
    digest: str  # of the usable images, their captions and the training size


def bucket_sizes(resolution: int, enabled: bool) -> list[tuple[int, int]]:
    """The (w, h) sizes images are trained at (one square size when buckets are off)."""
    if not enabled:
        return [(resolution, resolution)]
    step = 64 if resolution >= 256 else 8
    area = resolution * resolution
    side = max(step, resolution // step * step)
    sizes = {(side, side)}
    for w in range(step, side + 1, step):  # the narrow side; each portrait size has its landscape twin
        h = area // w // step * step
        if w <= h <= MAX_ASPECT * w:
            sizes.update({(w, h), (h, w)})
    return sorted(sizes)


def nearest_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    w, h = size
    aspect = math.log(w / h)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1], b))


def cover(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(resized (w, h), crop (top, left)): the smallest resize covering ``bucket``, centre-cropped."""
    w, h = size
    bw, bh = bucket
    scale = max(bw / w, bh / h)
    rw, rh = max(bw, round(w * scale)), max(bh, round(h * scale))
    return (rw, rh), ((rh - bh) // 2, (rw - bw) // 2)


def apply_trigger(caption: str, trigger: str) -> str:
    """``trigger, caption`` unless the caption already contains the trigger (case-insensitive)."""
    if not trigger or trigger.lower() in caption.lower():
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def scan(folder: str, resolution: int, buckets_enabled: bool, trigger: str, should_stop=None) -> Dataset:
    """Read every file of ``folder`` once: decode, measure and hash the images, read the captions."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise WorkerError(BAD_REQUEST, f"dataset {folder} cannot be read: {exc.strerror or exc}.") from None
    buckets = bucket_sizes(resolution, buckets_enabled)
    min_side = resolution // 2
    stems = {os.path.splitext(n)[0] for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS}
    items: list[Item] = []
    skipped: list[dict] = []
    for name in names:
        if should_stop is not None:
            should_stop()
        if name.startswith(".") or ext_of(name) in SIDE_FILE_EXTENSIONS:
            continue  # hidden files (.DS_Store, editor files); the app's dataset.json and kohya's side files
        path = os.path.join(folder, name)
        stem, ext = os.path.splitext(name)
        ext = ext.lower()
        if os.path.isdir(path):
            skipped.append({"file": name, "reason": "a folder: only images directly in the dataset folder are used"})
            continue
        if ext == CAPTION_EXTENSION:
            if stem not in stems:
                skipped.append({"file": name, "reason": "a caption without an image of the same name"})
            continue
        if ext not in IMAGE_EXTENSIONS:
            skipped.append(
                {"file": name, "reason": f"not an image ({ext or 'no extension'}; use .png, .jpg, .webp or .bmp)"}
            )
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            skipped.append({"file": name, "reason": f"cannot be read: {exc.strerror or exc}"})
            continue
        try:
            size = _decoded_size(data)
        except _Unusable as exc:
            skipped.append({"file": name, "reason": str(exc)})
            continue
        if min(size) < min_side:
            skipped.append(
                {
                    "file": name,
                    "reason": f"too small ({size[0]}×{size[1]} px): images need at least {min_side} px on the "
                    f"short side (half the training resolution {resolution})",
                }
            )
            continue
        caption = _read_caption(os.path.join(folder, stem + CAPTION_EXTENSION))
        bucket = nearest_bucket(size, buckets)
        resized, crop = cover(size, bucket)
        items.append(
            Item(
                file=name,
                path=path,
                caption=apply_trigger(caption, trigger),
                size=size,
                bucket=bucket,
                resized=resized,
                crop=crop,
                digest=hashlib.sha256(data).hexdigest(),
            )
        )
    h = hashlib.sha256()
    for item in items:
        h.update(f"{item.file}\0{item.digest}\0{item.caption}\0{item.bucket}\0".encode())
    return Dataset(folder=folder, items=items, skipped=skipped, digest=h.hexdigest())


class _Unusable(Exception):
    pass


def _decoded_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode now: a truncated or corrupt file fails here
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise _Unusable("not an image file Atelier can read (the contents are not PNG, JPEG, WebP or BMP)") from None
    except Image.DecompressionBombError:
        raise _Unusable("too large to decode safely") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _Unusable(f"damaged or incomplete ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a bad file never ends the job
        raise _Unusable(f"could not be decoded ({type(exc).__name__}: {exc})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _read_caption(path: str) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read(100_000).decode("utf-8-sig", errors="replace")
    except OSError:
        return ""
    return " ".join(text.split())  # one line, single spaces


def load_pixels(item: Item) -> np.ndarray:
    """The item at its bucket size: (h, w, 3) uint8, RGB (transparency composited over white)."""
    with Image.open(item.path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
    if rgb.size != item.resized:
        rgb = rgb.resize(item.resized, Image.Resampling.LANCZOS)
    top, left = item.crop
    bw, bh = item.bucket
    return np.asarray(rgb.crop((left, top, left + bw, top + bh)), dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def tag_frequency(items: list[Item]) -> dict[str, int]:
    """kohya's ``ss_tag_frequency`` counts: comma-separated caption parts."""
    counts: dict[str, int] = {}
    for item in items:
        for tag in item.caption.split(","):
            tag = tag.strip()
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
    return counts
