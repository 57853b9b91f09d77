"""The trained LoRA as a kohya / A1111 safetensors file (what A1111, ComfyUI and diffusers load).

Keys: ``lora_unet_<module path with _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``, text
encoders ``lora_te_`` (SD 1.5) or ``lora_te1_`` / ``lora_te2_`` (SDXL), with the text encoder's
module paths under ``text_model.`` as sd-scripts writes them. UNet module paths are diffusers'
(``down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q``), the names sd-scripts uses for
SD 1.x; A1111, ComfyUI and diffusers map them for SDXL too.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

PREFIXES = {
    "sd15": {"unet": "lora_unet_", "text_encoder": "lora_te_"},
    "sdxl": {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"},
}
BASE_MODEL_VERSIONS = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}


def adapter_weights(module, adapter_name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module path: (lora_A weight (down), lora_B weight (up))} of ``adapter_name`` in ``module``."""
    downs, ups = {}, {}
    for name, param in module.named_parameters():
        for marker, table in ((f".lora_A.{adapter_name}.weight", downs), (f".lora_B.{adapter_name}.weight", ups)):
            if name.endswith(marker):
                table[name[: -len(marker)]] = param
    return {path: (downs[path], ups[path]) for path in sorted(downs) if path in ups}


def kohya_state_dict(
    components: dict, family: str, adapter_name: str, alpha: float, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The adapter's weights in ``components`` ({"unet": module, "text_encoder": module, ...}) as kohya keys."""
    out: dict[str, torch.Tensor] = {}
    for component, module in components.items():
        prefix = PREFIXES[family][component]
        for path, (down, up) in adapter_weights(module, adapter_name).items():
            if component != "unet" and not path.startswith("text_model."):
                path = "text_model." + path  # transformers 5 flattened CLIPTextModel; the format has the prefix
            base = prefix + path.replace(".", "_")
            out[f"{base}.lora_down.weight"] = down.detach().to("cpu", dtype).contiguous()
            out[f"{base}.lora_up.weight"] = up.detach().to("cpu", dtype).contiguous()
            out[f"{base}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def build_metadata(
    *,
    family: str,
    rank: int,
    alpha: float,
    resolution: int,
    images: int,
    steps: int,
    lr: float,
    seed: int,
    output: str,
    dataset_folder: str,
    tag_frequency: dict[str, int],
    trigger: str,
    base_model: str,
    extra: dict[str, str],
) -> dict[str, str]:
    from .. import PROTOCOL_VERSION

    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": fmt_number(alpha),
        "ss_base_model_version": BASE_MODEL_VERSIONS[family],
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_num_train_images": str(images),
        "ss_steps": str(steps),
        "ss_learning_rate": repr(float(lr)),
        "ss_seed": str(seed),
        "ss_output_name": os.path.splitext(os.path.basename(output))[0],
        "ss_tag_frequency": json.dumps({os.path.basename(dataset_folder.rstrip(os.sep)): tag_frequency}),
        "atelier.trigger": trigger,
        "atelier.base_model": base_model,
        "atelier.base_family": family,
        "atelier.rank": str(rank),
        "atelier.alpha": fmt_number(alpha),
        "atelier.steps": str(steps),
        "atelier.dataset_size": str(images),
        "atelier.version": str(PROTOCOL_VERSION),
    }
    metadata.update(extra)
    return metadata


def write_safetensors_atomic(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> None:
    """Write under a temporary name in the same folder, fsync, then rename over ``path``."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
