"""Bad parameters are refused with BAD_REQUEST and a message that names the field."""

from __future__ import annotations

import pytest

from atelier_runtime.errors import WorkerError
from atelier_runtime.params import GenerateParams, LoadParams


def base(tmp_path, model="/models/any") -> dict:
    return {"model": model, "prompt": "a cat", "seed": 1, "width": 64, "height": 64, "out_dir": str(tmp_path / "out")}


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ({"width": 100}, "width", "multiple of 8"),
        ({"height": 8}, "height", "between 64 and 4096"),
        ({"width": 4104}, "width", "between 64 and 4096"),
        ({"steps": 0}, "steps", "between 1 and 200"),
        ({"steps": 201}, "steps", "between 1 and 200"),
        ({"steps": 2.5}, "steps", "whole number"),
        ({"steps": "20"}, "steps", "whole number"),
        ({"cfg": 30.5}, "cfg", "between 0 and 30"),
        ({"cfg": -1}, "cfg", "between 0 and 30"),
        ({"batch": 17}, "batch", "between 1 and 16"),
        ({"batch": True}, "batch", "whole number"),
        ({"strength": 1.5}, "strength", "between 0 and 1"),
        ({"seed": -1}, "seed", "between 0"),
        ({"seed": None}, "seed", "required"),
        ({"mode": "outpaint"}, "mode", "txt2img, img2img, inpaint"),
        ({"mode": "inpaint"}, "init_image", "required for inpaint"),
        ({"memory_mode": "tiny"}, "memory_mode", "normal, low, minimal"),
        ({"model": "relative/model.safetensors"}, "model", "absolute path"),
        ({"out_dir": None}, "out_dir", "required"),
        ({"prompt": 42}, "prompt", "string"),
        ({"mode": "img2img"}, "init_image", "required for img2img"),
        ({"preview_size": 4}, "preview_size", "between 16 and 1024"),
    ],
)
def test_bad_generate_params(worker, tmp_path, override, field, words):
    params = {**base(tmp_path), **override}
    error = worker.error("generate", params)
    assert error["code"] == "BAD_REQUEST"
    assert field in error["message"] and words in error["message"], error["message"]


def test_unknown_sampler_lists_the_valid_ones(worker, tmp_path):
    error = worker.error("generate", {**base(tmp_path), "sampler": "Heun++"})
    assert error["code"] == "BAD_REQUEST"
    assert "Heun++" in error["message"]
    for name in ("Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "UniPC", "LCM"):
        assert name in error["message"]


def test_init_image_missing_or_corrupt(worker, sd15, tmp_path):
    params = {**base(tmp_path, sd15["diffusers"]), "mode": "img2img", "strength": 0.5}
    error = worker.error("generate", {**params, "init_image": str(tmp_path / "none.png")})
    assert error["code"] == "BAD_REQUEST" and "init_image" in error["message"] and "does not exist" in error["message"]

    truncated = tmp_path / "broken.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    error = worker.error("generate", {**params, "init_image": str(truncated)})
    assert error["code"] == "BAD_REQUEST" and "init_image" in error["message"] and "broken.png" in error["message"]

    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    error = worker.error("generate", {**params, "init_image": str(not_image)})
    assert error["code"] == "BAD_REQUEST" and "not an image" in error["message"]


def test_load_model_params(worker):
    error = worker.error("load_model", {})
    assert error["code"] == "BAD_REQUEST" and "path" in error["message"]
    error = worker.error("load_model", {"path": "/x", "memory_mode": "max"})
    assert error["code"] == "BAD_REQUEST" and "memory_mode" in error["message"]


# --------------------------------------------------------------------------- in-process


def test_defaults_and_whole_floats(tmp_path):
    p = GenerateParams.parse({**base(tmp_path), "steps": 20.0, "width": None, "height": None})
    assert p.steps == 20 and p.width is None and p.height is None
    assert p.mode == "txt2img" and p.sampler == "DPM++ 2M Karras" and p.batch == 1
    assert p.preview_every == 0 and p.init_image is None and p.negative_prompt == ""


def test_init_image_is_ignored_for_txt2img(tmp_path):
    p = GenerateParams.parse({**base(tmp_path), "init_image": "/nowhere.png", "strength": 0.3})
    assert p.init_image is None


def test_seed_plus_batch_must_stay_exact_in_javascript(tmp_path):
    with pytest.raises(WorkerError) as exc:
        GenerateParams.parse({**base(tmp_path), "seed": 2**53 - 2, "batch": 4})
    assert "seed" in exc.value.message


def test_load_params_config_must_be_absolute():
    with pytest.raises(WorkerError) as exc:
        LoadParams.parse({"path": "/m.safetensors", "config": "configs/sd15"})
    assert "config" in exc.value.message
