"""Generation through the real worker on the tiny random model (64x64, few steps)."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from conftest import copy_configs_only

STEPS = 4


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def gen_params(model: str, out_dir, **overrides) -> dict:
    params = {
        "model": model,
        "mode": "txt2img",
        "prompt": "a red rose in a garden",
        "negative_prompt": "blurry",
        "sampler": "Euler",
        "steps": STEPS,
        "cfg": 7.0,
        "seed": 1234,
        "width": 64,
        "height": 64,
        "batch": 1,
        "out_dir": str(out_dir),
    }
    params.update(overrides)
    return params


def generate(worker, model: str, out_dir, **overrides) -> tuple[list[dict], dict]:
    events, terminal = worker.call("generate", gen_params(model, out_dir, **overrides))
    assert terminal["type"] == "result", terminal
    return events, terminal["result"]


def test_load_model_reports_family_and_format_then_is_cached(worker, sd15):
    first = worker.result("load_model", {"path": sd15["diffusers"]})
    second = worker.result("load_model", {"path": sd15["diffusers"]})
    assert first["family"] == "sd15" and first["format"] == "diffusers"
    assert first["path"] == sd15["diffusers"]
    assert isinstance(first["load_ms"], int)
    assert second["cached"] is True and second["load_ms"] == 0
    assert second["memory_mode"] == "normal"


def test_same_seed_same_pixels_different_seed_different_pixels(worker, sd15, tmp_path):
    _, a = generate(worker, sd15["diffusers"], tmp_path / "a", seed=7)
    _, b = generate(worker, sd15["diffusers"], tmp_path / "b", seed=7)
    _, c = generate(worker, sd15["diffusers"], tmp_path / "c", seed=8)

    image = a["images"][0]
    assert image == {"path": str(tmp_path / "a" / "0.png"), "seed": 7, "width": 64, "height": 64}
    assert a["family"] == "sd15" and a["device"] == "cpu" and a["dtype"] == "float32"
    assert a["memory_mode"] == "normal"
    assert set(a["timings"]) == {"load_ms", "inference_ms", "decode_ms", "total_ms"}
    assert all(isinstance(v, int) and v >= 0 for v in a["timings"].values())
    assert a["timings"]["total_ms"] >= a["timings"]["inference_ms"] + a["timings"]["decode_ms"]

    assert np.array_equal(pixels(a["images"][0]["path"]), pixels(b["images"][0]["path"]))
    assert not np.array_equal(pixels(a["images"][0]["path"]), pixels(c["images"][0]["path"]))
    # Written atomically: nothing but the PNG is left in the folder.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["0.png"]


def test_batch_image_i_equals_a_single_run_with_seed_plus_i(worker, sd15, tmp_path):
    _, batch = generate(worker, sd15["diffusers"], tmp_path / "batch", seed=100, batch=3, sampler="Euler a")
    assert [img["seed"] for img in batch["images"]] == [100, 101, 102]
    assert [img["path"] for img in batch["images"]] == [str(tmp_path / "batch" / f"{i}.png") for i in range(3)]
    _, single = generate(worker, sd15["diffusers"], tmp_path / "single", seed=102, sampler="Euler a")
    assert np.array_equal(pixels(batch["images"][2]["path"]), pixels(single["images"][0]["path"]))


def test_a_progress_event_per_step_with_jpeg_previews_every_n_steps(worker, sd15, tmp_path):
    events, result = generate(worker, sd15["diffusers"], tmp_path, steps=6, preview_every=2, preview_size=48, batch=2)
    progress = [e for e in events if e["type"] == "progress"]
    assert [(e["image"], e["step"]) for e in progress] == [(i, s) for i in range(2) for s in range(1, 7)]
    assert all(e["total"] == 6 for e in progress)
    for e in progress:
        if e["step"] % 2:
            assert e["preview"] is None
        else:
            with Image.open(io.BytesIO(base64.b64decode(e["preview"]))) as img:
                assert img.format == "JPEG"
                assert max(img.size) == 48
    assert len(result["images"]) == 2


def test_without_preview_every_no_previews(worker, sd15, tmp_path):
    events, _ = generate(worker, sd15["diffusers"], tmp_path)
    assert len(events) == STEPS  # exactly one event per step, nothing else
    assert all(e["type"] == "progress" and e["preview"] is None for e in events)


@pytest.mark.parametrize(
    "sampler", ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC", "LCM"]
)
def test_every_sampler_runs_and_is_deterministic(worker, sd15, tmp_path, sampler):
    events, a = generate(worker, sd15["diffusers"], tmp_path / "a", sampler=sampler, steps=3)
    _, b = generate(worker, sd15["diffusers"], tmp_path / "b", sampler=sampler, steps=3)
    assert len([e for e in events if e["type"] == "progress"]) == 3
    assert np.array_equal(pixels(a["images"][0]["path"]), pixels(b["images"][0]["path"]))


def test_samplers_give_different_images(worker, sd15, tmp_path):
    _, euler = generate(worker, sd15["diffusers"], tmp_path / "e", sampler="Euler")
    _, ddim = generate(worker, sd15["diffusers"], tmp_path / "d", sampler="DDIM")
    assert not np.array_equal(pixels(euler["images"][0]["path"]), pixels(ddim["images"][0]["path"]))


def test_lcm_step_limit_is_a_bad_request(worker, sd15, tmp_path):
    _, terminal = worker.call("generate", gen_params(sd15["diffusers"], tmp_path, sampler="LCM", steps=60))
    assert terminal["error"]["code"] == "BAD_REQUEST"
    assert "steps" in terminal["error"]["message"] and "LCM" in terminal["error"]["message"]


def test_single_file_gives_the_same_pixels_as_the_diffusers_folder(worker, sd15, tmp_path):
    loaded = worker.result("load_model", {"path": sd15["single_file"], "config": sd15["diffusers"]})
    assert loaded["format"] == "single_file" and loaded["family"] == "sd15" and loaded["cached"] is False
    _, single = generate(worker, sd15["single_file"], tmp_path / "s", config=sd15["diffusers"], seed=5)
    _, folder = generate(worker, sd15["diffusers"], tmp_path / "f", seed=5)
    assert folder["timings"]["load_ms"] > 0  # switching models loads the other one
    assert np.array_equal(pixels(single["images"][0]["path"]), pixels(folder["images"][0]["path"]))


def test_safetensors_under_another_extension_loads(worker, sd15, tmp_path):
    import shutil

    renamed = tmp_path / "tiny.sft"
    shutil.copyfile(sd15["single_file"], renamed)
    loaded = worker.result("load_model", {"path": str(renamed), "config": sd15["diffusers"]})
    assert loaded["format"] == "single_file" and loaded["path"] == str(renamed)


def test_single_file_without_config_uses_the_bundled_configs_or_says_they_are_missing(
    worker, sd15, configs_root, tmp_path
):
    error = worker.error("load_model", {"path": sd15["single_file"]})
    assert error["code"] == "BAD_REQUEST"
    assert "not bundled" in error["message"] and "config" in error["message"]
    assert "Stable Diffusion 1.5" in error["message"]

    # What the app ships: the folder's configs and tokenizer, without weights.
    copy_configs_only(sd15["diffusers"], configs_root / "sd15")
    loaded = worker.result("load_model", {"path": sd15["single_file"]})
    assert loaded["format"] == "single_file"
    _, bundled = generate(worker, sd15["single_file"], tmp_path / "b", seed=9)
    _, folder = generate(worker, sd15["diffusers"], tmp_path / "f", seed=9)
    assert np.array_equal(pixels(bundled["images"][0]["path"]), pixels(folder["images"][0]["path"]))


def test_memory_mode_override_is_honoured(worker, sd15, tmp_path):
    _, low = generate(worker, sd15["diffusers"], tmp_path / "low", memory_mode="low")
    assert low["memory_mode"] == "low"
    _, normal = generate(worker, sd15["diffusers"], tmp_path / "normal")
    assert normal["memory_mode"] == "normal"
    # Attention slicing and VAE tiling change memory use, not the picture.
    diff = np.abs(pixels(low["images"][0]["path"]) - pixels(normal["images"][0]["path"]))
    assert diff.max() <= 1


# --------------------------------------------------------------------------- img2img


@pytest.fixture(scope="module")
def init_images(tmp_path_factory) -> tuple[str, str]:
    """Two different 80x48 pictures (not 64x64: the worker resizes them)."""
    folder = tmp_path_factory.mktemp("init")
    y, x = np.mgrid[0:48, 0:80]
    a = np.stack([x * 3, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    b = np.stack([255 - y * 5, x * 3, np.full_like(x, 128)], axis=-1).clip(0, 255).astype(np.uint8)
    paths = (str(folder / "a.png"), str(folder / "b.jpg"))
    Image.fromarray(a).save(paths[0])
    Image.fromarray(b).save(paths[1], quality=95)
    return paths


def img2img(worker, sd15, out_dir, init, strength, **overrides):
    return generate(
        worker, sd15["diffusers"], out_dir, mode="img2img", init_image=init, strength=strength, **overrides
    )


def test_img2img_strength_0_returns_the_vae_round_trip_of_the_input(worker, sd15, init_images, tmp_path):
    import torch
    from diffusers import AutoencoderKL
    from diffusers.image_processor import VaeImageProcessor

    events, result = img2img(worker, sd15, tmp_path, init_images[0], 0.0, steps=10)
    assert events == []  # no denoising step runs
    out = pixels(result["images"][0]["path"])
    assert out.shape == (64, 64, 3)

    # The same round trip computed here: resize (Lanczos), encode, decode.
    vae = AutoencoderKL.from_pretrained(sd15["diffusers"], subfolder="vae")
    processor = VaeImageProcessor(vae_scale_factor=2)
    with Image.open(init_images[0]) as img:
        resized = img.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    with torch.no_grad():
        latents = vae.encode(processor.preprocess(resized)).latent_dist.mode()
        expected = processor.postprocess(vae.decode(latents).sample, output_type="np")[0]
    expected = np.round(expected * 255).astype(np.int16)
    assert np.abs(out - expected).mean() < 1.0


def test_img2img_strength_1_ignores_the_input(worker, sd15, init_images, tmp_path):
    _, from_a = img2img(worker, sd15, tmp_path / "a", init_images[0], 1.0, seed=3)
    _, from_b = img2img(worker, sd15, tmp_path / "b", init_images[1], 1.0, seed=3)
    _, txt = generate(worker, sd15["diffusers"], tmp_path / "t", seed=3)
    a, b = pixels(from_a["images"][0]["path"]), pixels(from_b["images"][0]["path"])
    assert np.array_equal(a, b)
    assert np.array_equal(a, pixels(txt["images"][0]["path"]))

    # ...whereas a partial strength is influenced by the input.
    _, half_a = img2img(worker, sd15, tmp_path / "ha", init_images[0], 0.5, seed=3)
    _, half_b = img2img(worker, sd15, tmp_path / "hb", init_images[1], 0.5, seed=3)
    assert not np.array_equal(pixels(half_a["images"][0]["path"]), pixels(half_b["images"][0]["path"]))


def test_img2img_runs_int_steps_times_strength_and_is_deterministic(worker, sd15, init_images, tmp_path):
    events, first = img2img(worker, sd15, tmp_path / "1", init_images[0], 0.5, steps=10, seed=11)
    _, second = img2img(worker, sd15, tmp_path / "2", init_images[0], 0.5, steps=10, seed=11)
    assert [e["step"] for e in events] == [1, 2, 3, 4, 5]
    assert all(e["total"] == 5 for e in events)
    assert first["images"][0]["width"] == 64 and first["images"][0]["height"] == 64
    assert np.array_equal(pixels(first["images"][0]["path"]), pixels(second["images"][0]["path"]))


def test_switching_between_txt2img_and_img2img_does_not_reload(worker, sd15, init_images, tmp_path):
    generate(worker, sd15["diffusers"], tmp_path / "t1")
    _, i2i = img2img(worker, sd15, tmp_path / "i", init_images[0], 0.5)
    _, t2i = generate(worker, sd15["diffusers"], tmp_path / "t2")
    assert i2i["timings"]["load_ms"] == 0 and t2i["timings"]["load_ms"] == 0


# --------------------------------------------------------------------------- cancel


def test_cancel_stops_a_running_generation_within_about_a_step(worker, sd15, tmp_path):
    request_id = worker.send("generate", gen_params(sd15["diffusers"], tmp_path / "long", steps=200))
    steps_seen = []
    while len(steps_seen) < 2:
        event = worker.wait_for(lambda e: e.get("id") == request_id)
        assert event["type"] == "progress", event
        steps_seen.append(event["step"])
    sent_at = time.monotonic()
    cancel = worker.result("cancel", {"target": request_id})
    assert cancel == {"cancelled": True}
    after, terminal = worker.collect(request_id, timeout=60)
    elapsed = time.monotonic() - sent_at
    assert terminal["type"] == "error" and terminal["error"]["code"] == "CANCELLED", terminal
    assert len(after) <= 2, f"{len(after)} more steps ran after the cancel"
    assert elapsed < 10, f"cancel took {elapsed:.1f} s"
    assert not (tmp_path / "long" / "0.png").exists()

    # The worker carries on: a cancel of the finished request is false, and the next job runs.
    assert worker.result("cancel", {"target": request_id}) == {"cancelled": False}
    _, result = generate(worker, sd15["diffusers"], tmp_path / "next")
    assert len(result["images"]) == 1


def test_cancel_of_a_queued_request_ends_it_before_it_starts(worker, sd15, tmp_path):
    running = worker.send("generate", gen_params(sd15["diffusers"], tmp_path / "r", steps=200))
    queued = worker.send("generate", gen_params(sd15["diffusers"], tmp_path / "q"))
    worker.wait_for(lambda e: e.get("id") == running and e["type"] == "progress")
    assert worker.result("cancel", {"target": queued}) == {"cancelled": True}
    events, terminal = worker.collect(queued, timeout=10)
    assert events == [] and terminal["error"]["code"] == "CANCELLED"
    # ping is answered at once even while a job runs
    assert worker.result("ping") == {}
    assert worker.result("cancel", {"target": running}) == {"cancelled": True}
    _, terminal = worker.collect(running, timeout=60)
    assert terminal["error"]["code"] == "CANCELLED"
    assert not (tmp_path / "q").exists()


# --------------------------------------------------------------------------- SDXL


def test_sdxl_folder_and_single_file(worker, sdxl, tmp_path):
    assert sdxl["family"] == "sdxl"
    loaded = worker.result("load_model", {"path": sdxl["diffusers"]})
    assert loaded["family"] == "sdxl" and loaded["format"] == "diffusers"
    events, folder = generate(worker, sdxl["diffusers"], tmp_path / "f", seed=21, preview_every=2)
    assert folder["family"] == "sdxl"
    assert len(events) == STEPS and events[1]["preview"] is not None
    _, single = generate(worker, sdxl["single_file"], tmp_path / "s", seed=21, config=sdxl["diffusers"])
    # Same weights; the converted OpenCLIP projection may round differently in the last bit.
    diff = np.abs(pixels(folder["images"][0]["path"]) - pixels(single["images"][0]["path"]))
    assert diff.max() <= 1
    _, i2i = generate(
        worker, sdxl["diffusers"], tmp_path / "i", mode="img2img", init_image=folder["images"][0]["path"], strength=0.5
    )
    assert i2i["timings"]["load_ms"] > 0 and len(i2i["images"]) == 1
