"""Inpainting and outpainting through the real worker on the tiny models (64x64, few steps)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from atelier_runtime.imaging import crop_box, feather_mask, overlay, prefill, round_size

STEPS = 3


def rgb(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB", img.mode  # no alpha comes back
        return np.asarray(img)


def scene(w: int = 64, h: int = 64, seed: int = 0) -> np.ndarray:
    """A frame with structure and noise, so that any change shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) * 127 // max(1, w + h)], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def square_mask(w: int, h: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def save(tmp_path, name: str, pixels: np.ndarray, mode: str | None = None) -> str:
    path = tmp_path / name
    Image.fromarray(pixels, mode).save(path) if mode else Image.fromarray(pixels).save(path)
    return str(path)


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` (Chebyshev) of the mask."""
    import cv2

    k = 2 * radius + 1
    return cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0


def inpaint_params(model: str, out_dir, init: str, mask: str, **overrides) -> dict:
    params = {
        "model": model,
        "mode": "inpaint",
        "prompt": "a red rose",
        "sampler": "Euler",
        "steps": STEPS,
        "seed": 11,
        "init_image": init,
        "mask_image": mask,
        "out_dir": str(out_dir),
    }
    params.update(overrides)
    return params


def inpaint(worker, model, out_dir, init, mask, **overrides) -> dict:
    _, terminal = worker.call("generate", inpaint_params(model, out_dir, init, mask, **overrides))
    assert terminal["type"] == "result", terminal
    return terminal["result"]


# --------------------------------------------------------------------------- pixels kept exactly


def test_inpaint_keeps_pixels_outside_the_feather_byte_identical(worker, sd15, tmp_path):
    frame = scene()
    mask = square_mask(64, 64, 20, 16, 40, 36)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    result = inpaint(worker, sd15["diffusers"], tmp_path / "out", init, mask_path, mask_blur=4)

    image = result["images"][0]
    assert (image["width"], image["height"], image["seed"]) == (64, 64, 11)
    assert result["family"] == "sd15"
    out = rgb(image["path"])
    outside = ~near(mask > 0, 4)
    assert np.array_equal(out[outside], frame[outside])  # byte-identical beyond the feather
    inside = mask > 0
    assert np.abs(out[inside].astype(int) - frame[inside]).mean() > 5  # the masked area was repainted


def test_mask_blur_zero_keeps_everything_outside_the_mask(worker, sd15, tmp_path):
    frame = scene(seed=1)
    mask = square_mask(64, 64, 8, 8, 24, 56)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    out = rgb(inpaint(worker, sd15["diffusers"], tmp_path / "out", init, mask_path, mask_blur=0)["images"][0]["path"])
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    assert not np.array_equal(out[mask > 0], frame[mask > 0])


def test_mask_only_generates_a_padded_crop_and_pastes_it_back(worker, sd15, tmp_path):
    frame = scene(160, 96, seed=2)
    mask = square_mask(160, 96, 110, 40, 126, 56)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    result = inpaint(
        worker, sd15["diffusers"], tmp_path / "out", init, mask_path, mask_only=True, mask_padding=8, mask_blur=2
    )
    image = result["images"][0]
    assert (image["width"], image["height"]) == (160, 96)  # the whole frame comes back
    out = rgb(image["path"])
    # The padded box: the feathered mask (2 px) grown by 8 px.
    box = np.zeros((96, 160), bool)
    box[40 - 10 : 56 + 10, 110 - 10 : 126 + 10] = True
    assert np.array_equal(out[~box], frame[~box])
    outside_feather = ~near(mask > 0, 2)
    assert np.array_equal(out[outside_feather], frame[outside_feather])
    assert not np.array_equal(out[mask > 0], frame[mask > 0])


def test_a_frame_of_any_size_comes_back_at_its_size(worker, sd15, tmp_path):
    frame = scene(100, 70, seed=12)  # not multiples of 8: generated at 96x64, resized back
    mask = square_mask(100, 70, 60, 10, 90, 50)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    image = inpaint(worker, sd15["diffusers"], tmp_path / "out", init, mask_path, mask_blur=3)["images"][0]
    assert (image["width"], image["height"]) == (100, 70)
    out = rgb(image["path"])
    outside = ~near(mask > 0, 3)
    assert np.array_equal(out[outside], frame[outside])
    assert not np.array_equal(out[mask > 0], frame[mask > 0])


def test_mask_only_at_a_requested_size_differs_from_the_native_size(worker, sd15, tmp_path):
    frame = scene(seed=3)
    mask = square_mask(64, 64, 24, 24, 40, 40)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    a = inpaint(worker, sd15["diffusers"], tmp_path / "a", init, mask_path, mask_only=True, mask_padding=4)
    b = inpaint(
        worker, sd15["diffusers"], tmp_path / "b", init, mask_path, mask_only=True, mask_padding=4, width=128,
        height=128,
    )
    pa, pb = rgb(a["images"][0]["path"]), rgb(b["images"][0]["path"])
    assert pa.shape == pb.shape == (64, 64, 3)
    outside = ~near(mask > 0, 4)
    assert np.array_equal(pa[outside], frame[outside]) and np.array_equal(pb[outside], frame[outside])
    assert not np.array_equal(pa, pb)


def test_inpaint_is_reproducible_and_batches_by_seed(worker, sd15, tmp_path):
    frame = scene(seed=4)
    mask = square_mask(64, 64, 16, 16, 48, 48)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    batch = inpaint(worker, sd15["diffusers"], tmp_path / "batch", init, mask_path, batch=2, seed=20)
    single = inpaint(worker, sd15["diffusers"], tmp_path / "single", init, mask_path, seed=21)
    assert [i["seed"] for i in batch["images"]] == [20, 21]
    assert np.array_equal(rgb(batch["images"][1]["path"]), rgb(single["images"][0]["path"]))
    assert not np.array_equal(rgb(batch["images"][0]["path"]), rgb(batch["images"][1]["path"]))


# --------------------------------------------------------------------------- outpainting


@pytest.mark.parametrize("fill", ["edge", "blur", "telea", "noise"])
def test_outpaint_fills_transparent_pixels_and_keeps_the_rest(worker, sd15, tmp_path, fill):
    frame = scene(seed=5)
    rgba = np.dstack([frame, np.full((64, 64), 255, np.uint8)])
    rgba[:, 32:, 3] = 0  # the right half is empty canvas
    rgba[:, 32:, :3] = 0
    init = save(tmp_path, "init.png", rgba, "RGBA")
    mask = save(tmp_path, "mask.png", np.zeros((64, 64), np.uint8))  # nothing masked: the alpha decides
    result = inpaint(worker, sd15["diffusers"], tmp_path / "out", init, mask, fill=fill, mask_blur=4)
    out = rgb(result["images"][0]["path"])
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[:, : 32 - 4], frame[:, : 32 - 4])  # the kept half, beyond the feather
    # The empty half was generated, not left black.
    assert out[:, 32:].mean() > 10


def test_outpaint_blends_only_on_the_kept_side(worker, sd15, tmp_path):
    frame = scene(seed=6)
    rgba = np.dstack([frame, np.full((64, 64), 255, np.uint8)])
    rgba[:32, :, 3] = 0  # the top half is empty
    init = save(tmp_path, "init.png", rgba, "RGBA")
    mask = save(tmp_path, "mask.png", np.zeros((64, 64), np.uint8))
    a = rgb(inpaint(worker, sd15["diffusers"], tmp_path / "a", init, mask, mask_blur=6)["images"][0]["path"])
    b = rgb(inpaint(worker, sd15["diffusers"], tmp_path / "b", init, mask, mask_blur=0)["images"][0]["path"])
    # The empty side is generated: the (hidden) colours under the transparent pixels do not come back.
    assert not np.array_equal(a[:32], frame[:32]) and not np.array_equal(b[:32], frame[:32])
    assert np.array_equal(b[32:], frame[32:])  # no feather: the kept half is untouched
    assert np.array_equal(a[38:], frame[38:])  # feathered 6 px into the kept half only
    assert not np.array_equal(a[32:38], frame[32:38])


# --------------------------------------------------------------------------- dedicated inpainting models


def test_dedicated_inpainting_model(worker, sd15_inpaint, tmp_path):
    loaded = worker.result("load_model", {"path": sd15_inpaint["diffusers"]})
    assert loaded["family"] == "sd15-inpaint"
    frame = scene(seed=7)
    mask = square_mask(64, 64, 16, 24, 48, 40)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    result = inpaint(worker, sd15_inpaint["diffusers"], tmp_path / "out", init, mask_path, mask_blur=3)
    assert result["family"] == "sd15-inpaint"
    out = rgb(result["images"][0]["path"])
    outside = ~near(mask > 0, 3)
    assert np.array_equal(out[outside], frame[outside])
    assert not np.array_equal(out[mask > 0], frame[mask > 0])

    # The single file loads with the folder as config and gives the same pixels.
    single = inpaint(
        worker,
        sd15_inpaint["single_file"],
        tmp_path / "single",
        init,
        mask_path,
        mask_blur=3,
        config=sd15_inpaint["diffusers"],
    )
    assert single["family"] == "sd15-inpaint"
    assert np.array_equal(rgb(single["images"][0]["path"]), out)

    # txt2img and img2img are refused with a clear message.
    for mode, extra in (("txt2img", {}), ("img2img", {"init_image": init})):
        error = worker.error(
            "generate",
            {"model": sd15_inpaint["diffusers"], "mode": mode, "seed": 1, "steps": 2, "out_dir": str(tmp_path)}
            | extra,
        )
        assert error["code"] == "BAD_REQUEST" and "inpainting model" in error["message"], error


def test_sdxl_inpaint_with_a_regular_checkpoint(worker, sdxl, tmp_path):
    frame = scene(seed=8)
    mask = square_mask(64, 64, 32, 0, 64, 64)
    init, mask_path = save(tmp_path, "init.png", frame), save(tmp_path, "mask.png", mask)
    result = inpaint(worker, sdxl["diffusers"], tmp_path / "out", init, mask_path, mask_blur=4)
    assert result["family"] == "sdxl"
    out = rgb(result["images"][0]["path"])
    assert np.array_equal(out[:, : 32 - 4], frame[:, : 32 - 4])
    assert not np.array_equal(out[:, 32:], frame[:, 32:])


def test_inpainting_single_file_with_a_regular_config_is_a_bad_request(worker, sd15, sd15_inpaint, tmp_path):
    error = worker.error("load_model", {"path": sd15_inpaint["single_file"], "config": sd15["diffusers"]})
    assert error["code"] == "BAD_REQUEST" and "config" in error["message"] and "inpainting" in error["message"]


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "override, field, words",
    [
        ({"mask_image": None}, "mask_image", "required for inpaint"),
        ({"init_image": None}, "init_image", "required for inpaint"),
        ({"mask_blur": -1}, "mask_blur", "between 0 and 256"),
        ({"mask_padding": 1.5}, "mask_padding", "whole number"),
        ({"mask_only": "yes"}, "mask_only", "true or false"),
        ({"fill": "smear"}, "fill", "edge, blur, telea, noise"),
        ({"mask_image": "relative.png"}, "mask_image", "absolute path"),
        ({"strength": 2}, "strength", "between 0 and 1"),
    ],
)
def test_bad_inpaint_params(worker, sd15, tmp_path, override, field, words):
    init = save(tmp_path, "init.png", scene())
    mask = save(tmp_path, "mask.png", square_mask(64, 64, 0, 0, 8, 8))
    params = {**inpaint_params(sd15["diffusers"], tmp_path / "out", init, mask), **override}
    params = {k: v for k, v in params.items() if v is not None}
    error = worker.error("generate", params)
    assert error["code"] == "BAD_REQUEST"
    assert field in error["message"] and words in error["message"], error["message"]


def test_bad_mask_images(worker, sd15, tmp_path):
    init = save(tmp_path, "init.png", scene())
    cases = {
        "corrupt.png": (b"\x89PNG\r\n\x1a\nnot really", "could not be decoded"),
        "small.png": (None, "size of init_image"),
        "black.png": (np.zeros((64, 64), np.uint8), "nothing to repaint"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        if content is None:
            Image.fromarray(np.full((32, 32), 255, np.uint8)).save(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            Image.fromarray(content).save(path)
        error = worker.error("generate", inpaint_params(sd15["diffusers"], tmp_path / "out", init, str(path)))
        assert error["code"] == "BAD_REQUEST" and "mask_image" in error["message"], error
        assert words in error["message"], error["message"]


# --------------------------------------------------------------------------- units


def test_feather_mask_is_255_on_the_mask_and_0_beyond_the_radius():
    hard = np.zeros((40, 40), bool)
    hard[10:20, 12:30] = True
    m = feather_mask(hard, 5)
    assert (m[hard] == 255).all()
    assert (m[~near(hard, 5)] == 0).all()
    ring = near(hard, 5) & ~hard
    assert (m[ring] > 0).any() and (m[ring] < 255).any()
    assert np.array_equal(feather_mask(hard, 0) > 0, hard)


def test_overlay_is_exact_at_0_and_255():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    m = np.zeros((8, 8), np.uint8)
    m[:, 4:] = 255
    m[:, 3] = 128
    out = overlay(a, b, m)
    assert np.array_equal(out[:, :3], a[:, :3]) and np.array_equal(out[:, 4:], b[:, 4:])
    assert np.abs(out[:, 3].astype(int) - (a[:, 3].astype(int) + b[:, 3]) / 2).max() <= 1


def test_edge_fill_extends_the_nearest_colours():
    rgb_ = np.zeros((10, 10, 3), np.uint8)
    rgb_[:, :5] = [200, 10, 10]
    rgb_[:5, :5] = [10, 200, 10]
    empty = np.zeros((10, 10), bool)
    empty[:, 5:] = True
    out = prefill(rgb_, empty, "edge", 0)
    assert (out[:5, 5:] == [10, 200, 10]).all() and (out[6:, 5:] == [200, 10, 10]).all()
    assert np.array_equal(out[:, :5], rgb_[:, :5])
    for fill in ("blur", "telea", "noise"):
        filled = prefill(rgb_, empty, fill, 0)
        assert np.array_equal(filled[:, :5], rgb_[:, :5])


def test_crop_box_and_round_size():
    repaint = np.zeros((100, 200), bool)
    repaint[40:50, 100:120] = True
    assert crop_box(repaint, 5, None) == (95, 35, 125, 55)
    x0, y0, x1, y1 = crop_box(repaint, 5, 1.0)
    assert (x1 - x0) == (y1 - y0) == 30 and 0 <= y0 and y1 <= 100
    assert round_size(300, 100, 512) == (512, 168)
    assert round_size(10, 10, 64) == (64, 64)
