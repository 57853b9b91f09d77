"""LoRAs in generation: what a LoRA file is, whether it fits the resident model, and loading it.

Files are checked from their safetensors header first (no tensors read): a pickle, a model
checkpoint, a LyCORIS network or a LoRA made for the other family is refused with a message naming
the request field (``loras[0].path``). Loaded LoRAs stay in the resident model as peft adapters,
cached by (path, mtime, size); a request activates its own set with its weights and a request
without LoRAs disables the adapter layers, so it computes exactly what the base model computes.

UNet parts go through diffusers (``load_lora_into_unet``, after diffusers' kohya/A1111 key
conversion). Text-encoder parts are injected with peft directly: diffusers hands them to
transformers' ``load_adapter``, which with transformers 5 wants peft >= 0.22 (the lock has 0.21).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections import OrderedDict
from dataclasses import dataclass

from .errors import BAD_REQUEST, WorkerError
from .modelfile import FAMILY_LABELS, FAMILY_WITH_ARTICLE, SD15, SDXL

log = logging.getLogger("atelier.lora")

MAX_LOADED_ADAPTERS = 24  # LoRAs kept loaded between requests (least recently used are dropped)

_LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", "lora.down", "lora.up", "lora_linear_layer")
_LYCORIS_MARKERS = ("hada_w1", "hada_w2", "lokr_w1", "lokr_w2", ".oft_", "oft_blocks", "lora_mid")
# Cross-attention width of the text conditioning, per known family (SD 2.x for the messages only).
_FAMILY_BY_WIDTH = {768: SD15, 1024: "sd2", 2048: SDXL}
_ARTICLE = {**FAMILY_WITH_ARTICLE, "sd2": "a Stable Diffusion 2.x"}
_LABEL = {**FAMILY_LABELS, "sd2": "Stable Diffusion 2.x"}


def _bad(message: str, detail: str | None = None) -> WorkerError:
    return WorkerError(BAD_REQUEST, message, detail)


@dataclass
class LoraFile:
    path: str  # realpath
    name: str
    key: tuple  # (realpath, mtime_ns, size): a file changed on disk is loaded again
    family: str | None  # sd15 | sdxl | sd2 | None (unknown)
    cross_dim: int | None  # the text width its cross-attention LoRA layers take
    text_encoder: bool  # has text-encoder layers


def inspect_lora(path: str, field: str) -> LoraFile:
    """Check that ``path`` is a LoRA in a safetensors file (reads the header only)."""
    from .modelfile import _safetensors_header

    name = os.path.basename(path.rstrip(os.sep)) or path
    if not os.path.exists(path):
        raise _bad(f"{field} {path} does not exist. The LoRA may have been moved, renamed or deleted.")
    real = os.path.realpath(path)
    if os.path.isdir(real):
        raise _bad(f"{field} {name} is a folder; choose the LoRA's .safetensors file.")
    try:
        st = os.stat(real)
        with open(real, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise _bad(f"{field} {name} cannot be read: {exc.strerror or exc}.") from None
    if st.st_size == 0:
        raise _bad(f"{field} {name} is an empty file (0 bytes). Download the LoRA again.")
    if head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise _bad(
            f"{field} {name} is a pickle file (.pt/.ckpt/.bin), which can run arbitrary code when loaded; "
            "Atelier loads LoRAs only from .safetensors files. Use the .safetensors version of this LoRA."
        )
    try:
        header = _safetensors_header(real, name, head, st.st_size)
    except WorkerError as exc:
        raise _bad(f"{field}: {exc.message}") from None
    if header is None:
        raise _bad(f"{field} {name} is not a safetensors file. Atelier loads LoRAs from .safetensors files.")
    metadata = header.get("__metadata__") if isinstance(header.get("__metadata__"), dict) else {}
    shapes = {k: v.get("shape") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    keys = list(shapes)

    if not any(marker in k for k in keys for marker in _LORA_MARKERS):
        if any(marker in k for k in keys for marker in _LYCORIS_MARKERS):
            raise _bad(
                f"{field} {name} is a LyCORIS network (LoHa, LoKr or similar), not a plain LoRA; "
                "Atelier loads plain LoRAs (kohya, A1111, diffusers formats)."
            )
        raise _bad(f"{field} {name} is not a LoRA: {_describe_non_lora(keys)}. Choose a LoRA .safetensors file.")
    if any(marker in k for k in keys for marker in _LYCORIS_MARKERS):
        raise _bad(
            f"{field} {name} contains LyCORIS layers (LoHa, LoKr or similar), which Atelier does not load; "
            "use a plain LoRA."
        )

    cross_dim = None
    for key, shape in shapes.items():
        low = key.replace("-", "_")
        is_down = any(m in low for m in ("lora_down", "lora.down", "lora_A", "down.weight"))
        if "attn2" in low and "to_k" in low and is_down and isinstance(shape, list) and len(shape) == 2:
            cross_dim = int(shape[1])
            break
    text_encoder = any(k.startswith(("lora_te", "text_encoder")) for k in keys)
    return LoraFile(
        path=real,
        name=name,
        key=(real, st.st_mtime_ns, st.st_size),
        family=_family_hint(metadata, keys, cross_dim),
        cross_dim=cross_dim,
        text_encoder=text_encoder,
    )


def _family_hint(metadata: dict, keys: list[str], cross_dim: int | None) -> str | None:
    version = str(metadata.get("ss_base_model_version", "")).lower()
    if version.startswith("sdxl"):
        return SDXL
    if version.startswith("sd_v1"):
        return SD15
    if version.startswith("sd_v2") or str(metadata.get("ss_v2", "")).lower() == "true":
        return "sd2"
    if any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in keys):
        return SDXL
    # SDXL's UNet stacks several transformer blocks per attention (SD 1.x/2.x have one).
    if any("transformer_blocks_1_" in k or "transformer_blocks.1." in k for k in keys):
        return SDXL
    return _FAMILY_BY_WIDTH.get(cross_dim) if cross_dim else None


def _describe_non_lora(keys: list[str]) -> str:
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "it is a full model checkpoint (load it as a model instead)"
    if any(k.startswith(("down_blocks.", "up_blocks.", "mid_block.", "conv_in.")) for k in keys):
        return "it holds the weights of a UNet (part of a model), not LoRA layers"
    if any(k.startswith("controlnet_") or "input_hint_block" in k for k in keys):
        return "it is a ControlNet"
    if keys and all(k.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv") for k in keys):
        return "it is a VAE"
    if any(k in ("emb_params", "clip_l", "clip_g", "string_to_param") for k in keys):
        return "it is a textual-inversion embedding"
    if any("text_model." in k or k.startswith(("encoder.layers.", "embeddings.")) for k in keys):
        return "it holds the weights of a text encoder"
    return "it has no LoRA layers (lora_down/lora_up or lora_A/lora_B tensors)"


def check_fits(lora: LoraFile, family: str, cross_dim: int, model_name: str, field: str) -> None:
    """Refuse a LoRA made for another family, or for a model with another text width."""
    label = FAMILY_LABELS[family]
    if lora.family is not None and lora.family != family:
        raise _bad(
            f"{field} {lora.name} is {_ARTICLE[lora.family]} LoRA, which does not fit {model_name} ({label}). "
            f"Choose a LoRA made for {label}."
        )
    if lora.cross_dim is not None and lora.cross_dim != cross_dim:
        theirs = _FAMILY_BY_WIDTH.get(lora.cross_dim)
        made_for = f" ({_LABEL[theirs]})" if theirs else ""
        raise _bad(
            f"{field} {lora.name} does not fit {model_name}: it was made for a model whose text width is "
            f"{lora.cross_dim}{made_for}, and this model's is {cross_dim}. Choose a LoRA made for this model."
        )


# ---------------------------------------------------------------------- peft helpers


def tuner_layers(module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


def adapter_names(module) -> set[str]:
    names = set()
    for layer in tuner_layers(module):
        names.update(layer.lora_A.keys() if hasattr(layer, "lora_A") else ())
    return names


def delete_adapter(module, name: str) -> None:
    for layer in tuner_layers(module):
        if name in getattr(layer, "lora_A", {}):
            layer.delete_adapter(name)
    config = getattr(module, "peft_config", None)
    if isinstance(config, dict):
        config.pop(name, None)


def strip_lora_layers(module) -> None:
    """Replace every peft layer by the layer it wraps: the module is the base model again, exactly."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers

    if tuner_layers(module):
        recurse_remove_peft_layers(module)
    if hasattr(module, "peft_config"):
        try:
            del module.peft_config
        except AttributeError:
            pass
    if getattr(module, "_hf_peft_config_loaded", None):
        module._hf_peft_config_loaded = None


# ---------------------------------------------------------------------- the resident model's LoRAs


class LoraSet:
    """The LoRAs loaded into the resident model's UNet and text encoder(s), by file."""

    def __init__(self, family: str, components: dict):
        self.family = family
        self.components = components  # "unet", "text_encoder"[, "text_encoder_2"] -> module
        self.loaded: OrderedDict[tuple, str] = OrderedDict()  # file key -> adapter name (LRU order)
        self._counter = 0
        self.active = False

    def apply(self, requested: list[tuple[LoraFile, float, str]]) -> bool:
        """Activate ``requested`` ((file, weight, field) each); load what is not loaded yet.

        Returns True when new LoRA layers were added (the caller re-places the model's modules).
        """
        added = False
        weights: dict[str, float] = {}
        for lora, weight, field in requested:
            name = self.loaded.get(lora.key)
            if name is None:
                self._evict(keep={f.key for f, _, _ in requested})
                name = self._load(lora, field)
                added = True
            self.loaded.move_to_end(lora.key)
            weights[name] = weights.get(name, 0.0) + weight
        active = {n: w for n, w in weights.items() if w != 0.0}
        if not active:
            self.disable()
            return added
        from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters

        names, values = list(active), list(active.values())
        for module in self.components.values():
            if tuner_layers(module):
                set_weights_and_activate_adapters(module, names, values)
                set_adapter_layers(module, enabled=True)
        self.active = True
        return added

    def disable(self) -> None:
        """No LoRA: the adapter layers pass their input through the base layers only."""
        from diffusers.utils.peft_utils import set_adapter_layers

        for module in self.components.values():
            if tuner_layers(module):
                set_adapter_layers(module, enabled=False)
        self.active = False

    def clear(self) -> None:
        """Remove every LoRA layer (the modules are the base model's again)."""
        for module in self.components.values():
            strip_lora_layers(module)
        self.loaded.clear()
        self.active = False

    def _evict(self, keep: set) -> None:
        while len(self.loaded) >= MAX_LOADED_ADAPTERS:
            victim = next((k for k in self.loaded if k not in keep), None)
            if victim is None:
                return
            name = self.loaded.pop(victim)
            for module in self.components.values():
                delete_adapter(module, name)
        # A changed file (same path, other mtime/size) is loaded anew: drop the old version.
        for key in [k for k in self.loaded if k[0] in {path for path, *_ in keep} and k not in keep]:
            name = self.loaded.pop(key)
            for module in self.components.values():
                delete_adapter(module, name)

    def _load(self, lora: LoraFile, field: str) -> str:
        self._counter += 1
        name = f"atelier_lora_{self._counter}"
        try:
            landed = load_lora_file(lora.path, self.family, self.components, name)
        except WorkerError:
            self._forget(name)
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the user, the model is cleaned up
            detail = traceback.format_exc()
            self._forget(name)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise _bad(f"{field} {lora.name} could not be loaded into the model: {reason}", detail) from None
        if not landed:
            self._forget(name)
            raise _bad(
                f"{field} {lora.name} has no layers that match the model (none of its layer names exist in this "
                f"{FAMILY_LABELS[self.family]} model). Choose a LoRA made for this model."
            )
        self.loaded[lora.key] = name
        return name

    def _forget(self, name: str) -> None:
        for module in self.components.values():
            try:
                delete_adapter(module, name)
            except Exception:  # noqa: BLE001 - best effort on a half-loaded adapter
                log.warning("could not remove the half-loaded adapter %s:\n%s", name, traceback.format_exc())


def load_lora_file(path: str, family: str, components: dict, adapter_name: str) -> list[str]:
    """Load the LoRA at ``path`` as adapter ``adapter_name``; return the components it landed in."""
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin
    from safetensors.torch import load_file

    raw = load_file(path)  # CPU tensors; never a pickle
    raw = {k: v for k, v in raw.items() if "dora_scale" not in k}
    unet = components["unet"]
    keys = list(raw)
    if not any(k.startswith(("lora_", "unet.", "text_encoder")) for k in keys) and any(
        k.startswith(("down_blocks.", "up_blocks.", "mid_block.")) for k in keys
    ):
        raw = {f"unet.{k}": v for k, v in raw.items()}  # a bare peft state dict of a UNet
    if family == SDXL:
        state_dict, alphas = StableDiffusionXLLoraLoaderMixin.lora_state_dict(raw, unet_config=unet.config)
        loader = StableDiffusionXLLoraLoaderMixin
    else:
        state_dict, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(raw)
        loader = StableDiffusionLoraLoaderMixin
    if not all("lora" in k for k in state_dict):
        raise _bad_format(path)

    landed = []
    if any(k.startswith("unet.") for k in state_dict):
        loader.load_lora_into_unet(state_dict, network_alphas=alphas, unet=unet, adapter_name=adapter_name)
        if adapter_name in adapter_names(unet):
            landed.append("unet")
    for component in ("text_encoder", "text_encoder_2"):
        module = components.get(component)
        if module is not None and _load_text_encoder(state_dict, alphas, module, component, adapter_name):
            landed.append(component)
    return landed


def _bad_format(path: str) -> WorkerError:
    return _bad(f"{os.path.basename(path)} is not a LoRA in a format Atelier reads (kohya, A1111 or diffusers).")


def _load_text_encoder(state_dict: dict, alphas: dict | None, text_encoder, prefix: str, adapter_name: str) -> bool:
    """diffusers' ``_load_lora_into_text_encoder`` with peft's injection instead of transformers'."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from diffusers.utils.peft_utils import _create_lora_config
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    sd = {k.removeprefix(f"{prefix}."): v for k, v in state_dict.items() if k.startswith(f"{prefix}.")}
    if not sd:
        return False
    sd = convert_state_dict_to_peft(convert_state_dict_to_diffusers(sd))
    flat = not hasattr(text_encoder, "text_model")  # transformers 5 flattened CLIPTextModel
    if flat:
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    rank = {}
    for name, _ in text_encoder.named_modules():
        if name.endswith((".q_proj", ".k_proj", ".v_proj", ".out_proj", ".fc1", ".fc2")):
            key = f"{name}.lora_B.weight"
            if key in sd:
                rank[key] = sd[key].shape[1]
    if not rank:
        return False
    te_alphas = None
    if alphas:
        te_alphas = {}
        for k, v in alphas.items():
            if k.split(".")[0] == prefix:
                k = k.removeprefix(f"{prefix}.")
                te_alphas[k.removeprefix("text_model.") if flat else k] = v
    config = _create_lora_config(sd, te_alphas, None, rank, is_unet=False)
    inject_adapter_in_model(config, text_encoder, adapter_name=adapter_name)
    result = set_peft_model_state_dict(text_encoder, sd, adapter_name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if "lora_" in k]
    if unexpected:
        raise ValueError(f"{len(unexpected)} text-encoder LoRA tensors fit no layer (e.g. {unexpected[0]})")
    return adapter_name in adapter_names(text_encoder)
