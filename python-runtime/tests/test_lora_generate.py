"""LoRAs in ``generate`` (the ``loras`` field) on the embedded model, through the real worker.

The LoRAs here are random kohya-format files (no training needed): one that fits the embedded
model (its UNet's attention layers, plus its text encoder's), one made for the tiny SDXL model and
one made for the tiny SD 1.5 model (another text width).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RUNTIME_DIR = Path(__file__).resolve().parents[1]
MODELS = RUNTIME_DIR.parent / "resources" / "models"
EMBEDDED = MODELS / "atelier-shapes"
CANNY = MODELS / "atelier-shapes-canny"

pytestmark = pytest.mark.skipif(not (EMBEDDED / "model_index.json").exists(), reason="embedded model not built")

PROMPT = "a red circle on a blue background"


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def write_random_lora(path: Path, text_encoder: bool = True, scale: float = 0.05) -> str:
    """A LoRA for the embedded model with small random weights (kohya keys, rank 4)."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import CLIPTextModel

    from atelier_runtime.training.kohya import kohya_state_dict, write_safetensors_atomic

    unet = UNet2DConditionModel.from_pretrained(EMBEDDED / "unet")
    components = {"unet": unet}
    torch.manual_seed(0)

    def config(targets: list[str]) -> LoraConfig:
        return LoraConfig(r=4, lora_alpha=2, init_lora_weights="gaussian", target_modules=targets)

    unet.add_adapter(config(["to_k", "to_q", "to_v", "to_out.0"]), adapter_name="r")
    if text_encoder:
        te = CLIPTextModel.from_pretrained(EMBEDDED / "text_encoder")
        inject_adapter_in_model(config(["q_proj", "k_proj", "v_proj", "out_proj"]), te, adapter_name="r")
        components["text_encoder"] = te
    with torch.no_grad():
        for module in components.values():
            for name, param in module.named_parameters():
                if ".lora_B." in name:
                    param.normal_(0.0, scale)
    tensors = kohya_state_dict(components, "sd15", "r", 2.0, torch.float32)
    write_safetensors_atomic(str(path), tensors, {"ss_network_module": "networks.lora"})
    return str(path)


@pytest.fixture(scope="module")
def loras(tmp_path_factory) -> dict:
    from atelier_runtime.testing.tiny import write_tiny_lora

    folder = tmp_path_factory.mktemp("loras")
    return {
        "fits": write_random_lora(folder / "fits.safetensors"),
        "unet_only": write_random_lora(folder / "unet-only.safetensors", text_encoder=False, scale=0.1),
        "sdxl": write_tiny_lora(str(folder / "tiny-sdxl-lora.safetensors"), "sdxl"),
        "sd15_other_width": write_tiny_lora(str(folder / "tiny-sd15-lora.safetensors"), "sd15"),
    }


def gen(worker, out_dir, **overrides) -> dict:
    params = {
        "model": str(EMBEDDED),
        "prompt": PROMPT,
        "sampler": "Euler",
        "steps": 8,
        "cfg": 6.0,
        "seed": 11,
        "out_dir": str(out_dir),
    }
    params.update(overrides)
    _, terminal = worker.call("generate", params)
    assert terminal["type"] == "result", terminal
    return terminal["result"]


def gen_pixels(worker, out_dir, **overrides) -> np.ndarray:
    return pixels(gen(worker, out_dir, **overrides)["images"][0]["path"])


def test_weights_zero_one_and_back_to_the_base_pixels(worker, loras, tmp_path):
    base = gen_pixels(worker, tmp_path / "base")
    result = gen(worker, tmp_path / "one", loras=[{"path": loras["fits"], "weight": 1.0}])
    assert result["loras"] == [{"path": loras["fits"], "weight": 1.0}]
    one = pixels(result["images"][0]["path"])
    zero = gen_pixels(worker, tmp_path / "zero", loras=[{"path": loras["fits"], "weight": 0}])
    half = gen_pixels(worker, tmp_path / "half", loras=[{"path": loras["fits"], "weight": 0.5}])
    after = gen(worker, tmp_path / "after")
    assert after["loras"] == []
    assert np.abs(one - base).mean() > 1.0, "a LoRA of weight 1 must change the image"
    assert not np.array_equal(half, one) and not np.array_equal(half, base)
    assert np.array_equal(zero, base), "weight 0 must give exactly the base pixels"
    assert np.array_equal(pixels(after["images"][0]["path"]), base), "no loras after loras: the base pixels"
    # The cached adapter gives the same pixels again (and two LoRAs combine).
    again = gen_pixels(worker, tmp_path / "again", loras=[{"path": loras["fits"], "weight": 1.0}])
    assert np.array_equal(again, one)
    both = gen_pixels(
        worker,
        tmp_path / "both",
        loras=[{"path": loras["fits"], "weight": 1.0}, {"path": loras["unet_only"], "weight": 1.0}],
    )
    assert not np.array_equal(both, one)


def test_loras_apply_in_img2img_inpaint_and_controlnet(worker, loras, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (40, 80, 220)).save(init)
    mask = tmp_path / "mask.png"
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 16, 48, 48))
    m.save(mask)
    edges = tmp_path / "edges.png"
    e = Image.new("L", (64, 64), 0)
    e.paste(255, (20, 20, 44, 22))
    e.save(edges)
    lora = [{"path": loras["fits"], "weight": 1.5}]
    cases = {
        "img2img": {"mode": "img2img", "init_image": str(init), "strength": 0.7},
        "inpaint": {"mode": "inpaint", "init_image": str(init), "mask_image": str(mask)},
    }
    if (CANNY / "config.json").exists():
        cases["controlnet"] = {"control": {"type": "canny", "model": str(CANNY), "image": str(edges)}}
    for name, extra in cases.items():
        without = gen_pixels(worker, tmp_path / f"{name}-0", **extra)
        with_lora = gen_pixels(worker, tmp_path / f"{name}-1", loras=lora, **extra)
        assert not np.array_equal(without, with_lora), name
        back = gen_pixels(worker, tmp_path / f"{name}-2", **extra)
        assert np.array_equal(without, back), name


@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("unet_file", "not a LoRA"),
        ("pickle", "pickle"),
        ("missing", "does not exist"),
        ("sdxl", "SDXL LoRA"),
        ("sd15_other_width", "text width is 32"),
        ("text", "not a safetensors file"),
    ],
)
def test_files_that_are_not_a_fitting_lora(worker, loras, tmp_path, which, words):
    import torch

    if which == "unet_file":
        path = str(EMBEDDED / "unet" / "diffusion_pytorch_model.safetensors")
    elif which == "pickle":
        path = str(tmp_path / "lora.pt")
        torch.save({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, path)
    elif which == "missing":
        path = str(tmp_path / "gone.safetensors")
    elif which == "text":
        path = str(tmp_path / "notes.safetensors")
        Path(path).write_text("this is not a LoRA\n")
    else:
        path = loras[which]
    _, terminal = worker.call(
        "generate",
        {
            "model": str(EMBEDDED),
            "prompt": PROMPT,
            "steps": 2,
            "seed": 1,
            "out_dir": str(tmp_path / "out"),
            "loras": [{"path": path, "weight": 1.0}],
        },
    )
    assert terminal["type"] == "error", terminal
    error = terminal["error"]
    assert error["code"] == "BAD_REQUEST", error
    assert error["message"].startswith("loras[0].path"), error["message"]
    assert words in error["message"], error["message"]
    if which == "sdxl":  # the worker still generates afterwards
        gen(worker, tmp_path / "after")


@pytest.mark.parametrize(
    ("loras_value", "field", "words"),
    [
        ([{"path": "/x.safetensors", "weight": 4.5}], "loras[0].weight", "between -4 and 4"),
        ([{"path": "relative.safetensors"}], "loras[0].path", "absolute path"),
        ([{"weight": 1}], "loras[0].path", "required"),
        ("/x.safetensors", "loras", "list"),
        ([{"path": f"/l{i}.safetensors", "weight": 1} for i in range(17)], "loras", "at most 16"),
        ([{"path": "/a.safetensors"}, 3], "loras[1]", "object"),
    ],
)
def test_bad_loras_params(worker, tmp_path, loras_value, field, words):
    error = worker.error(
        "generate", {"model": str(EMBEDDED), "seed": 1, "out_dir": str(tmp_path), "loras": loras_value}
    )
    assert error["code"] == "BAD_REQUEST"
    assert error["message"].startswith(field) and words in error["message"], error["message"]
