"""Shared pieces: the tokenizer builder, model configs, paths and torch setup."""

from __future__ import annotations

import os
from pathlib import Path

from ..tokenizer import build_clip_tokenizer
from .dataset import SIZE, VOCAB_WORDS

REPO_ROOT = Path(__file__).resolve().parents[3]
MODELS_DIR = REPO_ROOT / "resources" / "models"
PIPELINE_DIR = MODELS_DIR / "atelier-shapes"
CONTROLNET_DIR = MODELS_DIR / "atelier-shapes-canny"
WORK_DIR = Path(os.environ.get("ATELIER_EMBEDDED_WORK", "/tmp/atelier-embedded"))

MAX_TOKENS = 32  # captions are ~12 tokens; longer prompts are truncated like SD truncates at 77


def setup_torch(seed: int, threads: int | None = None):
    import random

    import numpy as np
    import torch

    # One intra-op thread by default: on a 2-core machine shared with other work (and under
    # `nice`), two OpenMP threads stall on each other's barriers and run ~10x slower than one.
    # Set ATELIER_TRAIN_THREADS=2 on an otherwise idle machine.
    if threads is None:
        threads = int(os.environ.get("ATELIER_TRAIN_THREADS", "1"))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch


def build_tokenizer():
    """A CLIPTokenizer (byte-level BPE, like SD's) whose merges make every caption word one token.

    Any other text still tokenizes (into single characters), so every prompt is valid."""
    return build_clip_tokenizer(VOCAB_WORDS, MAX_TOKENS)


def build_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=4,
        num_hidden_layers=3,
        max_position_embeddings=MAX_TOKENS,
        layer_norm_eps=1e-05,
        hidden_act="quick_gelu",
        projection_dim=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg)


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=SIZE,
        scaling_factor=1.0,  # replaced by 1/std of the latents after training
        force_upcast=False,
    )


# block widths per level (16x16, 8x8, 4x4 latent). "small": v1-v3 (1.74 M parameters, 0.21 s per
# batch-32 step on 2 cores); "medium": v4 (4.1 M, 0.36 s), wider where the outline is drawn (the
# 16x16 level had 32 channels for a star's points and a cross's arms).
UNET_SIZES = {"small": (32, 64, 64), "medium": (64, 96, 96)}


def build_unet(size: str = "small"):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SIZE // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=UNET_SIZES[size],
        layers_per_block=1,
        # attention at the 8x8 and 4x4 latent levels only (16x16 attention costs 2x on a CPU)
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=128,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def build_scheduler():
    """SD 1.5's betas (scaled_linear 0.00085..0.012) rescaled to zero terminal SNR, with
    v-prediction and trailing timesteps (Lin et al. 2023, "Common Diffusion Noise Schedules and
    Sample Steps are Flawed"), as SD 2.x-v / zero-SNR SDXL models ship it.

    Why not SD 1.5's epsilon schedule: its last timestep keeps ~7% of the signal, so an epsilon
    model takes the image's mean colour (here: the whole flat background) from the starting noise
    instead of the prompt; the first shipped model got the background right in 16% of images."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        steps_offset=1,  # ignored by "trailing"; 1 keeps diffusers from warning about the config
    )


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())
