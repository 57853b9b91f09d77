"""Loading pipelines and generating images: everything that touches diffusers.

One model is resident at a time. Its txt2img pipeline is loaded from disk; the img2img pipeline is
built from the same components when first needed, so switching modes never reloads weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import get_module_execution_device
from PIL import Image

from .device import DeviceInfo, choose_memory_mode, free_memory, run_with_oom_retry
from .errors import BAD_REQUEST, NOT_A_MODEL, WorkerError
from .modelfile import (
    FAMILY_LABELS,
    FAMILY_WITH_ARTICLE,
    SD15,
    SDXL,
    ModelInfo,
    inspect_model_path,
    resolve_config_dir,
)
from .params import GenerateParams, load_init_image
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
    txt2img: object
    scheduler_config: dict
    default_mode: str
    img2img: object | None = None
    applied: tuple[int, str] | None = None  # (id of the pipeline, memory mode) last set up
    slicing: bool = False  # attention slicing + VAE tiling on


class Engine:
    def __init__(self, device: DeviceInfo, emit: Callable[[dict], None]):
        self.device = device
        self.emit = emit
        self.model: ResidentModel | None = None

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
        self._log(job.id, "info", f"Loading {info.name} ({FAMILY_LABELS[info.family]}, {info.format})")
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
            "family": m.info.family,
            "format": m.info.format,
            "load_ms": load_ms,
            "cached": cached,
            "memory_mode": m.default_mode,
        }

    def _from_disk(self, info: ModelInfo, config_dir: str | None):
        if info.family == SD15:
            cls = StableDiffusionPipeline
            extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        else:
            cls = StableDiffusionXLPipeline
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
        for pipe in (m.txt2img, m.img2img):
            if pipe is not None:
                pipe.remove_all_hooks()
        pipe = m = None  # drop the last references before freeing
        free_memory()

    def _img2img_pipe(self):
        """The img2img pipeline over the resident txt2img pipeline's components (no reload, no copy)."""
        m = self.model
        if m.img2img is None:
            c = m.txt2img.components
            if m.info.family == SD15:
                m.img2img = StableDiffusionImg2ImgPipeline(
                    vae=c["vae"],
                    text_encoder=c["text_encoder"],
                    tokenizer=c["tokenizer"],
                    unet=c["unet"],
                    scheduler=c["scheduler"],
                    safety_checker=None,
                    feature_extractor=None,
                    image_encoder=None,
                    requires_safety_checker=False,
                )
            else:
                m.img2img = StableDiffusionXLImg2ImgPipeline(
                    vae=c["vae"],
                    text_encoder=c["text_encoder"],
                    text_encoder_2=c["text_encoder_2"],
                    tokenizer=c["tokenizer"],
                    tokenizer_2=c["tokenizer_2"],
                    unet=c["unet"],
                    scheduler=c["scheduler"],
                    requires_aesthetics_score=False,
                    force_zeros_for_empty_prompt=m.txt2img.config.force_zeros_for_empty_prompt,
                    add_watermarker=False,
                )
            m.img2img.set_progress_bar_config(disable=True)
        return m.img2img

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

        # 1. Check what needs no model: the init image decodes, the output folder exists.
        init_image = load_init_image(p.init_image) if p.init_image else None
        try:
            os.makedirs(p.out_dir, exist_ok=True)
        except OSError as exc:
            raise WorkerError(BAD_REQUEST, f"out_dir {p.out_dir} cannot be created: {exc.strerror}.") from None

        # 2. Load the model unless it is resident.
        load_ms = self.load(p.model, p.config, None, job)["load_ms"]
        job.raise_if_cancelled()
        m = self.model

        # 3. Resolve sizes and sampler limits.
        native = m.txt2img.unet.config.sample_size * m.txt2img.vae_scale_factor
        width, height = p.width or native, p.height or native
        limit = max_steps(p.sampler, make_scheduler(p.sampler, m.scheduler_config, p.seed))
        if limit is not None and p.steps > limit:
            raise WorkerError(
                BAD_REQUEST, f"steps must be at most {limit} with the {p.sampler} sampler (got {p.steps})."
            )
        if init_image is not None and init_image.size != (width, height):
            init_image = init_image.resize((width, height), Image.Resampling.LANCZOS)

        # 4. Generate, retrying once in a lower memory mode if the GPU runs out of memory.
        mode = p.memory_mode or m.default_mode
        (images, inference_ms, decode_ms), used = self._with_oom_retry(
            lambda mode_: self._generate_images(p, job, mode_, width, height, init_image), mode, job.id
        )
        if used != mode and p.memory_mode is None:
            m.default_mode = used  # stay in the mode that fits for the next requests
        return {
            "images": images,
            "family": m.info.family,
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

    def _generate_images(self, p: GenerateParams, job: JobHandle, mode: str, width: int, height: int, init_image):
        m = self.model
        # Strength 1 ignores the init image: that is txt2img from pure noise with the same seed.
        use_img2img = init_image is not None and p.strength < 1.0
        pipe = self._img2img_pipe() if use_img2img else m.txt2img
        self._apply_mode(pipe, mode)

        images = []
        inference_ms = decode_ms = 0
        for index in range(p.batch):
            job.raise_if_cancelled()
            seed = p.seed + index
            if use_img2img and int(p.steps * p.strength) == 0:
                # No denoising step would run: return the VAE round trip of the input.
                t = time.perf_counter()
                image = self._vae_round_trip(pipe, init_image)
                decode_ms += _ms_since(t)
            else:
                pipe.scheduler = make_scheduler(p.sampler, m.scheduler_config, seed)
                generator = torch.Generator("cpu").manual_seed(seed)
                t = time.perf_counter()
                latents = self._denoise(
                    pipe, p, job, index, width, height, init_image if use_img2img else None, generator
                )
                inference_ms += _ms_since(t)
                t = time.perf_counter()
                image = self._decode(pipe, latents)
                decode_ms += _ms_since(t)
            job.raise_if_cancelled()
            path = _save_png(image, p.out_dir, index)
            images.append({"path": path, "seed": seed, "width": image.width, "height": image.height})
        return images, inference_ms, decode_ms

    def _denoise(
        self, pipe, p: GenerateParams, job: JobHandle, index: int, width: int, height: int, init_image, generator
    ):
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
        if init_image is not None:
            kwargs.update(image=init_image, strength=p.strength)
        else:
            kwargs.update(width=width, height=height)
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
