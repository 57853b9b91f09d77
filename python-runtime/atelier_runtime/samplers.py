"""Samplers by the names artists know (A1111 / ComfyUI), mapped to diffusers schedulers.

A scheduler is built fresh for every image from the model's own scheduler config
(``Cls.from_config(base_config, **flags)``), so a sampler never inherits flags from the previous
request and stateful schedulers start clean.
"""

from __future__ import annotations

import importlib.util
from typing import Any

SAMPLER_NAMES = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC", "LCM")

# name -> (diffusers scheduler class name, flags passed to from_config)
_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    # DPM++ SDE proper needs torchsde (an optional dependency); the single-step DPM++ solver with
    # Karras sigmas is the closest deterministic equivalent without it.
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    # Latents are not images: DDIM's default clipping of the predicted x0 to [-1, 1] (kept by
    # from_config when the model's own config does not mention it, as the embedded model's Euler
    # config does not) wrecks colours. Stable Diffusion's own DDIM configs turn it off.
    "DDIM": ("DDIMScheduler", {"clip_sample": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}


def has_torchsde() -> bool:
    return importlib.util.find_spec("torchsde") is not None


def make_scheduler(name: str, base_config: dict, seed: int):
    """A new scheduler for sampler ``name`` (one of SAMPLER_NAMES), configured from ``base_config``.

    ``seed`` seeds DPMSolverSDEScheduler's Brownian noise, which does not take a torch generator.
    """
    import diffusers

    class_name, flags = _TABLE[name]
    flags = dict(flags)
    if name == "DPM++ SDE Karras" and has_torchsde():
        class_name = "DPMSolverSDEScheduler"
        flags = {"use_karras_sigmas": True, "noise_sampler_seed": seed}
    cls = getattr(diffusers, class_name)
    return cls.from_config(base_config, **flags)


def max_steps(name: str, scheduler) -> int | None:
    """The most steps a sampler supports, where it is limited (LCM samples from its distillation schedule)."""
    if name == "LCM":
        return int(scheduler.config.original_inference_steps)
    return None
