"""Tell what a model path is before anything loads it.

Atelier loads only safetensors single files and diffusers folders with safetensors weights:
pickle checkpoints (``.ckpt``, ``.pt``, ``.bin``) can run arbitrary code when unpickled, so they
are recognised by their bytes (a ZIP header or the pickle opcode) and refused with a message that
says what to do. The same goes for text files saved under a model's name (a Git LFS pointer, an
HTML error page), truncated downloads and architectures the worker does not run.

Everything here reads headers only (a few bytes and the safetensors JSON header), never tensors.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BAD_REQUEST, MODEL_NOT_FOUND, NOT_A_MODEL, WorkerError

SD15 = "sd15"
SDXL = "sdxl"
FAMILY_LABELS = {SD15: "Stable Diffusion 1.5", SDXL: "SDXL"}
FAMILY_WITH_ARTICLE = {SD15: "a Stable Diffusion 1.5", SDXL: "an SDXL"}

# diffusers pipeline classes (model_index.json `_class_name`) -> family.
_PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": SD15,
    "StableDiffusionImg2ImgPipeline": SD15,
    "StableDiffusionXLPipeline": SDXL,
    "StableDiffusionXLImg2ImgPipeline": SDXL,
    "StableDiffusionInpaintPipeline": SD15,
    "StableDiffusionXLInpaintPipeline": SDXL,
}

INPAINT_SUFFIX = "-inpaint"  # reported family of a dedicated inpainting model: "sd15-inpaint", "sdxl-inpaint"

# Components whose weights a folder must hold as safetensors.
_WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # real headers are a few MB at most
_PICKLE_EXTENSIONS = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}

# Where the app ships the component configs (JSON + tokenizer files, no weights) that a single-file
# checkpoint needs: <repo>/resources/model-configs/<family>. ATELIER_MODEL_CONFIGS_DIR overrides the
# parent folder (a packaged app keeps its resources elsewhere).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ModelInfo:
    path: str  # absolute, symlinks resolved
    format: str  # "diffusers" | "single_file"
    family: str  # "sd15" | "sdxl"
    variant: str | None = None  # "fp16" when a folder holds only fp16-variant weight files
    keys: list[str] = field(default_factory=list, repr=False)
    inpainting: bool = False  # a dedicated inpainting model (UNet with 9 input channels)

    @property
    def reported_family(self) -> str:
        """The family as results report it: "sd15" | "sdxl" | "sd15-inpaint" | "sdxl-inpaint"."""
        return self.family + INPAINT_SUFFIX if self.inpainting else self.family

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip(os.sep)) or self.path


def inspect_model_path(path: str) -> ModelInfo:
    """Classify ``path`` or raise ``WorkerError`` (MODEL_NOT_FOUND / NOT_A_MODEL) with an explanation."""
    if not os.path.exists(path):
        raise WorkerError(
            MODEL_NOT_FOUND, f"No model was found at {path}. It may have been moved, renamed or deleted."
        )
    real = os.path.realpath(path)
    if os.path.isdir(real):
        return _inspect_folder(real)
    return _inspect_file(real)


# --------------------------------------------------------------------------- folders


def folder_family(folder: str) -> tuple[str | None, dict | None, str]:
    """Read ``model_index.json``: return (family or None, the parsed index or None, a reason when None)."""
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        return None, None, "it has no model_index.json"
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, None, f"its model_index.json cannot be read ({exc})"
    if not isinstance(index, dict):
        return None, None, "its model_index.json is not a JSON object"
    class_name = index.get("_class_name")
    family = _PIPELINE_FAMILIES.get(class_name) if isinstance(class_name, str) else None
    if family is None:
        return None, index, f"it is a {class_name or 'unnamed'} pipeline"
    return family, index, ""


def _inspect_folder(folder: str) -> ModelInfo:
    name = os.path.basename(folder)
    family, index, reason = folder_family(folder)
    if index is None:
        hint = ""
        try:
            singles = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
        except OSError:
            singles = []
        if singles:
            hint = f" It contains {singles[0]}{' and others' if len(singles) > 1 else ''}: choose that file instead."
        raise WorkerError(
            NOT_A_MODEL,
            f"The folder {name} is not a diffusers model ({reason}).{hint}",
        )
    if family is None:
        raise WorkerError(
            NOT_A_MODEL,
            f"The folder {name} holds a model Atelier cannot run ({reason}). "
            "Atelier runs Stable Diffusion 1.5 and SDXL models.",
        )
    if family == SDXL and _component_missing(index, "text_encoder"):
        raise WorkerError(
            NOT_A_MODEL,
            f"The folder {name} is an SDXL refiner, which only finishes images started by a base model. "
            "Choose an SDXL base model.",
        )
    inpainting = _check_unet_config(folder, name, family)

    variant = None
    for component in _WEIGHT_COMPONENTS:
        if _component_missing(index, component):
            continue
        kind = _weights_kind(os.path.join(folder, component))
        if kind == "pickle":
            raise WorkerError(
                NOT_A_MODEL,
                f"The folder {name} stores its {component} weights as pickle files (.bin), which can run "
                "arbitrary code when loaded; Atelier loads only safetensors weights. "
                "Use a copy of this model saved with safetensors.",
            )
        if kind == "missing":
            raise WorkerError(
                NOT_A_MODEL,
                f"The folder {name} has no weights for its {component} (expected {component}/*.safetensors). "
                "The download may be incomplete.",
            )
        if kind == "fp16":
            variant = "fp16"
    return ModelInfo(path=folder, format="diffusers", family=family, variant=variant, inpainting=inpainting)


def _component_missing(index: dict, component: str) -> bool:
    entry = index.get(component)
    return not (isinstance(entry, list) and len(entry) == 2 and entry[0] is not None)


def _unet_in_channels(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, "unet", "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get("in_channels", 4) if isinstance(config, dict) else None


def _check_unet_config(folder: str, name: str, family: str) -> bool:
    """Refuse UNets Atelier cannot run; return True for a dedicated inpainting UNet (9 channels)."""
    try:
        with open(os.path.join(folder, "unet", "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False  # the weight check below reports a missing UNet
    in_channels = config.get("in_channels", 4)
    if in_channels not in (4, 9):
        raise WorkerError(
            NOT_A_MODEL,
            f"The folder {name} has a UNet with {in_channels} input channels (an instruct-pix2pix or depth "
            "model?). Atelier runs regular (4-channel) and inpainting (9-channel) SD 1.5 and SDXL models.",
        )
    if family == SD15 and config.get("cross_attention_dim") == 1024:
        raise WorkerError(
            NOT_A_MODEL,
            f"The folder {name} is a Stable Diffusion 2.x model, which Atelier does not run. "
            "Atelier runs Stable Diffusion 1.5 and SDXL models.",
        )
    return in_channels == 9


def _weights_kind(component_dir: str) -> str:
    """'plain' | 'fp16' (only *.fp16.safetensors) | 'pickle' (only pickle weights) | 'missing'."""
    try:
        files = os.listdir(component_dir)
    except OSError:
        return "missing"
    safetensors = [f for f in files if f.endswith(".safetensors") or f.endswith(".safetensors.index.json")]
    if any(".fp16." not in f for f in safetensors):
        return "plain"
    if safetensors:
        return "fp16"
    if any(os.path.splitext(f)[1] in _PICKLE_EXTENSIONS for f in files):
        return "pickle"
    return "missing"


# --------------------------------------------------------------------------- single files


def _inspect_file(path: str) -> ModelInfo:
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1].lower()
    size = os.path.getsize(path)
    if size == 0:
        raise WorkerError(
            NOT_A_MODEL, f"{name} is an empty file (0 bytes). The download probably failed: download it again."
        )
    with open(path, "rb") as f:
        head = f.read(4096)

    if head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        kind = f"({ext})" if ext in _PICKLE_EXTENSIONS else "(a PyTorch pickle file)"
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is a pickle checkpoint {kind}, which can run arbitrary code when loaded; "
            "Atelier loads only .safetensors files and diffusers folders. Convert it to safetensors first.",
        )
    if head.startswith(b"GGUF"):
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is a GGUF (quantized) file. Atelier loads .safetensors checkpoints and diffusers folders.",
        )

    header = _safetensors_header(path, name, head, size)
    if header is None:
        raise WorkerError(NOT_A_MODEL, _describe_non_model(name, head))

    keys = [k for k in header if k != "__metadata__"]
    family, inpainting = _family_from_keys(name, keys, header)
    return ModelInfo(path=path, format="single_file", family=family, keys=keys, inpainting=inpainting)


def _safetensors_header(path: str, name: str, head: bytes, size: int) -> dict | None:
    """Parse the safetensors header, or return None when the bytes are not safetensors at all.

    Layout: 8-byte little-endian header length N, N bytes of JSON, then the tensor data, whose
    extent the header records as ``data_offsets`` per tensor.
    """
    if len(head) < 9:
        return None
    (header_len,) = struct.unpack("<Q", head[:8])
    if not (2 <= header_len <= _MAX_SAFETENSORS_HEADER) or head[8:9] != b"{":
        return None
    if 8 + header_len > size:
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is truncated: the file ends inside its header ({_fmt_bytes(size)} on disk). "
            "The download probably stopped early: download it again.",
        )
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} looks like a safetensors file but its header is damaged, so it cannot be loaded. "
            "Download it again.",
            detail=str(exc),
        ) from None
    if not isinstance(header, dict):
        raise WorkerError(NOT_A_MODEL, f"{name} has a damaged safetensors header. Download it again.")

    data_len = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            start, end = entry["data_offsets"]
            data_len = max(data_len, int(end))
        except (TypeError, KeyError, ValueError):
            raise WorkerError(
                NOT_A_MODEL, f"{name} has a damaged safetensors header (tensor {key!r}). Download it again."
            ) from None
    expected = 8 + header_len + data_len
    if size < expected:
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is truncated: it should be {_fmt_bytes(expected)} but is {_fmt_bytes(size)} on disk. "
            "The download probably stopped early: download it again.",
        )
    return header


def _describe_non_model(name: str, head: bytes) -> str:
    text = _as_text(head)
    if text is not None:
        stripped = text.lstrip().lower()
        if stripped.startswith("version https://git-lfs"):
            return (
                f"{name} is a Git LFS pointer (a small text file), not the model itself. "
                "Download the actual file, or run `git lfs pull` in the repository you cloned."
            )
        if stripped.startswith(("<!doctype html", "<html", "<?xml", "<head")):
            return (
                f"{name} is a web page (HTML), not a model: the download saved an error or login page instead "
                "of the file. Download it again from the model's page."
            )
        if stripped.startswith(("{", "[")):
            return f"{name} is a JSON text file, not a model. Choose the .safetensors file or the model's folder."
        return f"{name} is a text file, not a model. Choose a .safetensors checkpoint or a diffusers folder."
    return (
        f"{name} is not a model file Atelier recognises (not safetensors, not a diffusers folder). "
        "Atelier loads .safetensors checkpoints and diffusers folders."
    )


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The 4 KB sample may end inside a multi-byte character.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if text and printable / len(text) > 0.95 else None


def _family_from_keys(name: str, keys: list[str], header: dict) -> tuple[str, bool]:
    """(family, inpainting) of a single-file checkpoint, or a NOT_A_MODEL error."""
    has_unet = any(k.startswith("model.diffusion_model.") for k in keys)
    if has_unet:
        in_weight = header.get("model.diffusion_model.input_blocks.0.0.weight", {})
        shape = in_weight.get("shape") if isinstance(in_weight, dict) else None
        inpainting = False
        if isinstance(shape, list) and len(shape) == 4 and shape[1] != 4:
            if shape[1] != 9:
                raise WorkerError(
                    NOT_A_MODEL,
                    f"{name} has a UNet with {shape[1]} input channels (an instruct-pix2pix or depth model?). "
                    "Atelier runs regular (4-channel) and inpainting (9-channel) SD 1.5 and SDXL checkpoints.",
                )
            inpainting = True
        if any(k.startswith("conditioner.embedders.1.") for k in keys):
            return SDXL, inpainting
        if any(k.startswith("cond_stage_model.transformer.") for k in keys):
            return SD15, inpainting
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            raise WorkerError(
                NOT_A_MODEL,
                f"{name} is a Stable Diffusion 2.x checkpoint, which Atelier does not run. "
                "Atelier runs Stable Diffusion 1.5 and SDXL checkpoints.",
            )
        if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
            raise WorkerError(
                NOT_A_MODEL,
                f"{name} is an SDXL refiner, which only finishes images started by a base model. "
                "Choose an SDXL base checkpoint.",
            )
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} contains a UNet but no text encoder, so it cannot generate on its own. "
            "Choose a full checkpoint (UNet, VAE and text encoder in one file).",
        )
    if any(
        ("lora_down" in k or "lora_up" in k or ".lora_A." in k or ".lora_B." in k or k.startswith("lora_"))
        for k in keys
    ):
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is a LoRA, not a checkpoint. Load a base model, then add the LoRA to it.",
        )
    if keys and all(k.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv") for k in keys):
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is a VAE on its own, not a checkpoint. Choose a full SD 1.5 or SDXL checkpoint.",
        )
    if any(
        k.startswith(("double_blocks.", "single_blocks.", "joint_blocks.", "model.diffusion_model.joint_blocks."))
        for k in keys
    ):
        raise WorkerError(
            NOT_A_MODEL,
            f"{name} is a transformer-based model (such as Flux or SD3), which Atelier does not run. "
            "Atelier runs Stable Diffusion 1.5 and SDXL checkpoints.",
        )
    raise WorkerError(
        NOT_A_MODEL,
        f"{name} is a safetensors file of an unknown architecture (it is not a Stable Diffusion 1.5 or SDXL "
        "checkpoint). Atelier runs Stable Diffusion 1.5 and SDXL checkpoints.",
    )


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# --------------------------------------------------------------------------- configs for single files


def bundled_config_dir(family: str) -> Path:
    """``family`` is a reported family: "sd15", "sdxl", "sd15-inpaint", "sdxl-inpaint"."""
    base = os.environ.get("ATELIER_MODEL_CONFIGS_DIR")
    root = Path(base) if base else REPO_ROOT / "resources" / "model-configs"
    return root / family


def resolve_config_dir(info: ModelInfo, requested: str | None) -> str:
    """The diffusers folder whose component configs a single-file checkpoint is loaded with."""
    label = FAMILY_LABELS[info.family] + (" inpainting" if info.inpainting else "")
    a_label = FAMILY_WITH_ARTICLE[info.family] + (" inpainting" if info.inpainting else "")
    if requested is not None:
        if not os.path.isdir(requested):
            raise WorkerError(BAD_REQUEST, f"config must be a diffusers folder, but {requested} is not a folder.")
        family, index, reason = folder_family(requested)
        if index is None or family is None:
            raise WorkerError(BAD_REQUEST, f"config {requested} is not a diffusers model folder ({reason}).")
        if family != info.family:
            raise WorkerError(
                BAD_REQUEST,
                f"config {requested} is {FAMILY_WITH_ARTICLE[family]} folder, but {info.name} is "
                f"{a_label} checkpoint. Pass {a_label} folder as config.",
            )
        channels = _unet_in_channels(requested)
        if channels is not None and (channels == 9) != info.inpainting:
            kind = "an inpainting" if channels == 9 else "a regular (non-inpainting)"
            raise WorkerError(
                BAD_REQUEST,
                f"config {requested} is {kind} model folder, but {info.name} is {a_label} checkpoint. "
                f"Pass {a_label} folder as config.",
            )
        return os.path.realpath(requested)

    bundled = bundled_config_dir(info.reported_family)
    if (bundled / "model_index.json").is_file():
        return str(bundled)
    raise WorkerError(
        BAD_REQUEST,
        f"{info.name} is {a_label} checkpoint, but the {label} component configs (small JSON and tokenizer "
        f"files) are not bundled with this copy of Atelier (looked in {bundled}), and the worker never downloads "
        f"them. Pass a diffusers folder of {a_label} model as config.",
    )
