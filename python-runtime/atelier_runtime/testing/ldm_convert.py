"""Convert diffusers Stable Diffusion state dicts to the original LDM single-file layout.

This is the reverse of diffusers' single-file loader (``diffusers.loaders.single_file_utils``):
a checkpoint written by :func:`pipeline_to_ldm_state_dict` loads back with
``StableDiffusionPipeline.from_single_file(path, config=<diffusers folder>)`` (or the SDXL
pipeline) and gives the same weights. It exists so that the test suite can produce a real
single-file checkpoint from the tiny random pipeline without downloading anything.

Covered: the UNet (SD 1.x and SDXL layouts), the KL VAE, the CLIP-L text encoder (SD 1.x
``cond_stage_model.transformer.`` and SDXL ``conditioner.embedders.0.transformer.``) and SDXL's
OpenCLIP-G text encoder (``conditioner.embedders.1.model.``). Every diffusers key must be mapped:
an unmapped key raises, so a silent partial conversion cannot happen.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

# Keys outside the down/mid/up blocks: diffusers name -> LDM name.
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    # SDXL's micro-conditioning embedding (`addition_embed_type="text_time"`).
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
}

# Inside a UNet resnet: diffusers name -> LDM name.
_UNET_RESNET_RENAMES = [
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
]


def _convert_by_prefix(
    state_dict: Mapping[str, torch.Tensor],
    prefix_map: list[tuple[str, str, str]],
    what: str,
) -> dict[str, torch.Tensor]:
    """Rename keys by their longest matching prefix.

    ``prefix_map`` holds ``(diffusers_prefix, ldm_prefix, kind)``; ``kind`` says how the rest of the
    key is renamed ("plain", "unet_resnet", "vae_resnet", "vae_attention").
    """
    ordered = sorted(prefix_map, key=lambda item: len(item[0]), reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for diffusers_prefix, ldm_prefix, kind in ordered:
            if key.startswith(diffusers_prefix):
                rest = key[len(diffusers_prefix) :]
                if kind == "unet_resnet":
                    rest = _rename_first(rest, _UNET_RESNET_RENAMES)
                elif kind == "vae_resnet":
                    rest = rest.replace("conv_shortcut.", "nin_shortcut.")
                elif kind == "vae_attention":
                    rest, tensor = _vae_attention_to_ldm(rest, tensor)
                out[ldm_prefix + rest] = tensor
                break
        else:
            raise ValueError(f"{what}: no LDM name for diffusers key {key!r}")
    return out


def _rename_first(rest: str, renames: list[tuple[str, str]]) -> str:
    for old, new in renames:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def _vae_attention_to_ldm(rest: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    renames = [
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ]
    new_rest = _rename_first(rest, renames)
    if new_rest == rest:
        raise ValueError(f"VAE attention: unexpected key {rest!r}")
    # The original VAE attention uses 1x1 convolutions where diffusers uses linear layers.
    if new_rest.endswith(".weight") and not new_rest.startswith("norm.") and tensor.ndim == 2:
        tensor = tensor.reshape(*tensor.shape, 1, 1)
    return new_rest, tensor


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """Diffusers ``UNet2DConditionModel`` weights -> ``model.diffusion_model.*`` keys."""
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("only an integer layers_per_block has an LDM layout")
    num_blocks = len(config["block_out_channels"])
    step = layers + 1  # LDM numbers each resnet(+attention) and each down/up sampler as one block

    prefix_map: list[tuple[str, str, str]] = [(d, ldm, "plain") for d, ldm in _UNET_TOP_LEVEL.items()]
    for i in range(num_blocks):
        for j in range(layers):
            prefix_map.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{step * i + j + 1}.0.", "unet_resnet"))
            prefix_map.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{step * i + j + 1}.1.", "plain"))
        if i < num_blocks - 1:
            prefix_map.append(
                (f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{step * (i + 1)}.0.op.", "plain")
            )
        for j in range(layers + 1):
            prefix_map.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{step * i + j}.0.", "unet_resnet"))
            prefix_map.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{step * i + j}.1.", "plain"))
        if i < num_blocks - 1:
            # The upsampler follows the resnet, and the attention when the block has one.
            slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
            prefix_map.append(
                (f"up_blocks.{i}.upsamplers.0.conv.", f"output_blocks.{step * i + layers}.{slot}.conv.", "plain")
            )
    prefix_map += [
        ("mid_block.resnets.0.", "middle_block.0.", "unet_resnet"),
        ("mid_block.attentions.0.", "middle_block.1.", "plain"),
        ("mid_block.resnets.1.", "middle_block.2.", "unet_resnet"),
    ]
    converted = _convert_by_prefix(state_dict, prefix_map, "UNet")
    return {UNET_PREFIX + k: v for k, v in converted.items()}


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """Diffusers ``AutoencoderKL`` weights -> ``first_stage_model.*`` keys."""
    num_blocks = len(config["down_block_types"])
    prefix_map: list[tuple[str, str, str]] = []
    for part in ("encoder", "decoder"):
        prefix_map += [
            (f"{part}.conv_in.", f"{part}.conv_in.", "plain"),
            (f"{part}.conv_out.", f"{part}.conv_out.", "plain"),
            (f"{part}.conv_norm_out.", f"{part}.norm_out.", "plain"),
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", "vae_resnet"),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", "vae_resnet"),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", "vae_attention"),
        ]
    prefix_map += [("quant_conv.", "quant_conv.", "plain"), ("post_quant_conv.", "post_quant_conv.", "plain")]
    for i in range(num_blocks):
        prefix_map.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", "vae_resnet"))
        prefix_map.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.", "plain"))
        # The decoder's up blocks are numbered from the deepest in diffusers, from the shallowest in LDM.
        ldm_i = num_blocks - 1 - i
        prefix_map.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{ldm_i}.block.", "vae_resnet"))
        prefix_map.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{ldm_i}.upsample.", "plain"))
    converted = _convert_by_prefix(state_dict, prefix_map, "VAE")
    return {VAE_PREFIX + k: v for k, v in converted.items()}


def clip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Diffusers/transformers ``CLIPTextModel`` weights -> ``<prefix>text_model.*`` keys.

    transformers 5.6+ saves ``CLIPTextModel`` without the ``text_model.`` level; the LDM layout has it.
    """
    out = {}
    for key, tensor in state_dict.items():
        if key.endswith("position_ids"):
            continue  # a buffer, not a weight
        name = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + name] = tensor
    return out


def open_clip_to_ldm(
    state_dict: Mapping[str, torch.Tensor], prefix: str = SDXL_OPENCLIP_PREFIX
) -> dict[str, torch.Tensor]:
    """``CLIPTextModelWithProjection`` weights -> OpenCLIP keys (SDXL's second text encoder)."""
    sd = {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in state_dict.items()
    }
    out: dict[str, torch.Tensor] = {}
    singles = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    layer_renames = [
        ("self_attn.out_proj.", "attn.out_proj."),
        ("layer_norm1.", "ln_1."),
        ("layer_norm2.", "ln_2."),
        ("mlp.fc1.", "mlp.c_fc."),
        ("mlp.fc2.", "mlp.c_proj."),
    ]
    layer_prefix = "text_model.encoder.layers."
    handled = set()
    for key, tensor in sd.items():
        if key.endswith("position_ids"):
            handled.add(key)
        elif key in singles:
            out[prefix + singles[key]] = tensor
            handled.add(key)
        elif key == "text_projection.weight":
            # OpenCLIP multiplies `x @ text_projection`; diffusers' Linear stores the transpose.
            out[prefix + "text_projection"] = tensor.T.contiguous()
            handled.add(key)
        elif key.startswith(layer_prefix):
            index, rest = key[len(layer_prefix) :].split(".", 1)
            base = f"{prefix}transformer.resblocks.{index}."
            if rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
                kind = rest.rsplit(".", 1)[1]  # weight | bias
                q = sd[f"{layer_prefix}{index}.self_attn.q_proj.{kind}"]
                k = sd[f"{layer_prefix}{index}.self_attn.k_proj.{kind}"]
                v = sd[f"{layer_prefix}{index}.self_attn.v_proj.{kind}"]
                out[f"{base}attn.in_proj_{kind}"] = torch.cat([q, k, v], dim=0)
                handled.add(key)
                continue
            renamed = _rename_first(rest, layer_renames)
            if renamed == rest:
                raise ValueError(f"OpenCLIP: no LDM name for diffusers key {key!r}")
            out[base + renamed] = tensor
            handled.add(key)
    missing = set(sd) - handled
    if missing:
        raise ValueError(f"OpenCLIP: no LDM name for diffusers keys {sorted(missing)}")
    return out


def pipeline_to_ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    """A whole SD 1.x or SDXL pipeline -> one original-layout state dict (contiguous, unshared tensors)."""
    ldm = {}
    ldm.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    ldm.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    if getattr(pipe, "text_encoder_2", None) is not None:
        ldm.update(clip_to_ldm(pipe.text_encoder.state_dict(), SDXL_CLIP_PREFIX))
        ldm.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict()))
    else:
        ldm.update(clip_to_ldm(pipe.text_encoder.state_dict(), SD15_CLIP_PREFIX))
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in ldm.items()}
