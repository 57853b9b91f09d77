"""ControlNet canny through the real worker on the tiny SD 1.5 model and tiny ControlNet (64x64)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from test_inpaint import near, rgb, save, scene, square_mask

STEPS = 3


def edge_map(tmp_path, name: str, kind: str) -> str:
    m = np.zeros((64, 64), np.uint8)
    if kind == "square":
        m[16:48, 16] = m[16:48, 47] = m[16, 16:48] = m[47, 16:48] = 255
    elif kind == "cross":
        m[32, :] = m[:, 32] = 255
    return save(tmp_path, name, m)


def gen_params(model: str, out_dir, control: dict | None = None, **overrides) -> dict:
    params = {
        "model": model,
        "prompt": "a cat",
        "sampler": "Euler",
        "steps": STEPS,
        "seed": 5,
        "width": 64,
        "height": 64,
        "out_dir": str(out_dir),
    }
    if control is not None:
        params["control"] = control
    params.update(overrides)
    return params


def generate(worker, *args, **kwargs) -> dict:
    _, terminal = worker.call("generate", gen_params(*args, **kwargs))
    assert terminal["type"] == "result", terminal
    return terminal["result"]


def control(cn: str, image: str, **extra) -> dict:
    return {"type": "canny", "model": cn, "image": image, **extra}


def test_controlnet_txt2img_follows_the_edge_map(worker, sd15, sd15_controlnet, tmp_path):
    square, cross = edge_map(tmp_path, "square.png", "square"), edge_map(tmp_path, "cross.png", "cross")
    cn = sd15_controlnet["controlnet"]
    plain = generate(worker, sd15["diffusers"], tmp_path / "plain")
    a = generate(worker, sd15["diffusers"], tmp_path / "a", control(cn, square))
    b = generate(worker, sd15["diffusers"], tmp_path / "b", control(cn, cross))
    again = generate(worker, sd15["diffusers"], tmp_path / "again", control(cn, square))
    zero = generate(worker, sd15["diffusers"], tmp_path / "zero", control(cn, square, scale=0.0))

    pa, pb, pp = (rgb(r["images"][0]["path"]) for r in (a, b, plain))
    assert a["family"] == "sd15" and pa.shape == (64, 64, 3)
    assert not np.array_equal(pa, pb)  # different edge maps, different images
    assert not np.array_equal(pa, pp)  # the ControlNet acts
    assert np.array_equal(pa, rgb(again["images"][0]["path"]))  # cached ControlNet, same pixels
    assert np.array_equal(rgb(zero["images"][0]["path"]), pp)  # scale 0 is no control at all


def test_controlnet_guidance_window_and_edge_map_resizing(worker, sd15, sd15_controlnet, tmp_path):
    cn = sd15_controlnet["controlnet"]
    big = np.zeros((200, 300), np.uint8)
    big[50:150, 100] = 255  # any size: resized to the generation size
    big_path = save(tmp_path, "big.png", big)
    full = generate(worker, sd15["diffusers"], tmp_path / "full", control(cn, big_path))
    late = generate(worker, sd15["diffusers"], tmp_path / "late", control(cn, big_path, start=0.5, end=1.0))
    assert not np.array_equal(rgb(full["images"][0]["path"]), rgb(late["images"][0]["path"]))


def test_controlnet_single_file_matches_the_folder(worker, sd15, sd15_controlnet, tmp_path):
    square = edge_map(tmp_path, "square.png", "square")
    a = generate(worker, sd15["diffusers"], tmp_path / "a", control(sd15_controlnet["controlnet"], square))
    b = generate(worker, sd15["diffusers"], tmp_path / "b", control(sd15_controlnet["controlnet_single_file"], square))
    assert np.array_equal(rgb(a["images"][0]["path"]), rgb(b["images"][0]["path"]))


def test_controlnet_img2img_and_inpaint(worker, sd15, sd15_controlnet, tmp_path):
    cn = sd15_controlnet["controlnet"]
    square, cross = edge_map(tmp_path, "square.png", "square"), edge_map(tmp_path, "cross.png", "cross")
    frame = scene(seed=9)
    init = save(tmp_path, "init.png", frame)
    i2i = {"mode": "img2img", "init_image": init, "strength": 0.7}
    a = generate(worker, sd15["diffusers"], tmp_path / "i2i-a", control(cn, square), **i2i)
    b = generate(worker, sd15["diffusers"], tmp_path / "i2i-b", control(cn, cross), **i2i)
    assert not np.array_equal(rgb(a["images"][0]["path"]), rgb(b["images"][0]["path"]))

    mask = square_mask(64, 64, 16, 16, 48, 48)
    inp = {"mode": "inpaint", "init_image": init, "mask_image": save(tmp_path, "mask.png", mask), "mask_blur": 2}
    inp.pop("width", None)
    c = generate(worker, sd15["diffusers"], tmp_path / "inp-a", control(cn, square), **inp)
    d = generate(worker, sd15["diffusers"], tmp_path / "inp-b", control(cn, cross), **inp)
    pc, pd = rgb(c["images"][0]["path"]), rgb(d["images"][0]["path"])
    outside = ~near(mask > 0, 2)
    assert np.array_equal(pc[outside], frame[outside]) and np.array_equal(pd[outside], frame[outside])
    assert not np.array_equal(pc, pd)


def test_controlnet_with_a_dedicated_inpainting_model(worker, sd15_inpaint, tmp_path):
    square = edge_map(tmp_path, "square.png", "square")
    frame = scene(seed=10)
    mask = square_mask(64, 64, 8, 8, 40, 40)
    params = {
        "mode": "inpaint",
        "init_image": save(tmp_path, "init.png", frame),
        "mask_image": save(tmp_path, "mask.png", mask),
    }
    result = generate(
        worker, sd15_inpaint["diffusers"], tmp_path / "out", control(sd15_inpaint["controlnet"], square), **params
    )
    assert result["family"] == "sd15-inpaint"
    out = rgb(result["images"][0]["path"])
    outside = ~near(mask > 0, 4)
    assert np.array_equal(out[outside], frame[outside])


def test_controlnet_of_another_family_is_a_bad_request(worker, sd15, sdxl, sd15_controlnet, sdxl_controlnet, tmp_path):
    square = edge_map(tmp_path, "square.png", "square")
    # SDXL with its own ControlNet runs (single file too), and refuses an SD 1.5 one.
    for cn in (sdxl_controlnet["controlnet"], sdxl_controlnet["controlnet_single_file"]):
        result = generate(worker, sdxl["diffusers"], tmp_path / "xl", control(cn, square, scale=0.5))
        assert result["family"] == "sdxl"
    sd15_cn = control(sd15_controlnet["controlnet"], square)
    error = worker.error("generate", gen_params(sdxl["diffusers"], tmp_path, sd15_cn))
    assert error["code"] == "BAD_REQUEST" and "Stable Diffusion 1.5 ControlNet" in error["message"], error["message"]
    for cn in (sdxl_controlnet["controlnet"], sdxl_controlnet["controlnet_single_file"]):
        error = worker.error("generate", gen_params(sd15["diffusers"], tmp_path, control(cn, square)))
        assert error["code"] == "BAD_REQUEST", error
        assert "control.model" in error["message"] and "SDXL" in error["message"], error["message"]


@pytest.mark.parametrize(
    "change, field, words",
    [
        ("not-an-object", "control", "JSON object"),
        ({"type": "depth"}, "control.type", "canny"),
        ({"type": None}, "control.type", "required"),
        ({"model": None}, "control.model", "required"),
        ({"model": "relative/cn"}, "control.model", "absolute path"),
        ({"image": None}, "control.image", "required"),
        ({"scale": 3}, "control.scale", "between 0 and 2"),
        ({"scale": "1"}, "control.scale", "number"),
        ({"start": -0.1}, "control.start", "between 0 and 1"),
        ({"end": 1.5}, "control.end", "between 0 and 1"),
        ({"start": 0.6, "end": 0.4}, "control.start", "less than control.end"),
        ({"model": "/nonexistent/controlnet"}, "control.model", "does not exist"),
        ({"image": "/nonexistent/edges.png"}, "control.image", "does not exist"),
    ],
)
def test_bad_control_fields(worker, sd15, sd15_controlnet, tmp_path, change, field, words):
    square = edge_map(tmp_path, "square.png", "square")
    if isinstance(change, dict):
        ctl = {k: v for k, v in {**control(sd15_controlnet["controlnet"], square), **change}.items() if v is not None}
    else:
        ctl = change
    error = worker.error("generate", gen_params(sd15["diffusers"], tmp_path, ctl))
    assert error["code"] == "BAD_REQUEST"
    assert field in error["message"] and words in error["message"], error["message"]


def test_a_model_or_corrupt_edge_map_as_control_is_a_bad_request(worker, sd15, sd15_controlnet, tmp_path):
    square = edge_map(tmp_path, "square.png", "square")
    error = worker.error("generate", gen_params(sd15["diffusers"], tmp_path, control(sd15["diffusers"], square)))
    assert error["code"] == "BAD_REQUEST" and "control.model" in error["message"]
    assert "not a ControlNet" in error["message"], error["message"]
    error = worker.error("generate", gen_params(sd15["diffusers"], tmp_path, control(sd15["single_file"], square)))
    assert error["code"] == "BAD_REQUEST" and "not a ControlNet" in error["message"], error["message"]
    pickle = tmp_path / "control_canny.pth"
    pickle.write_bytes(b"PK\x03\x04 a zip pickle")
    error = worker.error("generate", gen_params(sd15["diffusers"], tmp_path, control(str(pickle), square)))
    assert error["code"] == "BAD_REQUEST" and "not a safetensors file" in error["message"], error["message"]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    error = worker.error(
        "generate", gen_params(sd15["diffusers"], tmp_path, control(sd15_controlnet["controlnet"], str(corrupt)))
    )
    assert error["code"] == "BAD_REQUEST" and "control.image" in error["message"]
    Image.new("L", (8, 8)).save(corrupt)  # leave a valid file behind
