"""Suggested training settings by model family and GPU memory (PROTOCOL.md, "Training presets").

A pure function with no torch import: the app mirrors the same table in TypeScript to fill in the
training form. Every preset uses plain AdamW: bitsandbytes (``adamw8bit``) is optional and not in
the lock, and a LoRA's optimizer state is small next to the frozen model anyway; memory is saved
with gradient checkpointing, batch and rank instead.
"""

from __future__ import annotations

# MiB below which a card counts as the next tier down. Cards report a little less than they are
# sold as (a "12 GB" card reports about 12282 MiB), hence the 512 MiB of slack, as for memory modes.
_SLACK_MB = 512
TIERS = ("cpu", "8gb", "12gb", "24gb")

# (family, tier) -> settings. Resolution is the family's native size.
# fmt: off
PRESETS: dict[tuple[str, str], dict] = {
    ("sd15", "cpu"): {"rank": 8, "batch": 1, "resolution": 512, "gradient_checkpointing": False,
                      "mixed_precision": "no", "optimizer": "adamw"},
    ("sd15", "8gb"): {"rank": 16, "batch": 2, "resolution": 512, "gradient_checkpointing": True,
                      "mixed_precision": "auto", "optimizer": "adamw"},
    ("sd15", "12gb"): {"rank": 16, "batch": 4, "resolution": 512, "gradient_checkpointing": False,
                       "mixed_precision": "auto", "optimizer": "adamw"},
    ("sd15", "24gb"): {"rank": 32, "batch": 8, "resolution": 512, "gradient_checkpointing": False,
                       "mixed_precision": "auto", "optimizer": "adamw"},
    ("sdxl", "cpu"): {"rank": 8, "batch": 1, "resolution": 1024, "gradient_checkpointing": True,
                      "mixed_precision": "no", "optimizer": "adamw"},
    ("sdxl", "8gb"): {"rank": 8, "batch": 1, "resolution": 1024, "gradient_checkpointing": True,
                      "mixed_precision": "auto", "optimizer": "adamw"},
    ("sdxl", "12gb"): {"rank": 16, "batch": 1, "resolution": 1024, "gradient_checkpointing": True,
                       "mixed_precision": "auto", "optimizer": "adamw"},
    ("sdxl", "24gb"): {"rank": 32, "batch": 4, "resolution": 1024, "gradient_checkpointing": True,
                       "mixed_precision": "auto", "optimizer": "adamw"},
}
# fmt: on


def tier(vram_mb: int) -> str:
    """ "cpu" (0 or less: no GPU), "8gb" (below 12 GB, smaller cards too), "12gb" (12 to 24 GB), "24gb"."""
    if vram_mb <= 0:
        return "cpu"
    if vram_mb >= 24 * 1024 - _SLACK_MB:
        return "24gb"
    if vram_mb >= 12 * 1024 - _SLACK_MB:
        return "12gb"
    return "8gb"


def preset(family: str, vram_mb: int) -> dict:
    """Settings for a LoRA of ``family`` ("sd15" / "sdxl"; "-inpaint" suffixes count as the base family)
    on a device with ``vram_mb`` MiB of GPU memory (0: the CPU). Keys: rank, batch, resolution,
    gradient_checkpointing, mixed_precision, optimizer."""
    base = family.removesuffix("-inpaint")
    if base not in ("sd15", "sdxl"):
        raise ValueError(f"unknown family {family!r} (expected sd15 or sdxl)")
    return dict(PRESETS[(base, tier(vram_mb))])
