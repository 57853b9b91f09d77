"""In-process unit tests: memory modes and the OOM retry, previews, the LDM converter."""

from __future__ import annotations

import pytest
import torch

from atelier_runtime.device import DeviceInfo, choose_memory_mode, is_out_of_memory, run_with_oom_retry
from atelier_runtime.errors import OUT_OF_MEMORY, WorkerError
from atelier_runtime.previews import latents_to_rgb


def gpu(vram_mb: int) -> DeviceInfo:
    return DeviceInfo(torch.device("cuda", 0), torch.float16, vram_mb, [])


@pytest.mark.parametrize(
    ("vram_mb", "sd15", "sdxl"),
    [
        (24576, "normal", "normal"),
        (12282, "normal", "normal"),  # a "12 GB" card
        (8192, "normal", "low"),
        (6144, "normal", "low"),
        (4096, "low", "minimal"),
        (2048, "minimal", "minimal"),
    ],
)
def test_memory_mode_from_vram(vram_mb, sd15, sdxl):
    assert choose_memory_mode(gpu(vram_mb), "sd15") == sd15
    assert choose_memory_mode(gpu(vram_mb), "sdxl") == sdxl


def test_cpu_is_always_normal():
    cpu = DeviceInfo(torch.device("cpu"), torch.float32, 0, [])
    assert choose_memory_mode(cpu, "sdxl") == "normal"


def _oom():
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_oom_frees_and_retries_once_in_the_next_lower_mode():
    calls, freed, retries = [], [], []

    def run(mode):
        calls.append(mode)
        if mode == "normal":
            raise _oom()
        return "image"

    result = run_with_oom_retry(
        run, "normal", free=lambda: freed.append(True), on_retry=lambda a, b: retries.append((a, b)), describe=str
    )
    assert result == ("image", "low")
    assert calls == ["normal", "low"] and freed == [True] and retries == [("normal", "low")]


def test_second_oom_is_out_of_memory():
    def run(mode):
        raise _oom()

    with pytest.raises(WorkerError) as exc:
        run_with_oom_retry(
            run, "low", free=lambda: None, on_retry=lambda a, b: None, describe=lambda m: f"full in {m}"
        )
    assert exc.value.code == OUT_OF_MEMORY
    assert exc.value.message == "full in minimal"
    assert "OutOfMemoryError" in exc.value.detail


def test_oom_in_minimal_mode_does_not_retry():
    calls = []

    def run(mode):
        calls.append(mode)
        raise _oom()

    with pytest.raises(WorkerError):
        run_with_oom_retry(run, "minimal", free=lambda: None, on_retry=lambda a, b: None, describe=str)
    assert calls == ["minimal"]


def test_other_errors_pass_through_without_retry():
    calls = []

    def run(mode):
        calls.append(mode)
        raise ValueError("bad shape")

    with pytest.raises(ValueError):
        run_with_oom_retry(run, "normal", free=lambda: None, on_retry=lambda a, b: None, describe=str)
    assert calls == ["normal"]


def test_is_out_of_memory():
    assert is_out_of_memory(_oom())
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_latent_preview_colours():
    latents = torch.zeros(1, 4, 8, 6)
    rgb = latents_to_rgb(latents, "sd15")
    assert rgb.shape == (8, 6, 3) and rgb.dtype.name == "uint8"
    assert (rgb == 128).all()  # zero latents are mid-grey
    latents[:, 0] = 3.0  # a strong first channel is bright in SD 1.5's map
    assert (latents_to_rgb(latents, "sd15")[..., 0] == 255).all()
    assert latents_to_rgb(torch.zeros(4, 8, 8), "sdxl")[0, 0, 0] > 128  # SDXL's bias tints red


def test_ldm_converter_round_trips_through_diffusers_single_file_loader(sdxl):
    """The converter's output, read back by diffusers' own single-file code, is the same weights."""
    from diffusers import StableDiffusionXLPipeline

    folder = StableDiffusionXLPipeline.from_pretrained(sdxl["diffusers"])
    single = StableDiffusionXLPipeline.from_single_file(
        sdxl["single_file"], config=sdxl["diffusers"], local_files_only=True
    )
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(folder, name).state_dict(), getattr(single, name).state_dict()
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key}"


def test_ldm_converter_refuses_an_unmapped_key():
    from atelier_runtime.testing.ldm_convert import vae_to_ldm

    with pytest.raises(ValueError, match="no LDM name"):
        vae_to_ldm({"encoder.mystery.weight": torch.zeros(1)}, {"down_block_types": ["A"]})
