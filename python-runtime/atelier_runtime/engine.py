"""Loading pipelines and generating images: everything that touches diffusers.

One model is resident at a time. Its base pipeline is loaded from disk (txt2img; for a dedicated
inpainting model, the inpaint pipeline); the img2img, inpaint and ControlNet pipelines are built
from the same components when first needed, so switching modes never reloads weights. One
ControlNet is resident at a time too, cached by path and freed with the model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import get_module_execution_device
from PIL import Image

from .device import DeviceInfo, choose_memory_mode, free_memory, run_with_oom_retry
from .errors import BAD_REQUEST, NOT_A_MODEL, WorkerError
from .imaging import crop_box, overlay, prepare_canvas, round_size
from .lora import LoraSet, check_fits, inspect_lora
from .modelfile import (
    FAMILY_LABELS,
    FAMILY_WITH_ARTICLE,
    SD15,
    SDXL,
    ModelInfo,
    inspect_model_path,
    resolve_config_dir,
)
from .params import ControlParams, GenerateParams, load_init_image, open_image
from .previews import preview_jpeg_base64
from .samplers import make_scheduler, max_steps

PNG_COMPRESS_LEVEL = 1  # fast to write; the library may recompress

diffusers_logging.disable_progress_bar()  # loading bars would only clutter stderr


class _DropEmptyFp32Warning(logging.Filter):
    """diffusers warns on every ``model.to(dtype)`` even when no module needs float32 (``[]``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_DropEmptyFp32Warning())


class JobHandle:
    """What the engine needs from a running request: its id and whether it was cancelled."""

    id: str

    def cancel_requested(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def raise_if_cancelled(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class ResidentModel:
    key: tuple
    info: ModelInfo
    config_dir: str | None
    txt2img: object  # the pipeline loaded from disk (for an inpainting model: its inpaint pipeline)
    scheduler_config: dict
    default_mode: str
    # Pipelines built over txt2img's components: (task, ControlNet key or None) -> pipeline.
    pipes: dict = field(default_factory=dict)
    applied: tuple[int, str] | None = None  # (id of the pipeline, memory mode) last set up
    slicing: bool = False  # attention slicing + VAE tiling on
    loras: LoraSet | None = None  # LoRAs loaded into the UNet / text encoders (generate's `loras`)

    def lora_components(self) -> dict:
        c = self.txt2img.components
        return {k: c[k] for k in ("unet", "text_encoder", "text_encoder_2") if c.get(k) is not None}


@dataclass
class ResidentControlNet:
    key: tuple
    family: str
    model: object


# (family, task, with ControlNet) -> pipeline class; "sd15"/"sdxl" are base families.
_PIPELINES = {
    (SD15, "txt2img", False): StableDiffusionPipeline,
    (SD15, "img2img", False): StableDiffusionImg2ImgPipeline,
    (SD15, "inpaint", False): StableDiffusionInpaintPipeline,
    (SD15, "txt2img", True): StableDiffusionControlNetPipeline,
    (SD15, "img2img", True): StableDiffusionControlNetImg2ImgPipeline,
    (SD15, "inpaint", True): StableDiffusionControlNetInpaintPipeline,
    (SDXL, "txt2img", False): StableDiffusionXLPipeline,
    (SDXL, "img2img", False): StableDiffusionXLImg2ImgPipeline,
    (SDXL, "inpaint", False): StableDiffusionXLInpaintPipeline,
    (SDXL, "txt2img", True): StableDiffusionXLControlNetPipeline,
    (SDXL, "img2img", True): StableDiffusionXLControlNetImg2ImgPipeline,
    (SDXL, "inpaint", True): StableDiffusionXLControlNetInpaintPipeline,
}


class Engine:
    def __init__(self, device: DeviceInfo, emit: Callable[[dict], None]):
        self.device = device
        self.emit = emit
        self.model: ResidentModel | None = None
        self.controlnet: ResidentControlNet | None = None

    # ------------------------------------------------------------------ loading

    def load(self, path: str, config: str | None, memory_mode: str | None, job: JobHandle) -> dict:
        """Make ``path`` the resident model (PROTOCOL.md, load_model)."""
        info = inspect_model_path(path)
        config_dir = resolve_config_dir(info, config) if info.format == "single_file" else None
        key = _model_key(info, config_dir)

        if self.model is not None and self.model.key == key:
            if memory_mode is not None:
                self.model.default_mode = memory_mode
            return self._load_result(path, cached=True, load_ms=0)

        self.unload()
        start = time.perf_counter()
        kind = " inpainting" if info.inpainting else ""
        self._log(job.id, "info", f"Loading {info.name} ({FAMILY_LABELS[info.family]}{kind}, {info.format})")
        # A cancel during the load ends the request (the worker checks) but keeps the model resident.
        pipe = self._from_disk(info, config_dir)
        self.model = ResidentModel(
            key=key,
            info=info,
            config_dir=config_dir,
            txt2img=pipe,
            scheduler_config=dict(pipe.scheduler.config),
            default_mode=memory_mode or choose_memory_mode(self.device, info.family),
        )
        # Moving the weights to the GPU can itself run out of memory: fall back as a generation does.
        _, mode = self._with_oom_retry(
            lambda m: self._apply_mode(self.model.txt2img, m), self.model.default_mode, job.id
        )
        self.model.default_mode = mode
        return self._load_result(path, cached=False, load_ms=_ms_since(start))

    def _load_result(self, path: str, cached: bool, load_ms: int) -> dict:
        m = self.model
        return {
            "path": path,
            "family": m.info.reported_family,
            "format": m.info.format,
            "load_ms": load_ms,
            "cached": cached,
            "memory_mode": m.default_mode,
        }

    def _from_disk(self, info: ModelInfo, config_dir: str | None):
        cls = _PIPELINES[(info.family, "inpaint" if info.inpainting else "txt2img", False)]
        if info.family == SD15:
            extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        else:
            extra = {"add_watermarker": False}
        common = {"dtype": self.device.dtype, "local_files_only": True, **extra}
        try:
            if info.format == "diffusers":
                pipe = cls.from_pretrained(info.path, use_safetensors=True, variant=info.variant, **common)
            else:
                with _safetensors_named(info.path) as path:
                    pipe = cls.from_single_file(path, config=config_dir, **common)
        except WorkerError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the user with the traceback
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise WorkerError(
                NOT_A_MODEL,
                f"{info.name} could not be loaded as {FAMILY_WITH_ARTICLE[info.family]} model: {reason}",
                traceback.format_exc(),
            ) from None
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def unload(self) -> None:
        m, self.model = self.model, None
        if m is None:
            return
        for pipe in (m.txt2img, *m.pipes.values()):
            pipe.remove_all_hooks()
        m.pipes.clear()
        pipe = m = None  # drop the last references before freeing
        self.controlnet = None  # the ControlNet goes with the model that used it
        free_memory()

    def _pipe(self, task: str, controlnet: ResidentControlNet | None = None):
        """The ``task`` pipeline (txt2img / img2img / inpaint, with or without ``controlnet``) over the
        resident model's components: no reload, no copy."""
        m = self.model
        if controlnet is None and task == ("inpaint" if m.info.inpainting else "txt2img"):
            return m.txt2img
        key = (task, controlnet.key if controlnet is not None else None)
        pipe = m.pipes.get(key)
        if pipe is not None:
            return pipe
        # Pipelines of an older ControlNet hold its weights: drop them.
        for old in [k for k in m.pipes if k[1] is not None and k[1] != key[1]]:
            m.pipes.pop(old).remove_all_hooks()
            m.applied = None
        c = m.txt2img.components
        kwargs = {"vae": c["vae"], "text_encoder": c["text_encoder"], "tokenizer": c["tokenizer"], "unet": c["unet"]}
        kwargs["scheduler"] = c["scheduler"]
        if controlnet is not None:
            kwargs["controlnet"] = controlnet.model
        if m.info.family == SD15:
            kwargs.update(
                safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False
            )
        else:
            kwargs.update(
                text_encoder_2=c["text_encoder_2"],
                tokenizer_2=c["tokenizer_2"],
                force_zeros_for_empty_prompt=m.txt2img.config.force_zeros_for_empty_prompt,
                add_watermarker=False,
            )
            if task != "txt2img":
                kwargs["requires_aesthetics_score"] = False
        pipe = _PIPELINES[(m.info.family, task, controlnet is not None)](**kwargs)
        pipe.set_progress_bar_config(disable=True)
        m.pipes[key] = pipe
        return pipe

    # ------------------------------------------------------------------ ControlNet

    def _load_controlnet(self, c: ControlParams, job: JobHandle) -> ResidentControlNet:
        """The ControlNet at ``c.model``, loaded once and kept (one at a time); its family must be the model's."""
        m = self.model
        path = c.model
        if not os.path.exists(path):
            raise WorkerError(BAD_REQUEST, f"control.model {path} does not exist.")
        real = os.path.realpath(path)
        name = os.path.basename(real.rstrip(os.sep))
        if os.path.isdir(real):
            config = _controlnet_folder_config(real, name)
            family = _controlnet_family_from_config(config)
        else:
            config = None
            family = _controlnet_family_from_file(real, name)
        unet_config = m.txt2img.unet.config
        label = FAMILY_LABELS[m.info.family]
        if family != m.info.family:
            theirs = FAMILY_WITH_ARTICLE.get(family, "a Stable Diffusion 2.x")
            raise WorkerError(
                BAD_REQUEST,
                f"control.model {name} is {theirs} ControlNet, which does not fit {m.info.name} ({label}). "
                f"Choose a ControlNet made for {label}.",
            )
        if config is not None and config.get("cross_attention_dim") != unet_config.cross_attention_dim:
            raise WorkerError(
                BAD_REQUEST,
                f"control.model {name} does not fit {m.info.name}: its text width is "
                f"{config.get('cross_attention_dim')}, the model's is {unet_config.cross_attention_dim}. "
                f"Choose a ControlNet made for {label}.",
            )
        st = os.stat(_controlnet_weights_file(real) if config is not None else real)
        key = (real, st.st_mtime_ns, st.st_size, m.info.family, self.device.dtype_name)
        if self.controlnet is not None and self.controlnet.key == key:
            return self.controlnet
        # Free the previous one (and the pipelines holding it) before loading another.
        if self.controlnet is not None:
            for k in [k for k in m.pipes if k[1] is not None]:
                m.pipes.pop(k).remove_all_hooks()
            m.applied = None
            self.controlnet = None
            free_memory()
        self._log(job.id, "info", f"Loading ControlNet {name}")
        common = {"dtype": self.device.dtype, "local_files_only": True}
        try:
            if config is not None:
                variant = "fp16" if _controlnet_weights_file(real).endswith(".fp16.safetensors") else None
                model = ControlNetModel.from_pretrained(real, use_safetensors=True, variant=variant, **common)
            else:
                with tempfile.TemporaryDirectory(prefix="atelier-controlnet-") as tmp:
                    _write_controlnet_config(unet_config, m.txt2img.vae_scale_factor, tmp)
                    with _safetensors_named(real) as alias:
                        model = ControlNetModel.from_single_file(alias, config=tmp, **common)
        except WorkerError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with the traceback
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise WorkerError(
                BAD_REQUEST,
                f"control.model {name} could not be loaded as a ControlNet: {reason}",
                traceback.format_exc(),
            ) from None
        model.eval()
        self.controlnet = ResidentControlNet(key=key, family=family, model=model)
        return self.controlnet

    # ------------------------------------------------------------------ LoRAs

    def _apply_loras(self, requested: list, job: JobHandle) -> None:
        """Activate generate's ``loras`` ((LoraFile, weight, field) each) on the resident model; no LoRAs
        disables the adapter layers, so the model computes exactly what the base model computes."""
        m = self.model
        if not requested and m.loras is None:
            return
        cross_dim = m.txt2img.unet.config.cross_attention_dim
        for lora, _, where in requested:
            check_fits(lora, m.info.family, cross_dim, m.info.name, where)
        if m.loras is None:
            m.loras = LoraSet(m.info.family, m.lora_components())
        for lora, _, _ in requested:
            if lora.key not in m.loras.loaded:
                self._log(job.id, "info", f"Loading LoRA {lora.name}")
        try:
            added = m.loras.apply(requested)
        except BaseException:
            m.applied = None  # modules may have been wrapped: place them again
            raise
        if added:
            m.applied = None  # new layers: place the modules (and offload hooks) again

    def clear_loras(self) -> None:
        """Remove every LoRA layer from the resident model (training adds its own)."""
        m = self.model
        if m is None:
            return
        if m.loras is None:
            m.loras = LoraSet(m.info.family, m.lora_components())
        m.loras.clear()
        m.applied = None

    # ------------------------------------------------------------------ training

    def train(self, p, job: JobHandle) -> dict:
        """Run a ``train`` request (PROTOCOL.md, train): a LoRA for ``p.model`` from ``p.dataset``."""
        from .training.trainer import Trainer

        return Trainer(self, p, job).run()

    # ------------------------------------------------------------------ memory modes

    def _apply_mode(self, pipe, mode: str) -> None:
        """Set up ``pipe`` for memory ``mode`` (normal / low / minimal), undoing the previous setup."""
        m = self.model
        if m.applied == (id(pipe), mode):
            return
        # Offload hooks live on the shared modules: clear them before placing the modules anew.
        pipe.remove_all_hooks()
        m.applied = None
        if mode == "minimal" and self.device.kind == "cuda":
            pipe.enable_model_cpu_offload(device=self.device.device)
        else:
            # On the CPU there is nothing to offload to: minimal is low there.
            pipe.to(self.device.device)
        slicing = mode != "normal"
        if slicing != m.slicing:
            if slicing:
                pipe.enable_attention_slicing()
                pipe.vae.enable_tiling()
            else:
                pipe.disable_attention_slicing()
                pipe.vae.disable_tiling()
            m.slicing = slicing
        m.applied = (id(pipe), mode)

    def _with_oom_retry(self, run, mode: str, request_id: str):
        def on_retry(failed: str, lower: str) -> None:
            self._log(request_id, "warning", f"Out of GPU memory in {failed} memory mode; retrying in {lower} mode.")
            if self.model is not None:
                self.model.applied = None  # the failed attempt may have left modules half-placed

        def describe(mode_: str) -> str:
            gb = self.device.vram_mb / 1024
            return (
                f"Out of GPU memory ({gb:.0f} GB) even in {mode_} memory mode. Try a smaller image size or batch, "
                "or close other programs that use the GPU."
            )

        return run_with_oom_retry(run, mode, free=free_memory, on_retry=on_retry, describe=describe)

    # ------------------------------------------------------------------ generation

    def generate(self, p: GenerateParams, job: JobHandle) -> dict:
        """Run a ``generate`` request; returns the result payload (PROTOCOL.md, generate)."""
        start = time.perf_counter()

        # 1. Check what needs no model: the images decode, the output folder exists.
        canvas = init_image = None
        if p.mode == "inpaint":
            init_raw = open_image(p.init_image, "init_image")
            canvas = prepare_canvas(init_raw, open_image(p.mask_image, "mask_image"), p.mask_blur, p.fill, p.seed)
        elif p.init_image:
            init_image = load_init_image(p.init_image)
        control_image = open_image(p.control.image, "control.image").convert("RGB") if p.control else None
        loras = [
            (inspect_lora(lora.path, f"loras[{i}].path"), lora.weight, f"loras[{i}].path")
            for i, lora in enumerate(p.loras)
        ]
        try:
            os.makedirs(p.out_dir, exist_ok=True)
        except OSError as exc:
            raise WorkerError(BAD_REQUEST, f"out_dir {p.out_dir} cannot be created: {exc.strerror}.") from None

        # 2. Load the model unless it is resident.
        load_ms = self.load(p.model, p.config, None, job)["load_ms"]
        job.raise_if_cancelled()
        m = self.model
        if m.info.inpainting and p.mode != "inpaint":
            raise WorkerError(
                BAD_REQUEST,
                f"{m.info.name} is an inpainting model: it runs only with mode inpaint (an init_image and a "
                f"mask_image). Choose a regular {FAMILY_LABELS[m.info.family]} model for {p.mode}.",
            )
        controlnet = self._load_controlnet(p.control, job) if p.control else None
        self._apply_loras(loras, job)
        job.raise_if_cancelled()

        # 3. Resolve sizes and sampler limits.
        native = m.txt2img.unet.config.sample_size * m.txt2img.vae_scale_factor
        box = None
        if canvas is not None:
            h, w = canvas.rgb.shape[:2]
            if p.mask_only:
                aspect = p.width / p.height if p.width and p.height else None
                box = crop_box(canvas.repaint, p.mask_padding, aspect)
                auto = round_size(box[2] - box[0], box[3] - box[1], native)
            else:
                box = (0, 0, w, h)
                auto = tuple(min(4096, max(64, v // 8 * 8)) for v in (w, h))
            width, height = p.width or auto[0], p.height or auto[1]
        else:
            width, height = p.width or native, p.height or native
        limit = max_steps(p.sampler, make_scheduler(p.sampler, m.scheduler_config, p.seed))
        if limit is not None and p.steps > limit:
            raise WorkerError(
                BAD_REQUEST, f"steps must be at most {limit} with the {p.sampler} sampler (got {p.steps})."
            )
        if init_image is not None and init_image.size != (width, height):
            init_image = init_image.resize((width, height), Image.Resampling.LANCZOS)
        inpaint = None
        if canvas is not None:
            inpaint = _InpaintJob(canvas, box, width, height)
            if control_image is not None:
                # The edge map covers the whole frame: crop it as the frame is cropped.
                full = control_image.resize((w, h), Image.Resampling.LANCZOS)
                control_image = full.crop(box)
        if control_image is not None and control_image.size != (width, height):
            control_image = control_image.resize((width, height), Image.Resampling.LANCZOS)

        # 4. Generate, retrying once in a lower memory mode if the GPU runs out of memory.
        mode = p.memory_mode or m.default_mode
        (images, inference_ms, decode_ms), used = self._with_oom_retry(
            lambda mode_: self._generate_images(
                p, job, mode_, width, height, init_image, inpaint, controlnet, control_image
            ),
            mode,
            job.id,
        )
        if used != mode and p.memory_mode is None:
            m.default_mode = used  # stay in the mode that fits for the next requests
        return {
            "images": images,
            "loras": [{"path": lora.path, "weight": lora.weight} for lora in p.loras],
            "family": m.info.reported_family,
            "device": self.device.kind,
            "dtype": self.device.dtype_name,
            "memory_mode": used,
            "timings": {
                "load_ms": load_ms,
                "inference_ms": inference_ms,
                "decode_ms": decode_ms,
                "total_ms": _ms_since(start),
            },
        }

    def _generate_images(
        self,
        p: GenerateParams,
        job: JobHandle,
        mode: str,
        width: int,
        height: int,
        init_image,
        inpaint: _InpaintJob | None = None,
        controlnet: ResidentControlNet | None = None,
        control_image=None,
    ):
        m = self.model
        if inpaint is not None:
            # The pipeline sees the pre-filled crop; the overlay puts the input back outside the feather.
            init_image = inpaint.init
            use_img2img = False
            pipe = self._pipe("inpaint", controlnet)
        else:
            # Strength 1 ignores the init image: that is txt2img from pure noise with the same seed.
            use_img2img = init_image is not None and p.strength < 1.0
            pipe = self._pipe("img2img" if use_img2img else "txt2img", controlnet)
        self._apply_mode(pipe, mode)
        control = None
        if controlnet is not None:
            control = {
                "controlnet_conditioning_scale": p.control.scale,
                "control_guidance_start": p.control.start,
                "control_guidance_end": p.control.end,
            }

        images = []
        inference_ms = decode_ms = 0
        for index in range(p.batch):
            job.raise_if_cancelled()
            seed = p.seed + index
            if (use_img2img or inpaint is not None) and int(p.steps * p.strength) == 0:
                # No denoising step would run: return the VAE round trip of the input.
                t = time.perf_counter()
                image = self._vae_round_trip(pipe, init_image)
                decode_ms += _ms_since(t)
            else:
                pipe.scheduler = make_scheduler(p.sampler, m.scheduler_config, seed)
                generator = torch.Generator("cpu").manual_seed(seed)
                extra = {}
                if inpaint is not None:
                    extra = {"image": init_image, "mask_image": inpaint.mask, "strength": p.strength}
                    extra.update(width=width, height=height)
                    if control is not None:
                        extra["control_image"] = control_image
                elif use_img2img:
                    extra = {"image": init_image, "strength": p.strength}
                    if control is not None:
                        extra.update(control_image=control_image, width=width, height=height)
                else:
                    extra = {"width": width, "height": height}
                    if control is not None:
                        extra["image"] = control_image
                if control is not None:
                    extra.update(control)
                t = time.perf_counter()
                latents = self._denoise(pipe, p, job, index, extra, generator)
                inference_ms += _ms_since(t)
                t = time.perf_counter()
                image = self._decode(pipe, latents)
                decode_ms += _ms_since(t)
            job.raise_if_cancelled()
            if inpaint is not None:
                image = inpaint.compose(image)
            path = _save_png(image, p.out_dir, index)
            images.append({"path": path, "seed": seed, "width": image.width, "height": image.height})
        return images, inference_ms, decode_ms

    def _denoise(self, pipe, p: GenerateParams, job: JobHandle, index: int, extra: dict, generator):
        """Run the denoising loop; returns the final latents. Cancel is honoured between steps."""
        family = self.model.info.family

        def on_step_end(pipe_, step: int, timestep, tensors: dict) -> dict:
            if job.cancel_requested():
                pipe_._interrupt = True  # the loop skips the remaining steps
                return {}
            preview = None
            if p.preview_every and (step + 1) % p.preview_every == 0:
                preview = preview_jpeg_base64(tensors["latents"], family, p.preview_size)
            self.emit(
                {
                    "type": "progress",
                    "id": job.id,
                    "image": index,
                    "step": step + 1,
                    "total": pipe_.num_timesteps,
                    "preview": preview,
                }
            )
            return {}

        kwargs = {
            "prompt": p.prompt,
            # None (not "") lets SDXL use zeros for an empty negative prompt, as it was trained.
            "negative_prompt": p.negative_prompt or None,
            "num_inference_steps": p.steps,
            "guidance_scale": p.cfg,
            "generator": generator,
            "output_type": "latent",
            "callback_on_step_end": on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        kwargs.update(extra)
        latents = pipe(**kwargs).images
        job.raise_if_cancelled()
        return latents

    @torch.no_grad()
    def _decode(self, pipe, latents):
        """Latents -> PIL image, as the pipelines decode (SDXL's fp16 VAE is upcast to float32)."""
        vae = pipe.vae
        upcast = self._needs_vae_upcast(vae)
        if upcast:
            vae.to(dtype=torch.float32)
        try:
            latents = latents.to(dtype=vae.dtype)
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
                std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
                latents = latents * std / vae.config.scaling_factor + mean
            else:
                latents = latents / vae.config.scaling_factor
            image = vae.decode(latents.to(get_module_execution_device(vae)), return_dict=False)[0]
        finally:
            if upcast:
                vae.to(dtype=torch.float16)
        return pipe.image_processor.postprocess(image, output_type="pil")[0]

    @torch.no_grad()
    def _vae_round_trip(self, pipe, init_image):
        vae = pipe.vae
        upcast = self._needs_vae_upcast(vae)
        if upcast:
            vae.to(dtype=torch.float32)
        try:
            pixels = pipe.image_processor.preprocess(init_image)
            pixels = pixels.to(device=get_module_execution_device(vae), dtype=vae.dtype)
            latents = vae.encode(pixels).latent_dist.mode()
            image = vae.decode(latents, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(dtype=torch.float16)
        return pipe.image_processor.postprocess(image, output_type="pil")[0]

    def _needs_vae_upcast(self, vae) -> bool:
        # SDXL's VAE overflows in float16 (black or NaN images); SD 1.5's does not.
        return self.model.info.family == SDXL and vae.dtype == torch.float16 and bool(vae.config.force_upcast)

    def _log(self, request_id: str | None, level: str, message: str) -> None:
        self.emit({"type": "log", "id": request_id, "level": level, "message": message})


# ---------------------------------------------------------------------- helpers


class _InpaintJob:
    """An inpaint request's crop (the whole frame unless mask_only) at the generation size, and how a
    generated crop goes back into the frame."""

    def __init__(self, canvas, box: tuple[int, int, int, int], width: int, height: int):
        self.canvas = canvas
        self.box = box
        x0, y0, x1, y1 = box
        crop = Image.fromarray(canvas.filled[y0:y1, x0:x1])
        mask = Image.fromarray((canvas.repaint[y0:y1, x0:x1] * 255).astype(np.uint8))
        size = (width, height)
        self.init = crop if crop.size == size else crop.resize(size, Image.Resampling.LANCZOS)
        self.mask = mask if mask.size == size else mask.resize(size, Image.Resampling.NEAREST)

    def compose(self, generated):
        """The frame with ``generated`` (the crop, at the generation size) blended in through the feather."""
        x0, y0, x1, y1 = self.box
        size = (x1 - x0, y1 - y0)
        if generated.size != size:
            generated = generated.resize(size, Image.Resampling.LANCZOS)
        full = self.canvas.rgb.copy()
        full[y0:y1, x0:x1] = np.asarray(generated.convert("RGB"))
        return Image.fromarray(overlay(self.canvas.rgb, full, self.canvas.feather))


def _controlnet_folder_config(folder: str, name: str) -> dict:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict) or config.get("_class_name") != "ControlNetModel":
        raise WorkerError(
            BAD_REQUEST,
            f"control.model {name} is not a ControlNet: expected a diffusers ControlNetModel folder "
            "(config.json and diffusion_pytorch_model.safetensors) or a single .safetensors file.",
        )
    if _controlnet_weights_file(folder) is None:
        raise WorkerError(
            BAD_REQUEST,
            f"control.model {name} has no safetensors weights (diffusion_pytorch_model.safetensors); "
            "Atelier does not load pickle (.bin) weights.",
        )
    return config


def _controlnet_weights_file(folder: str) -> str | None:
    for file in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        if os.path.isfile(os.path.join(folder, file)):
            return os.path.join(folder, file)
    return None


def _controlnet_family_from_config(config: dict) -> str:
    if config.get("addition_embed_type") == "text_time":
        return SDXL
    if config.get("cross_attention_dim") == 1024:
        return "sd2"
    return SD15


def _controlnet_family_from_file(path: str, name: str) -> str:
    from .modelfile import _safetensors_header

    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        header = _safetensors_header(path, name, head, os.path.getsize(path))
    except WorkerError as exc:
        raise WorkerError(BAD_REQUEST, f"control.model: {exc.message}") from None
    if header is None:
        raise WorkerError(
            BAD_REQUEST,
            f"control.model {name} is not a safetensors file. Atelier loads ControlNets from .safetensors files "
            "and diffusers folders only (pickle .pth/.ckpt files can run arbitrary code when loaded).",
        )
    keys = [k for k in header if k != "__metadata__"]
    diffusers_keys = any(k.startswith("controlnet_cond_embedding.") for k in keys)
    ldm_keys = any("input_hint_block." in k for k in keys)
    if not (diffusers_keys or ldm_keys):
        raise WorkerError(
            BAD_REQUEST, f"control.model {name} is not a ControlNet (no ControlNet tensors in the safetensors file)."
        )
    if any(k.startswith("add_embedding.") or "label_emb." in k for k in keys):
        return SDXL
    return SD15


def _write_controlnet_config(unet_config, vae_scale_factor: int, folder: str) -> None:
    """A ControlNetModel config.json for a full-size ControlNet of the resident UNet's architecture
    (what ``ControlNetModel.from_unet`` builds; a single file carries no config of its own)."""
    import inspect

    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    config = {k: v for k, v in dict(unet_config).items() if k in accepted}
    # The conditioning embedding downsamples the edge map to the latent size: one stride-2 step per
    # factor 2 of the VAE (8 -> (16, 32, 96, 256), the standard ControlNet).
    steps = max(1, int(vae_scale_factor).bit_length() - 1)
    config.update(
        {
            "_class_name": "ControlNetModel",
            "in_channels": 4,
            "conditioning_embedding_out_channels": [16, 32, 96, 256][: steps + 1],
        }
    )
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)


def _model_key(info: ModelInfo, config_dir: str | None) -> tuple:
    """Identity of a model on disk: a file changed in place is a different model."""
    st = os.stat(info.path)
    return (info.path, st.st_mtime_ns, st.st_size, config_dir)


def _ms_since(start: float) -> int:
    return int(round((time.perf_counter() - start) * 1000))


def _save_png(image, out_dir: str, index: int) -> str:
    """Write ``<out_dir>/<index>.png`` atomically: a temporary name in the same folder, then os.replace."""
    final = os.path.join(out_dir, f"{index}.png")
    fd, tmp = tempfile.mkstemp(prefix=f".{index}.", suffix=".png.part", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return final


class _safetensors_named:
    """diffusers picks the loader by file extension: give a safetensors file of another name a
    ``.safetensors`` alias (a symlink in a temporary folder) so it is never handed to torch.load."""

    def __init__(self, path: str):
        self.path = path
        self.tmpdir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> str:
        if self.path.endswith(".safetensors"):
            return self.path
        self.tmpdir = tempfile.TemporaryDirectory(prefix="atelier-model-")
        alias = os.path.join(self.tmpdir.name, "model.safetensors")
        try:
            os.symlink(self.path, alias)
        except OSError:  # Windows without the symlink privilege
            try:
                os.link(self.path, alias)
            except OSError:
                raise WorkerError(
                    NOT_A_MODEL,
                    f"{os.path.basename(self.path)} is a safetensors file with another extension. "
                    "Rename it to end in .safetensors.",
                ) from None
        return alias

    def __exit__(self, *exc) -> None:
        if self.tmpdir is not None:
            self.tmpdir.cleanup()
