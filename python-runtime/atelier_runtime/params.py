"""Validation of request parameters.

Every check names the field and the value it got, and nothing is silently corrected: a width of
500 is refused ("a multiple of 8"), not rounded to 496.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .errors import BAD_REQUEST, WorkerError
from .samplers import SAMPLER_NAMES

MEMORY_MODES = ("normal", "low", "minimal")
MODES = ("txt2img", "img2img")
MAX_SEED = 2**53 - 1  # the largest integer a JavaScript number holds exactly

DEFAULT_SAMPLER = "DPM++ 2M Karras"
DEFAULT_STEPS = 20
DEFAULT_CFG = 7.0
DEFAULT_STRENGTH = 0.75
DEFAULT_PREVIEW_SIZE = 96


def _bad(message: str) -> WorkerError:
    return WorkerError(BAD_REQUEST, message)


def require_params(params: Any) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise _bad("params must be a JSON object.")
    return params


def get_str(params: dict, name: str, *, required: bool = False, default: str | None = None) -> str | None:
    if name not in params or params[name] is None:
        if required:
            raise _bad(f"{name} is required.")
        return default
    value = params[name]
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string (got {_show(value)}).")
    return value


def get_abs_path(params: dict, name: str, *, required: bool = False) -> str | None:
    value = get_str(params, name, required=required)
    if value is None:
        return None
    if not value or not os.path.isabs(value):
        raise _bad(f"{name} must be an absolute path (got {_show(value)}).")
    return value


def get_int(
    params: dict, name: str, lo: int, hi: int, *, default: int | None = None, required: bool = False
) -> int | None:
    if name not in params or params[name] is None:
        if required:
            raise _bad(f"{name} is required.")
        return default
    value = params[name]
    # JSON has one number type: accept 20.0 as 20, refuse 20.5 and booleans.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{name} must be a whole number (got {_show(value)}).")
    if isinstance(value, float):
        if not value.is_integer():
            raise _bad(f"{name} must be a whole number (got {_show(value)}).")
        value = int(value)
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo} and {hi} (got {value}).")
    return value


def get_float(params: dict, name: str, lo: float, hi: float, *, default: float | None = None) -> float | None:
    if name not in params or params[name] is None:
        return default
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"{name} must be a number (got {_show(value)}).")
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo:g} and {hi:g} (got {value:g}).")
    return float(value)


def get_choice(params: dict, name: str, choices: tuple[str, ...], *, default: str | None = None) -> str | None:
    value = get_str(params, name, default=default)
    if value is not None and value not in choices:
        raise _bad(f"{name} must be one of {', '.join(choices)} (got {_show(value)}).")
    return value


def get_size(params: dict, name: str) -> int | None:
    """Width or height: a multiple of 8 from 64 to 4096; None means the model's native size."""
    value = get_int(params, name, 64, 4096)
    if value is not None and value % 8:
        raise _bad(
            f"{name} must be a multiple of 8 (got {value}); the nearest are {value // 8 * 8} and {value // 8 * 8 + 8}."
        )
    return value


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class LoadParams:
    path: str
    config: str | None
    memory_mode: str | None

    @classmethod
    def parse(cls, params: Any) -> LoadParams:
        params = require_params(params)
        return cls(
            path=get_abs_path(params, "path", required=True),
            config=get_abs_path(params, "config"),
            memory_mode=get_choice(params, "memory_mode", MEMORY_MODES),
        )


@dataclass
class GenerateParams:
    model: str
    config: str | None
    mode: str
    prompt: str
    negative_prompt: str
    sampler: str
    steps: int
    cfg: float
    seed: int
    width: int | None  # None: the model's native size
    height: int | None
    batch: int
    strength: float
    init_image: str | None
    out_dir: str
    preview_every: int  # 0: no previews
    preview_size: int
    memory_mode: str | None

    @classmethod
    def parse(cls, params: Any) -> GenerateParams:
        params = require_params(params)
        mode = get_choice(params, "mode", MODES, default="txt2img")
        sampler = get_str(params, "sampler", default=DEFAULT_SAMPLER)
        if sampler not in SAMPLER_NAMES:
            raise _bad(f'Unknown sampler "{sampler}". The samplers are: {", ".join(SAMPLER_NAMES)}.')
        batch = get_int(params, "batch", 1, 16, default=1)
        seed = get_int(params, "seed", 0, MAX_SEED, required=True)
        if seed + batch - 1 > MAX_SEED:
            raise _bad(f"seed + batch - 1 must be at most {MAX_SEED} (got seed {seed} with batch {batch}).")
        init_image = get_abs_path(params, "init_image")
        if mode == "img2img" and init_image is None:
            raise _bad("init_image is required for img2img.")
        return cls(
            model=get_abs_path(params, "model", required=True),
            config=get_abs_path(params, "config"),
            mode=mode,
            prompt=get_str(params, "prompt", default=""),
            negative_prompt=get_str(params, "negative_prompt", default=""),
            sampler=sampler,
            steps=get_int(params, "steps", 1, 200, default=DEFAULT_STEPS),
            cfg=get_float(params, "cfg", 0.0, 30.0, default=DEFAULT_CFG),
            seed=seed,
            width=get_size(params, "width"),
            height=get_size(params, "height"),
            batch=batch,
            strength=get_float(params, "strength", 0.0, 1.0, default=DEFAULT_STRENGTH),
            init_image=init_image if mode == "img2img" else None,
            out_dir=get_abs_path(params, "out_dir", required=True),
            preview_every=get_int(params, "preview_every", 0, 200, default=0),
            preview_size=get_int(params, "preview_size", 16, 1024, default=DEFAULT_PREVIEW_SIZE),
            memory_mode=get_choice(params, "memory_mode", MEMORY_MODES),
        )


def load_init_image(path: str, size: tuple[int, int] | None = None):
    """Open ``init_image`` as RGB and check that it decodes; resize it (Lanczos) to ``size`` if given."""
    from PIL import Image, UnidentifiedImageError

    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise _bad(f"init_image {path} does not exist.")
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a truncated or corrupt file fails here and not mid-generation
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise _bad(f"init_image {name} is not an image file Atelier can read (PNG, JPEG, WebP, ...).") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise _bad(f"init_image {name} could not be decoded: {exc}. The file may be damaged or incomplete.") from None
    if size is not None and rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb
