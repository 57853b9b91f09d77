"""Tiny random Stable Diffusion models for tests, built offline.

The components follow diffusers' own fast tests (tiny UNet, VAE and CLIP with random weights
drawn after ``torch.manual_seed(0)``), so a 64x64 image takes a fraction of a second on a CPU.
The CLIP tokenizer is written here too (a small byte-level BPE vocabulary covering lowercase
letters and common prompt words), because nothing may be downloaded.

Usage::

    python -m atelier_runtime.testing.tiny OUTDIR [--family sd15|sdxl|sd15-inpaint] [--controlnet]

writes ``OUTDIR/tiny-<family>/`` (a diffusers folder, safetensors weights) and
``OUTDIR/tiny-<family>.safetensors`` (the same weights in the original LDM single-file layout,
loadable with ``from_single_file(path, config=OUTDIR/tiny-<family>)``), then prints one JSON line:

    {"family": "sd15", "diffusers": "/abs/OUTDIR/tiny-sd15", "single_file": "/abs/OUTDIR/tiny-sd15.safetensors",
     "width": 64, "height": 64}

``--family sd15-inpaint`` writes a dedicated inpainting model (UNet with 9 input channels, saved as a
``StableDiffusionInpaintPipeline``). ``--controlnet`` also writes ``OUTDIR/tiny-controlnet-<base family>/``
(``ControlNetModel.from_unet`` of the tiny UNet, a diffusers folder) and
``OUTDIR/tiny-controlnet-<base family>.safetensors`` (the same weights in one file, diffusers keys),
adding the keys ``"controlnet"`` and ``"controlnet_single_file"`` to the JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..stdio import claim_stdout, write_json_line
from ..tokenizer import build_clip_tokenizer

# Words the tokenizer merges into whole tokens; any other lowercase text still tokenizes
# (into single characters), so every prompt is valid.
_WORDS = (
    "a an the of and with in on at by for to from is portrait photo painting drawing sketch "
    "cat dog bird horse fish tree forest mountain river lake sea sky cloud sun moon star city "
    "street house castle garden flower rose field night day morning sunset light dark red "
    "blue green yellow orange purple black white gray gold silver old young man woman girl boy "
    "face eyes hair smile beautiful detailed realistic sharp blurry ugly lowres quality best "
    "high masterpiece art style oil watercolor digital cinematic lighting landscape astronaut "
    "riding"
).split()


def build_tokenizer():
    """A CLIPTokenizer with a small vocabulary: the byte alphabet, merges for ``_WORDS``, then BOS/EOS."""
    return build_clip_tokenizer(_WORDS, 77)


def _text_config(tokenizer, hidden_size: int = 32, projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        max_position_embeddings=77,
        layer_norm_eps=1e-05,
        hidden_act="gelu",
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_vae(scaling_factor: float, force_upcast: bool):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=scaling_factor,
        force_upcast=force_upcast,
    )


def build_tiny_sd15(inpainting: bool = False):
    """A StableDiffusionPipeline with random tiny weights (deterministic: seeded with 0); with
    ``inpainting``, a StableDiffusionInpaintPipeline whose UNet takes 9 channels (latents, mask, masked image)."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    torch.manual_seed(0)
    vae = _tiny_vae(scaling_factor=0.18215, force_upcast=True)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    # SD 1.5's own scheduler config; the worker swaps the sampler per request from it.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    return cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl():
    """A StableDiffusionXLPipeline with random tiny weights (deterministic: seeded with 0)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + pooled text embedding 32
        cross_attention_dim=96,  # both text encoders' hidden states (32 + 64), concatenated
        norm_num_groups=1,
    )
    torch.manual_seed(0)
    vae = _tiny_vae(scaling_factor=0.13025, force_upcast=True)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    # The two encoders must differ in width, as CLIP-L (768) and OpenCLIP-G (1280) do in SDXL:
    # diffusers' single-file loader tells them apart by the width of their position embeddings.
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, hidden_size=64, projection_dim=32))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=build_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


FAMILIES = ("sd15", "sdxl", "sd15-inpaint")


def write_tiny_model(out_dir: str, family: str = "sd15", controlnet: bool = False) -> dict:
    """Build the tiny pipeline and write both formats into ``out_dir``; return the paths."""
    from safetensors.torch import save_file

    from .ldm_convert import pipeline_to_ldm_state_dict

    if family == "sd15":
        pipe = build_tiny_sd15()
    elif family == "sd15-inpaint":
        pipe = build_tiny_sd15(inpainting=True)
    elif family == "sdxl":
        pipe = build_tiny_sdxl()
    else:
        raise ValueError(f"unknown family {family!r} (expected one of {', '.join(FAMILIES)})")

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    folder = os.path.join(out_dir, f"tiny-{family}")
    single_file = os.path.join(out_dir, f"tiny-{family}.safetensors")

    pipe.save_pretrained(folder, safe_serialization=True)
    save_file(pipeline_to_ldm_state_dict(pipe), single_file, metadata={"format": "pt"})
    result = {"family": family, "diffusers": folder, "single_file": single_file, "width": 64, "height": 64}
    if controlnet:
        result.update(write_tiny_controlnet(out_dir, pipe.unet, family.split("-")[0]))
    return result


def write_tiny_controlnet(out_dir: str, unet, base_family: str) -> dict:
    """``ControlNetModel.from_unet`` of a tiny (4-channel) UNet, random zero-convolutions included, as a
    diffusers folder and as one safetensors file with diffusers keys."""
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(0)
    # The tiny VAE downsamples by 2 (not 8): one stride-2 step in the conditioning embedding.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    if unet.config.in_channels != 4:  # an inpainting UNet: the ControlNet sees the 4 latent channels only
        torch.manual_seed(0)
        controlnet = ControlNetModel.from_config({**dict(controlnet.config), "in_channels": 4})
    # from_unet zero-initialises the zero convolutions (so the ControlNet would do nothing): give them
    # small random weights so that edge maps change the image, as a trained ControlNet does.
    torch.manual_seed(1)
    with torch.no_grad():
        zero_convs = [
            *controlnet.controlnet_down_blocks,
            controlnet.controlnet_mid_block,
            controlnet.controlnet_cond_embedding.conv_out,
        ]
        for module in zero_convs:
            module.weight.normal_(0.0, 0.5)
            module.bias.normal_(0.0, 0.1)
    folder = os.path.join(out_dir, f"tiny-controlnet-{base_family}")
    single_file = folder + ".safetensors"
    controlnet.save_pretrained(folder, safe_serialization=True)
    save_file({k: v.contiguous() for k, v in controlnet.state_dict().items()}, single_file, metadata={"format": "pt"})
    return {"controlnet": folder, "controlnet_single_file": single_file}


def write_tiny_lora(path: str, family: str = "sdxl", rank: int = 4, metadata: dict | None = None) -> str:
    """A kohya-format LoRA (random weights, UNet attention only) for the tiny ``family`` model, written to
    ``path``: e.g. an SDXL-shaped LoRA to try on an SD 1.5 model. No metadata unless given, so the
    worker has to tell the family from the keys and shapes."""
    import torch
    from peft import LoraConfig

    from ..training.kohya import kohya_state_dict, write_safetensors_atomic

    pipe = build_tiny_sdxl() if family == "sdxl" else build_tiny_sd15()
    torch.manual_seed(0)
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]
    )
    pipe.unet.add_adapter(config, adapter_name="tiny")
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if ".lora_B." in name:
                param.normal_(0.0, 0.1)  # not the zero init: the LoRA changes the output
    tensors = kohya_state_dict({"unet": pipe.unet}, family, "tiny", float(rank), torch.float32)
    write_safetensors_atomic(path, tensors, metadata)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random SD model (diffusers folder + LDM single file).")
    parser.add_argument("out_dir")
    parser.add_argument("--family", choices=FAMILIES, default="sd15")
    parser.add_argument("--controlnet", action="store_true", help="also write a tiny ControlNet for the family")
    args = parser.parse_args(argv)

    os.environ["HF_HUB_OFFLINE"] = "1"
    # Library chatter goes to stderr; stdout carries only the JSON line.
    out = claim_stdout()
    write_json_line(out, write_tiny_model(args.out_dir, args.family, args.controlnet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
