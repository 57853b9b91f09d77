"""The compute device, its memory, and the memory mode chosen from it (PROTOCOL.md, "Memory modes")."""

from __future__ import annotations

import os
import platform
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .errors import OUT_OF_MEMORY, WorkerError

MEMORY_MODES = ("normal", "low", "minimal")
LOWER_MODE = {"normal": "low", "low": "minimal"}

# (normal at or above, low at or above) in MiB of VRAM, per family. Cards report a little less than
# the size they are sold as (a "12 GB" RTX 4070 reports 12282 MiB), hence the 512 MiB of slack.
_SLACK_MB = 512
_THRESHOLDS_MB = {
    "sdxl": (12 * 1024 - _SLACK_MB, 6 * 1024 - _SLACK_MB),
    "sd15": (6 * 1024 - _SLACK_MB, 4 * 1024 - _SLACK_MB),
}


@dataclass
class DeviceInfo:
    device: torch.device
    dtype: torch.dtype
    vram_mb: int  # of the device used; 0 on CPU
    devices: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.device.type

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def detect_device() -> DeviceInfo:
    """CUDA device 0 in float16 when there is one, else the CPU in float32."""
    if torch.cuda.is_available():
        devices = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {"kind": "cuda", "index": index, "name": props.name, "vram_mb": int(props.total_memory // 2**20)}
            )
        return DeviceInfo(torch.device("cuda", 0), torch.float16, devices[0]["vram_mb"], devices)
    return DeviceInfo(torch.device("cpu"), torch.float32, 0, [{"kind": "cpu", "name": _cpu_name(), "vram_mb": 0}])


def _cpu_name() -> str:
    name = platform.processor() or platform.machine() or "cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count() or 1} threads)"


def choose_memory_mode(device: DeviceInfo, family: str) -> str:
    """The mode for ``family`` on ``device``: CPU -> normal; on a GPU, by VRAM."""
    if device.kind != "cuda":
        return "normal"
    normal_mb, low_mb = _THRESHOLDS_MB[family]
    if device.vram_mb >= normal_mb:
        return "normal"
    if device.vram_mb >= low_mb:
        return "low"
    return "minimal"


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    # Some allocation failures surface as plain RuntimeErrors (cuBLAS/cuDNN workspaces).
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_oom_retry(
    run: Callable[[str], object],
    mode: str,
    *,
    free: Callable[[], None],
    on_retry: Callable[[str, str], None],
    describe: Callable[[str], str],
):
    """Run ``run(mode)``; on out-of-memory free memory and run once more in the next lower mode.

    Returns ``(result, mode_used)``. A second out-of-memory, or one in ``minimal`` mode, raises
    OUT_OF_MEMORY with ``describe(mode)`` as the message. Other exceptions pass through.
    """
    current = mode
    for attempt in (1, 2):
        try:
            return run(current), current
        except Exception as exc:  # noqa: BLE001 - filtered just below
            if not is_out_of_memory(exc):
                raise
            detail = traceback.format_exc()
        # Outside the except block the traceback (and the tensors its frames hold) is released.
        free()
        lower = LOWER_MODE.get(current)
        if attempt == 2 or lower is None:
            raise WorkerError(OUT_OF_MEMORY, describe(current), detail)
        on_retry(current, lower)
        current = lower
    raise AssertionError("unreachable")
