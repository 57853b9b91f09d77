"""The component configs Atelier ships for single-file checkpoints (resources/model-configs).

A real SD 1.5 / SDXL checkpoint holds only weights; its architecture, scheduler and tokenizer come from
these folders, with no network. These tests prove the shipped folders are complete and right:
the configs are what ``bundled_configs`` writes, the tokenizer gives CLIP's token ids, every family's
components have the published parameter counts, and a full-size SD 1.5 checkpoint loads through the
worker with the network cut, every weight landing where the checkpoint put it.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from atelier_runtime.bundled_configs import FAMILIES, family_configs
from atelier_runtime.modelfile import REPO_ROOT

from conftest import spawn_worker

CONFIGS = REPO_ROOT / "resources" / "model-configs"

# Published parameter counts of the reference models' components.
PARAMS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    # Four more input channels (masked image latents + mask) on the first convolution: 4 x 320 x 3 x 3.
    "sd15-inpaint": {"unet": 859_520_964 + 5 * 320 * 9, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    "sdxl-inpaint": {
        "unet": 2_567_463_684 + 5 * 320 * 9,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    },
}


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_configs_are_what_the_generator_writes(family):
    for rel, expected in family_configs(family).items():
        path = CONFIGS / family / rel
        assert path.is_file(), f"{path} is missing"
        assert json.loads(path.read_text()) == json.loads(json.dumps(expected)), f"{path} differs from bundled_configs"
    tokenizers = ["tokenizer", "tokenizer_2"] if family.startswith("sdxl") else ["tokenizer"]
    for name in tokenizers:
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            assert (CONFIGS / family / name / f).is_file()
        # One vocabulary for every family and both SDXL tokenizers.
        for f in ("vocab.json", "merges.txt"):
            assert (CONFIGS / family / name / f).read_bytes() == (CONFIGS / "sd15" / "tokenizer" / f).read_bytes()


def test_tokenizer_gives_clips_token_ids():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(CONFIGS / "sd15" / "tokenizer"), local_files_only=True)
    assert len(tok) == 49408
    # CLIP's ids: 49406 start, "a</w>" 320, "photo</w>" 1125, "of</w>" 539, "cat</w>" 2368, 49407 end.
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = tok("a cat", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[-1] == 49407  # SD pads with the end token
    tok2 = CLIPTokenizer.from_pretrained(str(CONFIGS / "sdxl" / "tokenizer_2"), local_files_only=True)
    assert tok2("a cat", padding="max_length", max_length=77).input_ids[-1] == tok2.convert_tokens_to_ids("!") == 0
    text = "A Knight's castle, at dusk (oil painting) 1920s!"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True).replace(" ", "") == text.lower().replace(" ", "")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_component_has_the_published_parameter_count(family):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    root = CONFIGS / family
    counts = {}
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        counts["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
        counts["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(root / "vae"))
        counts["text_encoder"] = CLIPTextModel(CLIPTextConfig.from_pretrained(root / "text_encoder"))
        if (root / "text_encoder_2").is_dir():
            counts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(root / "text_encoder_2"))
    got = {name: sum(p.numel() for p in model.parameters()) for name, model in counts.items()}
    assert got == PARAMS[family]


_NO_NETWORK = textwrap.dedent(
    """
    # Loaded by Python at start-up (sitecustomize): every attempt to reach the network is logged and refused.
    import os, socket

    def _refuse(*args, **kwargs):
        with open(os.environ["ATELIER_TEST_NETWORK_LOG"], "a") as log:
            log.write(repr(args[:2]) + "\\n")
        raise OSError(101, "Network is unreachable (cut by the test)")

    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse
    open(os.environ["ATELIER_TEST_NETWORK_LOG"] + ".armed", "w").close()
    """
)


def test_full_size_sd15_checkpoint_loads_offline_from_the_bundled_configs(tmp_path, monkeypatch):
    """A real-size SD 1.5 single file (random weights, LDM key layout, fp16: 2 GB) with no config given."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from atelier_runtime.testing.ldm_convert import pipeline_to_ldm_state_dict

    root = CONFIGS / "sd15"
    with torch.device("meta"):  # built straight in fp16 with small random weights: no fp32 copy (2 GB, not 8)
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(root / "vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(root / "text_encoder"))
    generator = torch.Generator().manual_seed(0)
    for model in (unet, vae, text_encoder):
        model.to(torch.float16).to_empty(device="cpu")
        for p in model.parameters():
            p.data.normal_(0.0, 0.02, generator=generator)
        for name, buf in model.named_buffers():
            assert name.endswith("position_ids"), name
            buf.copy_(torch.arange(buf.shape[-1]).expand_as(buf))

    class _Pipe:  # what pipeline_to_ldm_state_dict reads
        pass

    pipe = _Pipe()
    pipe.unet, pipe.vae, pipe.text_encoder = unet, vae, text_encoder
    ldm = pipeline_to_ldm_state_dict(pipe)
    expected = {"unet": unet.state_dict(), "vae": vae.state_dict(), "text_encoder": text_encoder.state_dict()}
    del pipe, unet, vae, text_encoder
    checkpoint = tmp_path / "someones-sd15-finetune.safetensors"  # a name that says nothing of the family
    save_file(ldm, str(checkpoint))
    del ldm

    # In this process: every weight of the file lands in the component the bundled config describes.
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError(101, "Network is unreachable (cut by the test)")

    import socket

    for target, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(target, name, refuse)
    loaded = StableDiffusionPipeline.from_single_file(
        str(checkpoint),
        config=str(root),
        local_files_only=True,
        torch_dtype=torch.float16,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    monkeypatch.undo()
    assert attempts == []
    for name, want in expected.items():
        got = getattr(loaded, name).state_dict()
        want = {k: v for k, v in want.items() if not k.endswith("position_ids")}
        got = {k: v for k, v in got.items() if not k.endswith("position_ids")}
        assert set(got) == set(want), f"{name}: keys differ"
        differ = [k for k in want if not torch.equal(got[k], want[k])]
        assert not differ, f"{name}: {len(differ)} weights differ, e.g. {differ[:3]}"
    del loaded, expected

    # Through the worker, as the app loads it: no config given, network cut for the whole process.
    log = tmp_path / "network.log"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NO_NETWORK)
    worker = spawn_worker(
        tmp_path,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(site)]),
        ATELIER_TEST_NETWORK_LOG=str(log),
    )
    try:
        result = worker.result("load_model", {"path": str(checkpoint)})
        assert (result["format"], result["family"]) == ("single_file", "sd15")
        _, terminal = worker.call(
            "generate",
            {
                "model": str(checkpoint),
                "mode": "txt2img",
                "prompt": "a lighthouse at dusk",
                "sampler": "Euler",
                "steps": 1,
                "cfg": 7.0,
                "seed": 1,
                "width": 64,
                "height": 64,
                "batch": 1,
                "out_dir": str(tmp_path / "out"),
            },
        )
        assert terminal["type"] == "result", terminal
        from PIL import Image

        with Image.open(terminal["result"]["images"][0]["path"]) as img:
            assert img.size == (64, 64)
    finally:
        worker.close()
    assert Path(str(log) + ".armed").exists(), "the worker did not run the network guard"
    assert not log.exists(), f"network attempts: {log.read_text()[:500]}"
