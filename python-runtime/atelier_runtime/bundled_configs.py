"""The component configs a single-file checkpoint is loaded with, written for the app to ship.

An SD 1.5 or SDXL ``.safetensors`` checkpoint from A1111, ComfyUI or Civitai holds only weights.
diffusers' ``from_single_file`` needs the architecture of each component (UNet, VAE, text encoders),
the scheduler and the CLIP tokenizer files, and would fetch them from the Hub; the worker never
downloads, so the app ships them in ``resources/model-configs/<family>`` (``sd15``, ``sd15-inpaint``,
``sdxl``, ``sdxl-inpaint``) and ``modelfile.resolve_config_dir`` points ``from_single_file`` there.

The configs below are the published diffusers configs of the reference models
(Stable Diffusion 1.5, its inpainting model, SDXL base 1.0 and the SDXL inpainting 0.1 model),
reduced to the keys diffusers and transformers read. The tokenizer's ``vocab.json`` and
``merges.txt`` are derived from OpenAI CLIP's BPE file ``bpe_simple_vocab_16e6.txt.gz``, which ships
inside the ``open_clip_torch`` wheel (MIT licence), exactly as CLIP's own SimpleTokenizer builds its
vocabulary, so the token ids are CLIP's. Regenerate with::

    python -m atelier_runtime.bundled_configs --bpe PATH/bpe_simple_vocab_16e6.txt.gz OUT_DIR

(``pip download open_clip_torch --no-deps`` and unzip ``open_clip/bpe_simple_vocab_16e6.txt.gz``).
The tests check that the committed files are what this module writes, and that each family's
components have the published parameter counts.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

from .tokenizer import _bytes_to_unicode

# sha256 of the BPE file the committed vocabulary was derived from (open_clip_torch 3.3.0).
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

FAMILIES = ("sd15", "sd15-inpaint", "sdxl", "sdxl-inpaint")

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


# --------------------------------------------------------------------------- tokenizer


def clip_vocab_from_bpe(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    """(vocab, merge lines) as CLIP's SimpleTokenizer builds them: 49,408 tokens, 48,894 merges."""
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # the first line is a header
    alphabet = list(_bytes_to_unicode().values())  # CLIP's byte alphabet, in CLIP's order
    tokens = alphabet + [c + "</w>" for c in alphabet]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def _tokenizer_files(vocab: dict[str, int], merges: list[str], pad_token: str) -> dict[str, str]:
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": pad_token, "unk_token": EOS}
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False, separators=(",", ":")) + "\n",
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "special_tokens_map.json": _json(special),
        "tokenizer_config.json": _json(
            {
                **special,
                "add_prefix_space": False,
                "do_lower_case": True,
                "errors": "replace",
                "model_max_length": 77,
                "tokenizer_class": "CLIPTokenizer",
            }
        ),
    }


# --------------------------------------------------------------------------- component configs

_SD_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

_SDXL_VAE = {**_SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

# What both reference UNets share (the SD 1.x layout); each family adds its own blocks and widths.
_UNET_COMMON = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
}

_SD15_UNET = {
    **_UNET_COMMON,
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

_SDXL_UNET = {
    **_UNET_COMMON,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}

_CLIP_COMMON = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    # 2, as in the reference models: transformers then pools at the highest token id (the EOS), as CLIP did.
    "eos_token_id": 2,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "pad_token_id": 1,
    "torch_dtype": "float32",
    "vocab_size": 49408,
}

# CLIP ViT-L/14's text tower: SD 1.5's only text encoder and SDXL's first.
_CLIP_L = {
    **_CLIP_COMMON,
    "architectures": ["CLIPTextModel"],
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
}

# OpenCLIP ViT-bigG/14's text tower with its projection: SDXL's second text encoder.
_CLIP_BIG_G = {
    **_CLIP_COMMON,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}

_SCHEDULER_COMMON = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

_SD15_SCHEDULER = {"_class_name": "PNDMScheduler", **_SCHEDULER_COMMON}

_SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    **_SCHEDULER_COMMON,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}


def _sd15_index(pipeline: str) -> dict:
    return {
        "_class_name": pipeline,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def _sdxl_index(pipeline: str, inpaint: bool) -> dict:
    index = {
        "_class_name": pipeline,
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if inpaint:
        index["requires_aesthetics_score"] = False
    return index


def family_configs(family: str) -> dict[str, dict]:
    """``{relative path: json object}`` of one family's configs (tokenizer files excluded)."""
    inpaint = family.endswith("-inpaint")
    channels = 9 if inpaint else 4
    if family.startswith("sd15"):
        return {
            "model_index.json": _sd15_index("StableDiffusionInpaintPipeline" if inpaint else "StableDiffusionPipeline"),
            "scheduler/scheduler_config.json": _SD15_SCHEDULER,
            "text_encoder/config.json": _CLIP_L,
            "unet/config.json": {**_SD15_UNET, "in_channels": channels},
            "vae/config.json": _SD_VAE,
        }
    if family.startswith("sdxl"):
        return {
            "model_index.json": _sdxl_index(
                "StableDiffusionXLInpaintPipeline" if inpaint else "StableDiffusionXLPipeline", inpaint
            ),
            "scheduler/scheduler_config.json": _SDXL_SCHEDULER,
            "text_encoder/config.json": _CLIP_L,
            "text_encoder_2/config.json": _CLIP_BIG_G,
            "unet/config.json": {**_SDXL_UNET, "in_channels": channels},
            "vae/config.json": _SDXL_VAE,
        }
    raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")


def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def family_files(family: str, vocab: dict[str, int], merges: list[str]) -> dict[str, str]:
    """Every file of one family's config folder: ``{relative path: text}``."""
    files = {path: _json(obj) for path, obj in family_configs(family).items()}
    for name, text in _tokenizer_files(vocab, merges, pad_token=EOS).items():
        files[f"tokenizer/{name}"] = text
    if family.startswith("sdxl"):
        # SDXL's second tokenizer is the same vocabulary padded with "!" (OpenCLIP's padding).
        for name, text in _tokenizer_files(vocab, merges, pad_token="!").items():
            files[f"tokenizer_2/{name}"] = text
    return files


def write_all(bpe_path: str, out_dir: str) -> list[Path]:
    data = Path(bpe_path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BPE_SHA256:
        raise SystemExit(f"{bpe_path} has sha256 {digest}, expected CLIP's {BPE_SHA256}")
    vocab, merges = clip_vocab_from_bpe(data)
    written = []
    for family in FAMILIES:
        for rel, text in family_files(family, vocab, merges).items():
            path = Path(out_dir) / family / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpe", required=True, help="path of bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("out_dir", help="usually resources/model-configs")
    args = parser.parse_args(argv)
    written = write_all(args.bpe, args.out_dir)
    print(f"wrote {len(written)} files under {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
