"""Files that are not models get the right error code and a message a person can act on."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file

from atelier_runtime.errors import MODEL_NOT_FOUND, NOT_A_MODEL, WorkerError
from atelier_runtime.modelfile import inspect_model_path


def load_error(worker, path: str) -> dict:
    error = worker.error("load_model", {"path": path})
    assert error["detail"] is None or isinstance(error["detail"], str)
    return error


# --------------------------------------------------------------------------- through the worker


def test_missing_path_is_model_not_found(worker, tmp_path):
    error = load_error(worker, str(tmp_path / "nowhere.safetensors"))
    assert error["code"] == "MODEL_NOT_FOUND"
    assert "nowhere.safetensors" in error["message"]


def test_generate_with_a_missing_model_is_model_not_found(worker, tmp_path):
    error = worker.error(
        "generate", {"model": str(tmp_path / "gone"), "prompt": "x", "seed": 1, "out_dir": str(tmp_path / "o")}
    )
    assert error["code"] == "MODEL_NOT_FOUND"


def test_zip_pickle_checkpoint_is_refused_with_an_explanation(worker, tmp_path):
    import torch

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)  # the modern zip-based pickle format
    error = load_error(worker, str(path))
    assert error["code"] == "NOT_A_MODEL"
    assert error["message"] == (
        "model.ckpt is a pickle checkpoint (.ckpt), which can run arbitrary code when loaded; Atelier loads only "
        ".safetensors files and diffusers folders. Convert it to safetensors first."
    )


def test_legacy_pickle_is_refused(worker, tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=2))
    error = load_error(worker, str(path))
    assert error["code"] == "NOT_A_MODEL"
    assert "pickle" in error["message"] and ".pt" in error["message"]


def test_pickle_renamed_safetensors_is_still_refused(worker, tmp_path):
    path = tmp_path / "sneaky.safetensors"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}))
    error = load_error(worker, str(path))
    assert error["code"] == "NOT_A_MODEL" and "pickle" in error["message"]


def test_text_file_renamed_safetensors(worker, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_text("These are my notes about the model I wanted to download.\n" * 20)
    error = load_error(worker, str(path))
    assert error["code"] == "NOT_A_MODEL"
    assert "text file" in error["message"]


def test_git_lfs_pointer_and_html_page_are_named(worker, tmp_path):
    lfs = tmp_path / "lfs.safetensors"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    assert "Git LFS pointer" in load_error(worker, str(lfs))["message"]
    html = tmp_path / "page.safetensors"
    html.write_text("<!DOCTYPE html><html><body>Sign in to download</body></html>")
    assert "web page" in load_error(worker, str(html))["message"]


def test_truncated_safetensors(worker, sd15, tmp_path):
    path = tmp_path / "half.safetensors"
    with open(sd15["single_file"], "rb") as src:
        data = src.read()
    path.write_bytes(data[: len(data) // 2])
    error = load_error(worker, str(path))
    assert error["code"] == "NOT_A_MODEL"
    assert "truncated" in error["message"] and "download" in error["message"].lower()


def test_unknown_architecture_and_lora(worker, tmp_path):
    unknown = tmp_path / "mystery.safetensors"
    save_file(
        {"encoder.layers.0.weight": np.zeros((2, 2), np.float32), "head.bias": np.zeros(2, np.float32)}, str(unknown)
    )
    error = load_error(worker, str(unknown))
    assert error["code"] == "NOT_A_MODEL" and "unknown architecture" in error["message"]

    lora = tmp_path / "style.safetensors"
    save_file(
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((4, 8), np.float32)}, str(lora)
    )
    error = load_error(worker, str(lora))
    assert error["code"] == "NOT_A_MODEL" and "LoRA" in error["message"]


def test_folder_that_is_not_a_diffusers_model(worker, tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "something.safetensors").write_bytes(b"")
    error = load_error(worker, str(folder))
    assert error["code"] == "NOT_A_MODEL"
    assert "model_index.json" in error["message"] and "something.safetensors" in error["message"]


def test_diffusers_folder_with_pickle_weights(worker, sd15, tmp_path):
    import shutil

    folder = tmp_path / "old-style"
    shutil.copytree(sd15["diffusers"], folder)
    os.remove(folder / "unet" / "diffusion_pytorch_model.safetensors")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"PK\x03\x04")
    error = load_error(worker, str(folder))
    assert error["code"] == "NOT_A_MODEL"
    assert "unet" in error["message"] and "pickle" in error["message"]


def test_unsupported_pipeline_class(worker, tmp_path):
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    error = load_error(worker, str(folder))
    assert error["code"] == "NOT_A_MODEL" and "FluxPipeline" in error["message"]


def test_after_errors_the_worker_still_generates(worker, sd15, tmp_path):
    result = worker.result("load_model", {"path": sd15["diffusers"]})
    assert result["family"] == "sd15"


# --------------------------------------------------------------------------- in-process checks


def _header_only_safetensors(path, tensors: dict[str, tuple[list[int], int]]):
    """A safetensors file whose header describes ``tensors`` ((shape, nbytes)) with zero-filled data."""
    header, offset = {}, 0
    for name, (shape, nbytes) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


@pytest.mark.parametrize(
    ("keys", "family_or_message"),
    [
        (
            ["model.diffusion_model.out.0.weight", "cond_stage_model.transformer.text_model.x", "first_stage_model.y"],
            "sd15",
        ),
        (
            [
                "model.diffusion_model.out.0.weight",
                "conditioner.embedders.0.transformer.a",
                "conditioner.embedders.1.model.b",
            ],
            "sdxl",
        ),
        (
            ["model.diffusion_model.out.0.weight", "cond_stage_model.model.token_embedding.weight"],
            "Stable Diffusion 2.x",
        ),
        (["model.diffusion_model.out.0.weight", "conditioner.embedders.0.model.text_projection"], "refiner"),
        (["model.diffusion_model.out.0.weight"], "no text encoder"),
        (["encoder.conv_in.weight", "decoder.conv_out.weight"], "VAE"),
        (["double_blocks.0.img_attn.proj.weight"], "Flux"),
    ],
)
def test_family_detection_from_keys(tmp_path, keys, family_or_message):
    path = tmp_path / "m.safetensors"
    _header_only_safetensors(path, {k: ([1], 4) for k in keys})
    if family_or_message in ("sd15", "sdxl"):
        info = inspect_model_path(str(path))
        assert (info.family, info.format) == (family_or_message, "single_file")
    else:
        with pytest.raises(WorkerError) as exc:
            inspect_model_path(str(path))
        assert exc.value.code == NOT_A_MODEL and family_or_message in exc.value.message


def test_inpainting_checkpoint_is_recognised(tmp_path):
    path = tmp_path / "inpaint.safetensors"
    _header_only_safetensors(
        path,
        {
            "model.diffusion_model.input_blocks.0.0.weight": ([320, 9, 3, 3], 4),
            "cond_stage_model.transformer.text_model.x": ([1], 4),
        },
    )
    info = inspect_model_path(str(path))
    assert (info.family, info.inpainting, info.reported_family) == ("sd15", True, "sd15-inpaint")


def test_other_unet_input_widths_are_named(tmp_path):
    path = tmp_path / "pix2pix.safetensors"
    _header_only_safetensors(
        path,
        {
            "model.diffusion_model.input_blocks.0.0.weight": ([320, 8, 3, 3], 4),
            "cond_stage_model.transformer.text_model.x": ([1], 4),
        },
    )
    with pytest.raises(WorkerError) as exc:
        inspect_model_path(str(path))
    assert exc.value.code == NOT_A_MODEL and "8 input channels" in exc.value.message


def test_truncated_inside_the_header_and_empty_file(tmp_path):
    path = tmp_path / "cut.safetensors"
    raw = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw[:10])
    with pytest.raises(WorkerError) as exc:
        inspect_model_path(str(path))
    assert "truncated" in exc.value.message

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(WorkerError) as exc:
        inspect_model_path(str(empty))
    assert "empty" in exc.value.message


def test_missing_is_model_not_found(tmp_path):
    with pytest.raises(WorkerError) as exc:
        inspect_model_path(str(tmp_path / "x"))
    assert exc.value.code == MODEL_NOT_FOUND
