"""The ``train`` request: a LoRA for the resident model, trained on a folder of captioned images.

Outline (PROTOCOL.md, train):
  1. loading: the base model becomes the resident model (as ``load_model``);
  2. caching: the dataset is scanned (bad files skipped with a reason), images are bucketed,
     VAE-encoded once and the latents kept in ``out_dir/cache/`` (keyed by a hash of the dataset,
     the size and the model), so a resumed job does not encode again; caption embeddings are
     computed once when the text encoder is not trained;
  3. training: peft LoRA layers on the UNet's attention (and the text encoders' with
     ``text_encoder``), base weights frozen, noise and timesteps from the model's own schedule and
     prediction type, MSE loss, gradient clipping at 1.0;
  4. a checkpoint every ``checkpoint_every`` steps, at the end and on cancel (``out_dir/checkpoint/``,
     replaced atomically), samples every ``sample_every`` steps and at the end, the kohya file.

Determinism: a step's randomness (batch, noise, timesteps) comes from generators seeded by
(seed, step) and (seed, epoch), never from a running random state, so a job resumed from a
checkpoint at step K continues exactly as the uninterrupted job would have.

The LoRA layers are removed from the resident model when the request ends (however it ends), so
later ``generate`` requests compute exactly what the base model computes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
import traceback
from collections import deque

import torch
import torch.nn.functional as F

from ..device import free_memory, is_out_of_memory
from ..errors import BAD_REQUEST, OUT_OF_MEMORY, Cancelled, WorkerError
from ..lora import strip_lora_layers
from ..modelfile import FAMILY_LABELS, SDXL
from ..params import DEFAULT_SAMPLER, TrainParams
from ..samplers import make_scheduler
from . import dataset as ds
from .kohya import build_metadata, fsync_dir, kohya_state_dict, write_safetensors_atomic

log = logging.getLogger("atelier.training")

ADAPTER = "atelier_train"
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
WEIGHT_DECAY = 1e-2
GRAD_CLIP = 1.0
LOSS_WINDOW = 10  # loss_avg: the mean of the last 10 steps' losses
STATE_VERSION = 1
ENCODE_CHUNK = 4  # images per VAE encode
STATUS_EVERY_S = 5.0


def _bad(message: str) -> WorkerError:
    return WorkerError(BAD_REQUEST, message)


def seed_for(*parts) -> int:
    """A 63-bit seed from integers/strings: stable across processes and Python versions."""
    digest = hashlib.sha256(json.dumps(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (1-based) of ``total``."""
    if warmup and step <= warmup:
        return step / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup - 1) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)  # linear


class Trainer:
    def __init__(self, engine, p: TrainParams, job):
        self.engine = engine
        self.p = p
        self.job = job
        self.device = engine.device
        self.emit = engine.emit
        self.start_time = time.perf_counter()
        self.checkpoint_dir = os.path.join(p.out_dir, "checkpoint")
        self.samples_dir = os.path.join(p.out_dir, "samples")
        self.cache_dir = os.path.join(p.out_dir, "cache")
        self.loss: list[list] = []  # [[step, loss], ...]
        self.prev_seconds = 0.0
        self.checkpoint_step = 0  # the step of the checkpoint on disk (0: none)
        self.modules_prepared = False
        self.restore_dtype = None

    # ------------------------------------------------------------------ the request

    def run(self) -> dict:
        p = self.p
        self.mixed_precision = self._resolve_mixed_precision()
        self._check_optimizer()
        self._check_paths()

        self._status("loading", f"Loading {os.path.basename(p.model.rstrip(os.sep))}")
        self.engine.load(p.model, p.config, None, self.job)
        self.job.raise_if_cancelled()
        m = self.engine.model
        self.model = m
        self.info = m.info
        if m.info.inpainting:
            raise _bad(
                f"model {m.info.name} is an inpainting model; LoRAs are trained on a regular "
                f"{FAMILY_LABELS[m.info.family]} model (the LoRA then works with its inpainting variants too)."
            )
        self.family = m.info.family
        self.pipe = m.txt2img
        native = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        self.resolution = p.resolution or native

        # 2. The dataset: scan it (bad files are skipped), then settle the schedule and the checkpoint.
        data = ds.scan(p.dataset, self.resolution, p.buckets, p.trigger, self.job.raise_if_cancelled)
        self.data = data
        self._status(
            "caching",
            f"{len(data.items)} usable image{'s' if len(data.items) != 1 else ''}"
            + (f", {len(data.skipped)} skipped" if data.skipped else ""),
            skipped=data.skipped,
            images=len(data.items),
        )
        if not data.items:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in data.skipped[:10])
            more = f" (and {len(data.skipped) - 10} more)" if len(data.skipped) > 10 else ""
            raise _bad(
                f"dataset {p.dataset} has no usable images"
                + (f": {reasons}{more}" if reasons else " (it holds no .png, .jpg, .jpeg, .webp or .bmp files)")
                + "."
            )
        self.batches_per_epoch = self._count_batches()
        self.total = p.steps if p.steps is not None else p.epochs * self.batches_per_epoch
        self.config = self._config()
        self.config_hash = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()
        state = self._resume_state()
        self.resumed_from = state["step"] if state else 0

        # 3. Latents (cached on disk) and, without text-encoder training, caption embeddings.
        try:
            self._prepare_modules()
            self.latents = self._latents()
            self.job.raise_if_cancelled()
            self._setup_training()
            if state:
                self._load_checkpoint(state)
            self._train_loop()
            self._status("saving", f"Saving {os.path.basename(p.output)}")
            metadata = self._save_output()
        except Exception as exc:
            if is_out_of_memory(exc):
                detail = traceback.format_exc()
                raise WorkerError(
                    OUT_OF_MEMORY,
                    "Out of GPU memory while training. Try a smaller batch or resolution, a lower rank, "
                    "gradient_checkpointing, or close other programs that use the GPU.",
                    detail,
                ) from None
            raise
        finally:
            self._teardown()
        history = [list(x) for x in self.loss]
        return {
            "output": p.output,
            "steps": self.total,
            "resumed_from": self.resumed_from,
            "loss": history,
            "final_loss": self._loss_avg(),
            "skipped": data.skipped,
            "images": len(data.items),
            "seconds": round(self._seconds(), 3),
            "metadata": metadata,
        }

    # ------------------------------------------------------------------ checks

    def _resolve_mixed_precision(self) -> str:
        requested = self.p.mixed_precision
        if self.device.kind != "cuda":
            if requested in ("fp16", "bf16"):
                raise _bad(
                    f"mixed_precision {requested} needs a GPU; on the CPU training runs in float32 "
                    '(use "auto" or "no").'
                )
            return "no"
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if bf16 else "fp16"
        if requested == "bf16" and not bf16:
            raise _bad("mixed_precision bf16 is not supported by this GPU; use fp16 or auto.")
        return requested

    def _check_optimizer(self) -> None:
        if self.p.optimizer != "adamw8bit":
            return
        import importlib.util

        if self.device.kind != "cuda":
            raise _bad('optimizer adamw8bit needs a CUDA GPU (bitsandbytes); use "adamw" on this machine.')
        if importlib.util.find_spec("bitsandbytes") is None:
            raise _bad('optimizer adamw8bit needs the bitsandbytes package, which is not installed; use "adamw".')

    def _check_paths(self) -> None:
        p = self.p
        if not os.path.exists(p.dataset):
            raise _bad(f"dataset {p.dataset} does not exist.")
        if not os.path.isdir(p.dataset):
            raise _bad(f"dataset {p.dataset} is not a folder: choose the folder that holds the images.")
        for folder, name in ((p.out_dir, "out_dir"), (os.path.dirname(p.output), "output")):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise _bad(f"{name} folder {folder} cannot be created: {exc.strerror or exc}.") from None
        if os.path.isdir(p.output):
            raise _bad(f"output {p.output} is a folder; give the path of the .safetensors file to write.")

    def _count_batches(self) -> int:
        counts: dict[tuple, int] = {}
        for item in self.data.items:
            counts[item.bucket] = counts.get(item.bucket, 0) + 1
        return sum(math.ceil(n / self.p.batch) for n in counts.values())

    # ------------------------------------------------------------------ config and resume

    def _config(self) -> dict:
        """Everything that decides the trained weights: a checkpoint continues only under the same."""
        p, info = self.p, self.info
        return {
            "version": STATE_VERSION,
            "model": info.path,
            "model_size": _weights_size(info),
            "family": self.family,
            "dataset": self.data.digest,
            "images": len(self.data.items),
            "resolution": self.resolution,
            "buckets": p.buckets,
            "trigger": p.trigger,
            "rank": p.rank,
            "alpha": p.alpha,
            "lr": p.lr,
            "text_encoder": p.text_encoder,
            "text_encoder_lr": p.text_encoder_lr if p.text_encoder else None,
            "steps": self.total,
            "batch": p.batch,
            "seed": p.seed,
            "optimizer": p.optimizer,
            "lr_scheduler": p.lr_scheduler,
            "warmup_steps": p.warmup_steps,
            "mixed_precision": self.mixed_precision,
            "device": self.device.kind,
        }

    def _resume_state(self) -> dict | None:
        """The checkpoint to continue from (None: start fresh); a mismatch is a BAD_REQUEST naming resume."""
        _recover_checkpoint(self.checkpoint_dir)
        if not os.path.isdir(self.checkpoint_dir):
            return None
        if not self.p.resume:
            shutil.rmtree(self.checkpoint_dir)
            fsync_dir(self.p.out_dir)
            return None
        try:
            with open(os.path.join(self.checkpoint_dir, "state.json"), encoding="utf-8") as f:
                state = json.load(f)
            step, config = int(state["step"]), state["config"]
            history = [[int(s), float(v)] for s, v in state["loss"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _bad(
                f"resume: the checkpoint in {self.checkpoint_dir} cannot be read ({exc}); "
                "set resume false to start over."
            ) from None
        if state.get("config_hash") != self.config_hash:
            changes = _describe_changes(config if isinstance(config, dict) else {}, self.config)
            raise _bad(
                f"resume: the checkpoint in {self.checkpoint_dir} was made with other settings: {changes}; "
                "start a new job or set resume false."
            )
        self.loss = history[:step]
        self.prev_seconds = float(state.get("seconds", 0.0))
        self.checkpoint_step = step
        return state

    def _seconds(self) -> float:
        return self.prev_seconds + (time.perf_counter() - self.start_time)

    # ------------------------------------------------------------------ modules

    def _prepare_modules(self) -> None:
        """Take the resident pipeline's modules for training: no offload hooks, on the device."""
        self.engine.clear_loras()  # generate's LoRAs out of the way; the model is the base model
        pipe = self.pipe
        pipe.remove_all_hooks()
        self.model.applied = None  # generate places the modules again afterwards
        self.modules_prepared = True
        self.unet = pipe.unet
        self.text_encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if self.family == SDXL else [])
        self.te_names = ["text_encoder", "text_encoder_2"][: len(self.text_encoders)]
        self.vae = pipe.vae
        for module in (self.unet, self.vae, *self.text_encoders):
            module.requires_grad_(False)
        # Modules go to the device when a phase needs them (VAE: caching; text encoders: caption
        # embeddings; UNet: training), so an 8 GB card never holds the whole model and the optimizer.
        # Float32 training on a GPU ("no" mixed precision): the UNet (and trained text encoders) in
        # float32 for the run; float16 -> float32 -> float16 gives the original weights back exactly.
        if self.device.kind == "cuda" and self.mixed_precision == "no" and self.device.dtype != torch.float32:
            self.restore_dtype = self.device.dtype
            self.unet.to(torch.float32)
            if self.p.text_encoder:
                for te in self.text_encoders:
                    te.to(torch.float32)

    def _teardown(self) -> None:
        """Remove the training LoRA: the resident model is the base model again (or is dropped)."""
        if not self.modules_prepared:
            return
        try:
            for module in (self.unet, *self.text_encoders):
                strip_lora_layers(module)
                module.eval()
            if self.p.gradient_checkpointing:
                self.unet.disable_gradient_checkpointing()
                if self.p.text_encoder:
                    for te in self.text_encoders:
                        te.gradient_checkpointing_disable()
            if self.restore_dtype is not None:
                self.unet.to(self.restore_dtype)
                for te in self.text_encoders:
                    te.to(self.restore_dtype)
            self.engine.clear_loras()
        except Exception:  # noqa: BLE001 - never leave a half-modified model resident
            log.error("could not restore the model after training; unloading it:\n%s", traceback.format_exc())
            self.engine.unload()
        for name in ("optimizer", "scheduler", "params", "latents", "embeds"):
            if hasattr(self, name):
                delattr(self, name)
        free_memory()

    # ------------------------------------------------------------------ latents and embeddings

    def _latents(self) -> list[torch.Tensor]:
        """Each item's latents (float32, CPU), from out_dir/cache/ or encoded now and cached there."""
        key_data = {
            "version": STATE_VERSION,
            "dataset": self.data.digest,
            "resolution": self.resolution,
            "buckets": self.p.buckets,
            "model": self.config["model"],
            "model_size": self.config["model_size"],
            "vae_dtype": str(self.vae.dtype),
        }
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
        path = os.path.join(self.cache_dir, f"latents-{key}.safetensors")
        n = len(self.data.items)
        if os.path.isfile(path):
            from safetensors.torch import load_file

            try:
                tensors = load_file(path)
                latents = [tensors[str(i)] for i in range(n)]
                self._status("caching", f"Using the cached latents of {n} images", skipped=self.data.skipped, images=n)
                return latents
            except Exception:  # noqa: BLE001 - a damaged cache is encoded again
                log.warning("the latent cache %s cannot be read; encoding again", path)
        latents: list[torch.Tensor | None] = [None] * n
        order = sorted(range(n), key=lambda i: (self.data.items[i].bucket, i))
        vae = self.vae
        vae.to(self.device.device)
        upcast = self.engine._needs_vae_upcast(vae)
        if upcast:
            vae.to(dtype=torch.float32)
        last_status = time.monotonic()
        try:
            with torch.no_grad():
                for start in range(0, n, ENCODE_CHUNK):
                    self.job.raise_if_cancelled()
                    chunk = order[start : start + ENCODE_CHUNK]
                    groups: dict[tuple, list[int]] = {}
                    for i in chunk:
                        groups.setdefault(self.data.items[i].bucket, []).append(i)
                    for indices in groups.values():
                        encoded = self._encode([self.data.items[i] for i in indices])
                        for i, lat in zip(indices, encoded, strict=True):
                            latents[i] = lat
                    if time.monotonic() - last_status > STATUS_EVERY_S:
                        last_status = time.monotonic()
                        self._status(
                            "caching",
                            f"Encoding images: {min(n, start + ENCODE_CHUNK)}/{n}",
                            skipped=self.data.skipped,
                            images=n,
                        )
        finally:
            if upcast:
                vae.to(dtype=torch.float16)
        os.makedirs(self.cache_dir, exist_ok=True)
        for old in os.listdir(self.cache_dir):
            if old.startswith("latents-") and old.endswith(".safetensors") and old != os.path.basename(path):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.cache_dir, old))
        write_safetensors_atomic(path, {str(i): t.contiguous() for i, t in enumerate(latents)}, {"key": key})
        return latents

    def _encode(self, items: list) -> list[torch.Tensor]:
        import numpy as np

        vae = self.vae
        pixels = np.stack([ds.load_pixels(item) for item in items]).astype(np.float32) / 127.5 - 1.0
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(self.device.device, vae.dtype)
        dist = vae.encode(x).latent_dist
        lat = dist.mode().float()
        cfg = vae.config
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(lat)
            std = torch.tensor(std).view(1, -1, 1, 1).to(lat)
            lat = (lat - mean) * cfg.scaling_factor / std
        else:
            lat = lat * cfg.scaling_factor
        return [t.cpu() for t in lat]

    def _encode_prompts(self, captions: list[str]):
        """(prompt_embeds, pooled or None) as the pipeline conditions on them (grads flow when training
        the text encoder)."""
        dev = self.device.device
        if self.family == SDXL:
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=captions, device=dev, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            return embeds, pooled
        embeds, _ = self.pipe.encode_prompt(captions, dev, 1, False)
        return embeds, None

    def _cache_embeddings(self) -> None:
        """Caption embeddings, computed once (CPU), when the text encoder is not trained."""
        self.embeds = {}
        for te in self.text_encoders:
            te.to(self.device.device)
        captions = sorted({item.caption for item in self.data.items})
        with torch.no_grad():
            for start in range(0, len(captions), 16):
                self.job.raise_if_cancelled()
                chunk = captions[start : start + 16]
                embeds, pooled = self._encode_prompts(chunk)
                for i, caption in enumerate(chunk):
                    self.embeds[caption] = (
                        embeds[i].float().cpu(),
                        pooled[i].float().cpu() if pooled is not None else None,
                    )

    # ------------------------------------------------------------------ training set-up

    def _setup_training(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        p = self.p
        if not p.text_encoder:
            self._cache_embeddings()
            if self.device.kind == "cuda":
                # Not needed until the next sample: keep the GPU for the UNet.
                for module in (*self.text_encoders, self.vae):
                    module.to("cpu")
                free_memory()
        self.unet.to(self.device.device)
        if p.text_encoder:
            for te in self.text_encoders:
                te.to(self.device.device)
        torch.manual_seed(seed_for(p.seed, "init"))  # the LoRA's random (gaussian) initialisation

        def lora_config(targets: list[str]) -> LoraConfig:
            return LoraConfig(r=p.rank, lora_alpha=p.alpha, init_lora_weights="gaussian", target_modules=targets)

        self.unet.add_adapter(lora_config(UNET_TARGETS), adapter_name=ADAPTER)
        named = [("unet", self.unet)]
        if p.text_encoder:
            for name, te in zip(self.te_names, self.text_encoders, strict=True):
                inject_adapter_in_model(lora_config(TEXT_TARGETS), te, adapter_name=ADAPTER)
                named.append((name, te))
        # The trainable parameters, by stable names ("unet.<param>", "text_encoder.<param>"), in float32.
        self.params: dict[str, torch.nn.Parameter] = {}
        groups = []
        for component, module in named:
            group = []
            for name, param in module.named_parameters():
                if f".{ADAPTER}." in name and "lora_" in name:
                    param.data = param.data.float()
                    param.requires_grad_(True)
                    self.params[f"{component}.{name}"] = param
                    group.append(param)
                else:
                    param.requires_grad_(False)
            if group:
                groups.append({"params": group, "lr": p.lr if component == "unet" else p.text_encoder_lr})
        if p.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if p.text_encoder:
                for te in self.text_encoders:
                    te.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if p.optimizer == "adamw8bit":
            import bitsandbytes as bnb

            self.optimizer = bnb.optim.AdamW8bit(groups, weight_decay=WEIGHT_DECAY)
        else:
            self.optimizer = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
        total, warmup, kind = self.total, p.warmup_steps, p.lr_scheduler
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda done: lr_factor(done + 1, total, warmup, kind)
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.mixed_precision == "fp16" else None
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(self.model.scheduler_config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise _bad(
                f"model {self.info.name} predicts {self.prediction_type!r}; Atelier trains LoRAs for "
                "epsilon and v_prediction models."
            )

    def _load_checkpoint(self, state: dict) -> None:
        from safetensors.torch import load_file

        folder = self.checkpoint_dir
        try:
            weights = load_file(os.path.join(folder, "lora.safetensors"))
            missing = [k for k in self.params if k not in weights]
            if missing or len(weights) != len(self.params):
                raise ValueError(f"{len(missing)} LoRA tensors missing")
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(weights[name])
            opt_state = torch.load(os.path.join(folder, "optimizer.pt"), map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(opt_state["optimizer"])
            self.scheduler.load_state_dict(opt_state["scheduler"])
            if self.scaler is not None and opt_state.get("scaler"):
                self.scaler.load_state_dict(opt_state["scaler"])
        except WorkerError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as a damaged checkpoint
            raise _bad(
                f"resume: the checkpoint in {folder} is damaged ({exc}); set resume false to start over."
            ) from None
        self._log("info", f"Resuming from step {state['step']} of {self.total}")

    # ------------------------------------------------------------------ the loop

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """Epoch ``epoch`` (0-based): the batches (item indices, one bucket each) in training order."""
        rng = random.Random(seed_for(self.p.seed, "epoch", epoch))
        by_bucket: dict[tuple, list[int]] = {}
        for i, item in enumerate(self.data.items):
            by_bucket.setdefault(item.bucket, []).append(i)
        batches = []
        for bucket in sorted(by_bucket):
            indices = by_bucket[bucket]
            rng.shuffle(indices)
            batches += [indices[j : j + self.p.batch] for j in range(0, len(indices), self.p.batch)]
        rng.shuffle(batches)
        return batches

    def _train_loop(self) -> None:
        p = self.p
        start = self.resumed_from
        if start < self.total:
            self._status(
                "training",
                f"Training {self.total} steps" + (f", resuming at step {start + 1}" if start else ""),
            )
        self.unet.train()
        if p.text_encoder:
            for te in self.text_encoders:
                te.train()
        durations: deque = deque(maxlen=LOSS_WINDOW)
        epoch_cache: tuple[int, list] | None = None
        ran = False
        for step in range(start + 1, self.total + 1):
            if self.job.cancel_requested():
                self._stop(step - 1)
            t0 = time.perf_counter()
            epoch, index = divmod(step - 1, self.batches_per_epoch)
            if epoch_cache is None or epoch_cache[0] != epoch:
                epoch_cache = (epoch, self._epoch_batches(epoch))
            batch = epoch_cache[1][index]
            lr_now = self.optimizer.param_groups[0]["lr"]
            loss = self._step(step, batch)
            if not math.isfinite(loss):
                hint = " or use mixed_precision bf16 / no" if self.mixed_precision == "fp16" else ""
                raise _bad(
                    f"lr {p.lr:g} is too high for this dataset: the loss became {loss} at step {step}. "
                    f"Lower lr{hint} and start again with resume false."
                )
            ran = True
            self.loss.append([step, loss])
            durations.append(time.perf_counter() - t0)
            per_step = sum(durations) / len(durations)
            self.emit(
                {
                    "type": "train_progress",
                    "id": self.job.id,
                    "step": step,
                    "total": self.total,
                    "epoch": epoch + 1,
                    "loss": loss,
                    "loss_avg": self._loss_avg(),
                    "lr": lr_now,
                    "it_s": round(1.0 / per_step, 4) if per_step > 0 else 0.0,
                    "eta_s": round(per_step * (self.total - step), 1),
                }
            )
            last = step == self.total
            if last or (p.checkpoint_every and step % p.checkpoint_every == 0):
                self._write_checkpoint(step)
            if p.sample_every and (last or step % p.sample_every == 0):
                self._samples(step)
                if self.job.cancel_requested():
                    self._stop(step)
        if not ran and start == self.total:
            self._log("info", f"The checkpoint is complete (step {start}); writing the LoRA")
        self.unet.eval()

    def _step(self, step: int, batch: list[int]) -> float:
        p = self.p
        dev = self.device.device
        items = [self.data.items[i] for i in batch]
        latents = torch.stack([self.latents[i] for i in batch]).to(dev)
        gen = torch.Generator("cpu").manual_seed(seed_for(p.seed, "step", step))
        noise = torch.randn(latents.shape, generator=gen, dtype=torch.float32).to(dev)
        # Uniform over the model's training timesteps, stratified within the batch (each of the b
        # images gets its own 1/b of the range, in random order): the same distribution as plain
        # uniform draws, with far less step-to-step noise in the loss and the gradient.
        b, count = len(batch), self.noise_scheduler.config.num_train_timesteps
        strata = torch.randperm(b, generator=gen).float()
        offsets = torch.rand(b, generator=gen)
        timesteps = ((strata + offsets) / b * count).long().clamp(0, count - 1).to(dev)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with self._autocast():
            if p.text_encoder:
                embeds, pooled = self._encode_prompts([item.caption for item in items])
            else:
                embeds = torch.stack([self.embeds[item.caption][0] for item in items]).to(dev)
                pooled = (
                    torch.stack([self.embeds[item.caption][1] for item in items]).to(dev)
                    if self.family == SDXL
                    else None
                )
            added = None
            if self.family == SDXL:
                time_ids = torch.tensor(
                    [[it.size[1], it.size[0], it.crop[0], it.crop[1], it.bucket[1], it.bucket[0]] for it in items],
                    dtype=torch.float32,
                    device=dev,
                )
                added = {"text_embeds": pooled.float(), "time_ids": time_ids}
            unet_dtype = self.unet.dtype if self.mixed_precision == "no" else torch.float32
            pred = self.unet(
                noisy.to(unet_dtype),
                timesteps,
                encoder_hidden_states=embeds.to(unet_dtype),
                added_cond_kwargs=added,
                return_dict=False,
            )[0]
            loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        params = list(self.params.values())
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach().item())

    def _autocast(self):
        if self.mixed_precision in ("fp16", "bf16"):
            dtype = torch.float16 if self.mixed_precision == "fp16" else torch.bfloat16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def _loss_avg(self) -> float | None:
        recent = [v for _, v in self.loss[-LOSS_WINDOW:]]
        return sum(recent) / len(recent) if recent else None

    def _stop(self, last_step: int) -> None:
        """Cancelled: keep the last completed step in the checkpoint (pause = cancel), then end."""
        if last_step > self.checkpoint_step:
            self._write_checkpoint(last_step)
        elif last_step > 0 and last_step == self.checkpoint_step:
            self._checkpoint_event(last_step)  # already on disk
        self.job.raise_if_cancelled()
        raise Cancelled()

    # ------------------------------------------------------------------ checkpoints

    def _write_checkpoint(self, step: int) -> None:
        """out_dir/checkpoint/ replaced atomically: written as checkpoint.tmp/, then renamed over."""
        from safetensors.torch import save_file

        final, tmp, old = self.checkpoint_dir, self.checkpoint_dir + ".tmp", self.checkpoint_dir + ".old"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        weights = {name: param.detach().float().cpu().contiguous() for name, param in self.params.items()}
        save_file(weights, os.path.join(tmp, "lora.safetensors"), metadata={"format": "pt"})
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            },
            os.path.join(tmp, "optimizer.pt"),
        )
        state = {
            "version": STATE_VERSION,
            "step": step,
            "total": self.total,
            "loss": self.loss[:step],
            "config_hash": self.config_hash,
            "config": self.config,
            "seconds": round(self._seconds(), 3),
        }
        with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as f:
            json.dump(state, f)
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        shutil.rmtree(old, ignore_errors=True)
        if os.path.isdir(final):
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(self.p.out_dir)
        shutil.rmtree(old, ignore_errors=True)
        self.checkpoint_step = step
        self._checkpoint_event(step)

    def _checkpoint_event(self, step: int) -> None:
        self.emit({"type": "train_checkpoint", "id": self.job.id, "step": step, "path": self.checkpoint_dir})

    # ------------------------------------------------------------------ samples and output

    def _samples(self, step: int) -> None:
        """Sample images with the LoRA as it is now (the resident pipeline, the training resolution)."""
        p = self.p
        prompts = p.sample_prompts or [self.data.items[0].caption]
        self._status("sampling", f"Sample images at step {step}")
        pipe = self.pipe
        dev = self.device.device
        moved = []
        if self.device.kind == "cuda":
            for module in (*self.text_encoders, self.vae):
                if next(module.parameters()).device != dev:
                    module.to(dev)
                    moved.append(module)
        self.unet.eval()
        for te in self.text_encoders:
            te.eval()
        os.makedirs(self.samples_dir, exist_ok=True)
        job = self.job

        def on_step_end(pipe_, i, t, tensors):
            if job.cancel_requested():
                pipe_._interrupt = True
            return {}

        images = []
        try:
            for index, prompt in enumerate(prompts):
                if job.cancel_requested():
                    return
                pipe.scheduler = make_scheduler(DEFAULT_SAMPLER, self.model.scheduler_config, p.sample_seed)
                generator = torch.Generator("cpu").manual_seed(p.sample_seed)
                autocast = (
                    torch.autocast("cuda", dtype=torch.float16)
                    if self.device.kind == "cuda"
                    else contextlib.nullcontext()
                )
                with torch.no_grad(), autocast:
                    latents = pipe(
                        prompt=prompt,
                        negative_prompt=None,
                        num_inference_steps=p.sample_steps,
                        guidance_scale=p.sample_cfg,
                        generator=generator,
                        width=self.resolution,
                        height=self.resolution,
                        output_type="latent",
                        callback_on_step_end=on_step_end,
                    ).images
                if job.cancel_requested():
                    return
                with torch.no_grad():
                    image = self.engine._decode(pipe, latents)
                path = os.path.join(self.samples_dir, f"step-{step:06d}-{index}.png")
                _save_png(image, path)
                images.append({"path": path, "prompt": prompt, "seed": p.sample_seed})
        finally:
            for module in moved:
                module.to("cpu")
            self.unet.train()
            if p.text_encoder:
                for te in self.text_encoders:
                    te.train()
        self.emit({"type": "train_sample", "id": job.id, "step": step, "images": images})

    def _save_output(self) -> dict:
        p = self.p
        components = {"unet": self.unet}
        if p.text_encoder:
            components.update(zip(self.te_names, self.text_encoders, strict=True))
        dtype = torch.float16 if self.device.kind == "cuda" else torch.float32
        tensors = kohya_state_dict(components, self.family, ADAPTER, p.alpha, dtype)
        metadata = build_metadata(
            family=self.family,
            rank=p.rank,
            alpha=p.alpha,
            resolution=self.resolution,
            images=len(self.data.items),
            steps=self.total,
            lr=p.lr,
            seed=p.seed,
            output=p.output,
            dataset_folder=p.dataset,
            tag_frequency=ds.tag_frequency(self.data.items),
            trigger=p.trigger,
            base_model=self.info.name,
            extra=p.metadata,
        )
        write_safetensors_atomic(p.output, tensors, metadata)
        return metadata

    # ------------------------------------------------------------------ events

    def _status(self, phase: str, message: str, **extra) -> None:
        self.emit({"type": "train_status", "id": self.job.id, "phase": phase, "message": message, **extra})

    def _log(self, level: str, message: str) -> None:
        self.emit({"type": "log", "id": self.job.id, "level": level, "message": message})


# ---------------------------------------------------------------------- helpers


def _recover_checkpoint(final: str) -> None:
    """Finish or undo a checkpoint replacement that a crash interrupted (see _write_checkpoint)."""
    tmp, old = final + ".tmp", final + ".old"
    if not os.path.isdir(final) and os.path.isdir(old):
        os.replace(old, final)  # crashed between the two renames: the previous checkpoint is whole
    shutil.rmtree(tmp, ignore_errors=True)  # never renamed: incomplete
    shutil.rmtree(old, ignore_errors=True)


def _weights_size(info) -> int:
    """Bytes of the model's weights (a changed model invalidates checkpoints and cached latents)."""
    if info.format == "single_file":
        return os.path.getsize(info.path)
    total = 0
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        folder = os.path.join(info.path, component)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.endswith(".safetensors"):
                    total += os.path.getsize(os.path.join(folder, name))
    return total


_FIELD_NAMES = {
    "model": "model",
    "model_size": "model (its weights changed)",
    "family": "model family",
    "dataset": "dataset (its images or captions changed)",
    "images": "number of usable images",
    "steps": "steps (total)",
    "device": "device",
}


def _describe_changes(old: dict, new: dict) -> str:
    parts = []
    for key, value in new.items():
        if key == "version" or old.get(key) == value:
            continue
        label = _FIELD_NAMES.get(key, key)
        if key in ("dataset", "model_size"):
            parts.append(label)
        else:
            parts.append(f"{label} {_show(old.get(key))} (now {_show(value)})")
    return ", ".join(parts) or "an older format"


def _show(value) -> str:
    if value is None:
        return "unset"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _save_png(image, path: str) -> None:
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".sample.", suffix=".png.part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
