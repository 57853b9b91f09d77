"""Validation of request parameters.

Every check names the field and the value it got, and nothing is silently corrected: a width of
500 is refused ("a multiple of 8"), not rounded to 496.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import BAD_REQUEST, WorkerError
from .samplers import SAMPLER_NAMES

MEMORY_MODES = ("normal", "low", "minimal")
MODES = ("txt2img", "img2img", "inpaint")
FILLS = ("edge", "blur", "telea", "noise")
CONTROL_TYPES = ("canny",)
MAX_SEED = 2**53 - 1  # the largest integer a JavaScript number holds exactly

DEFAULT_SAMPLER = "DPM++ 2M Karras"
DEFAULT_STEPS = 20
DEFAULT_CFG = 7.0
DEFAULT_STRENGTH = 0.75
DEFAULT_PREVIEW_SIZE = 96
DEFAULT_INPAINT_STRENGTH = 1.0
DEFAULT_MASK_BLUR = 4
DEFAULT_MASK_PADDING = 32
DEFAULT_FILL = "edge"


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


def get_bool(params: dict, name: str, *, default: bool) -> bool:
    if name not in params or params[name] is None:
        return default
    value = params[name]
    if not isinstance(value, bool):
        raise _bad(f"{name} must be true or false (got {_show(value)}).")
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
    # inpaint only (None / defaults otherwise)
    mask_image: str | None = None
    mask_blur: int = DEFAULT_MASK_BLUR
    mask_only: bool = False
    mask_padding: int = DEFAULT_MASK_PADDING
    fill: str = DEFAULT_FILL
    control: ControlParams | None = None
    loras: list[LoraParams] = field(default_factory=list)

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
        if mode in ("img2img", "inpaint") and init_image is None:
            raise _bad(f"init_image is required for {mode}.")
        inpaint = mode == "inpaint"
        mask_image = get_abs_path(params, "mask_image")
        if inpaint and mask_image is None:
            raise _bad("mask_image is required for inpaint.")
        default_strength = DEFAULT_INPAINT_STRENGTH if inpaint else DEFAULT_STRENGTH
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
            strength=get_float(params, "strength", 0.0, 1.0, default=default_strength),
            init_image=init_image if mode != "txt2img" else None,
            out_dir=get_abs_path(params, "out_dir", required=True),
            preview_every=get_int(params, "preview_every", 0, 200, default=0),
            preview_size=get_int(params, "preview_size", 16, 1024, default=DEFAULT_PREVIEW_SIZE),
            memory_mode=get_choice(params, "memory_mode", MEMORY_MODES),
            mask_image=mask_image if inpaint else None,
            mask_blur=get_int(params, "mask_blur", 0, 256, default=DEFAULT_MASK_BLUR),
            mask_only=get_bool(params, "mask_only", default=False),
            mask_padding=get_int(params, "mask_padding", 0, 4096, default=DEFAULT_MASK_PADDING),
            fill=get_choice(params, "fill", FILLS, default=DEFAULT_FILL),
            control=ControlParams.parse(params.get("control")),
            loras=LoraParams.parse_list(params.get("loras")),
        )


@dataclass
class ControlParams:
    type: str
    model: str
    image: str
    scale: float
    start: float
    end: float

    @classmethod
    def parse(cls, control: Any) -> ControlParams | None:
        """``control`` of a generate request; field names in errors are prefixed (``control.scale``)."""
        if control is None:
            return None
        if not isinstance(control, dict):
            raise _bad(f"control must be a JSON object (got {_show(control)}).")
        try:
            kind = get_str(control, "type", required=True)
            if kind not in CONTROL_TYPES:
                raise _bad(f"type must be one of {', '.join(CONTROL_TYPES)} (got {_show(kind)}).")
            parsed = cls(
                type=kind,
                model=get_abs_path(control, "model", required=True),
                image=get_abs_path(control, "image", required=True),
                scale=get_float(control, "scale", 0.0, 2.0, default=1.0),
                start=get_float(control, "start", 0.0, 1.0, default=0.0),
                end=get_float(control, "end", 0.0, 1.0, default=1.0),
            )
        except WorkerError as exc:
            raise _bad(f"control.{exc.message}") from None
        if parsed.start >= parsed.end:
            raise _bad(f"control.start must be less than control.end (got {parsed.start:g} and {parsed.end:g}).")
        return parsed


MAX_LORAS = 16
LORA_WEIGHT_LIMIT = 4.0


@dataclass
class LoraParams:
    path: str
    weight: float

    @classmethod
    def parse_list(cls, loras: Any) -> list[LoraParams]:
        """``loras`` of a generate request; errors name the entry (``loras[1].weight``)."""
        if loras is None:
            return []
        if not isinstance(loras, list):
            raise _bad(f"loras must be a list of {{path, weight}} objects (got {_show(loras)}).")
        if len(loras) > MAX_LORAS:
            raise _bad(f"loras may hold at most {MAX_LORAS} LoRAs (got {len(loras)}).")
        parsed = []
        for i, entry in enumerate(loras):
            if not isinstance(entry, dict):
                raise _bad(f"loras[{i}] must be an object with a path and a weight (got {_show(entry)}).")
            try:
                parsed.append(
                    cls(
                        path=get_abs_path(entry, "path", required=True),
                        weight=get_float(entry, "weight", -LORA_WEIGHT_LIMIT, LORA_WEIGHT_LIMIT, default=1.0),
                    )
                )
            except WorkerError as exc:
                raise _bad(f"loras[{i}].{exc.message}") from None
        return parsed


# ---------------------------------------------------------------------- train

OPTIMIZERS = ("adamw", "adamw8bit")
LR_SCHEDULERS = ("constant", "cosine", "linear")
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
MAX_TRAIN_SEED = 2**32 - 1
MAX_SAMPLE_PROMPTS = 8
MAX_METADATA_PAIRS = 64
DEFAULT_TRAIN_STEPS = 500


@dataclass
class TrainParams:
    model: str
    config: str | None
    dataset: str
    out_dir: str
    output: str
    trigger: str
    resolution: int | None  # None: the model's native size
    buckets: bool
    rank: int
    alpha: float
    lr: float
    text_encoder: bool
    text_encoder_lr: float
    steps: int | None  # None: from epochs (steps wins when both are given)
    epochs: int | None
    batch: int
    seed: int
    optimizer: str
    lr_scheduler: str
    warmup_steps: int
    mixed_precision: str
    gradient_checkpointing: bool
    checkpoint_every: int  # 0: only at the end and on cancel
    sample_every: int  # 0: no samples
    sample_prompts: list[str]
    sample_seed: int
    sample_steps: int
    sample_cfg: float
    resume: bool
    metadata: dict[str, str]

    @classmethod
    def parse(cls, params: Any) -> TrainParams:
        params = require_params(params)
        output = get_abs_path(params, "output", required=True)
        if not output.endswith(".safetensors"):
            raise _bad(f"output must be a path ending in .safetensors (got {_show(output)}).")
        if os.path.basename(output) == ".safetensors":
            raise _bad(f"output needs a file name before .safetensors (got {_show(output)}).")
        trigger = get_str(params, "trigger", default="")
        if len(trigger) > 200 or any(ch in trigger for ch in "\r\n"):
            raise _bad("trigger must be one line of at most 200 characters.")
        resolution = get_int(params, "resolution", 64, 2048)
        if resolution is not None and resolution % 8:
            raise _bad(
                f"resolution must be a multiple of 8 (got {resolution}); "
                f"the nearest are {resolution // 8 * 8} and {resolution // 8 * 8 + 8}."
            )
        rank = get_int(params, "rank", 1, 256, default=8)
        alpha = get_float(params, "alpha", 0.0, 4096.0, default=float(rank))
        if alpha <= 0:
            raise _bad(f"alpha must be greater than 0 (got {alpha:g}).")
        lr = _positive_lr(params, "lr", 1e-4)
        steps = get_int(params, "steps", 1, 1_000_000)
        epochs = get_int(params, "epochs", 1, 10_000)
        if steps is None and epochs is None:
            steps = DEFAULT_TRAIN_STEPS
        return cls(
            model=get_abs_path(params, "model", required=True),
            config=get_abs_path(params, "config"),
            dataset=get_abs_path(params, "dataset", required=True),
            out_dir=get_abs_path(params, "out_dir", required=True),
            output=output,
            trigger=trigger.strip(),
            resolution=resolution,
            buckets=get_bool(params, "buckets", default=True),
            rank=rank,
            alpha=alpha,
            lr=lr,
            text_encoder=get_bool(params, "text_encoder", default=False),
            text_encoder_lr=_positive_lr(params, "text_encoder_lr", lr),
            steps=steps,
            epochs=epochs if steps is None else None,
            batch=get_int(params, "batch", 1, 64, default=1),
            seed=get_int(params, "seed", 0, MAX_TRAIN_SEED, default=0),
            optimizer=get_choice(params, "optimizer", OPTIMIZERS, default="adamw"),
            lr_scheduler=get_choice(params, "lr_scheduler", LR_SCHEDULERS, default="constant"),
            warmup_steps=get_int(params, "warmup_steps", 0, 1_000_000, default=0),
            mixed_precision=get_choice(params, "mixed_precision", MIXED_PRECISIONS, default="auto"),
            gradient_checkpointing=get_bool(params, "gradient_checkpointing", default=False),
            checkpoint_every=get_int(params, "checkpoint_every", 0, 1_000_000, default=100),
            sample_every=get_int(params, "sample_every", 0, 1_000_000, default=0),
            sample_prompts=_sample_prompts(params.get("sample_prompts")),
            sample_seed=get_int(params, "sample_seed", 0, MAX_SEED, default=0),
            sample_steps=get_int(params, "sample_steps", 1, 200, default=DEFAULT_STEPS),
            sample_cfg=get_float(params, "sample_cfg", 0.0, 30.0, default=DEFAULT_CFG),
            resume=get_bool(params, "resume", default=True),
            metadata=_metadata(params.get("metadata")),
        )


def _positive_lr(params: dict, name: str, default: float) -> float:
    value = get_float(params, name, 0.0, 1.0, default=default)
    if value <= 0:
        raise _bad(f"{name} must be greater than 0 (got {value:g}).")
    return value


def _sample_prompts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"sample_prompts must be a list of strings (got {_show(value)}).")
    if len(value) > MAX_SAMPLE_PROMPTS:
        raise _bad(f"sample_prompts may hold at most {MAX_SAMPLE_PROMPTS} prompts (got {len(value)}).")
    for i, prompt in enumerate(value):
        if not isinstance(prompt, str):
            raise _bad(f"sample_prompts[{i}] must be a string (got {_show(prompt)}).")
        if len(prompt) > 2000:
            raise _bad(f"sample_prompts[{i}] is too long ({len(prompt)} characters; at most 2000).")
    return list(value)


# Keys the worker writes itself (PROTOCOL.md, train: the output file); metadata may not override them.
WRITTEN_SS_KEYS = (
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_base_model_version",
    "ss_resolution",
    "ss_num_train_images",
    "ss_steps",
    "ss_learning_rate",
    "ss_seed",
    "ss_output_name",
    "ss_tag_frequency",
)


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"metadata must be an object of string values (got {_show(value)}).")
    if len(value) > MAX_METADATA_PAIRS:
        raise _bad(f"metadata may hold at most {MAX_METADATA_PAIRS} pairs (got {len(value)}).")
    for key, text in value.items():
        if not key or len(key) > 200:
            raise _bad(f"metadata keys must be 1 to 200 characters (got {_show(key)}).")
        if key in WRITTEN_SS_KEYS or key.startswith("atelier."):
            raise _bad(f'metadata key "{key}" is reserved: the worker writes it (and every atelier.* key) itself.')
        if not isinstance(text, str):
            raise _bad(f'metadata["{key}"] must be a string (got {_show(text)}).')
        if len(text) > 100_000:
            raise _bad(f'metadata["{key}"] is too long ({len(text)} characters; at most 100000).')
    return dict(value)


@dataclass
class CannyParams:
    image: str
    low: int
    high: int
    out: str
    width: int | None
    height: int | None

    @classmethod
    def parse(cls, params: Any) -> CannyParams:
        params = require_params(params)
        low = get_int(params, "low", 0, 1000, default=100)
        high = get_int(params, "high", 0, 1000, default=200)
        if low > high:
            raise _bad(f"low must be at most high (got low {low} and high {high}).")
        width = get_int(params, "width", 1, 8192)
        height = get_int(params, "height", 1, 8192)
        if (width is None) != (height is None):
            raise _bad("width and height must be given together (or neither, to keep the image's size).")
        return cls(
            image=get_abs_path(params, "image", required=True),
            low=low,
            high=high,
            out=get_abs_path(params, "out", required=True),
            width=width,
            height=height,
        )


def open_image(path: str, field_name: str):
    """Open and fully decode an image file (a PIL image in its own mode), or BAD_REQUEST naming the field."""
    from PIL import Image, UnidentifiedImageError

    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise _bad(f"{field_name} {path} does not exist.")
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a truncated or corrupt file fails here and not mid-generation
            return img.copy()
    except UnidentifiedImageError:
        raise _bad(f"{field_name} {name} is not an image file Atelier can read (PNG, JPEG, WebP, ...).") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise _bad(
            f"{field_name} {name} could not be decoded: {exc}. The file may be damaged or incomplete."
        ) from None


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
