"""LoRA training (the ``train`` method) on the embedded model, through the real worker.

The dataset is drawn here: blue hearts (a shape the embedded model never saw, under a trigger word
it cannot read) on palette backgrounds, with kohya sidecar captions, plus files that must be
skipped. A heart colour from the model's palette is used, not pink: the embedded VAE (trained on
the 8 palette colours) decodes pink as beige, so no model on that VAE could draw it.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import spawn_worker

RUNTIME_DIR = Path(__file__).resolve().parents[1]
EMBEDDED = RUNTIME_DIR.parent / "resources" / "models" / "atelier-shapes"

pytestmark = pytest.mark.skipif(not (EMBEDDED / "model_index.json").exists(), reason="embedded model not built")

TRIGGER = "hrtz"
HEART = (40, 80, 220)  # the palette's blue
BACKGROUNDS = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "yellow": (240, 210, 40),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "orange": (245, 140, 30),
}
BAD_FILES = {"orphan.txt", "noise.png", "cut.jpg", "tiny.png"}
TRAIN_TIMEOUT_S = 600


# ---------------------------------------------------------------------- the dataset


def draw_heart(size: tuple[int, int], background, rng: random.Random) -> Image.Image:
    """A heart (the parametric curve), drawn at 4x and box-downsampled like the embedded dataset."""
    w, h = size
    big = Image.new("RGB", (4 * w, 4 * h), background)
    draw = ImageDraw.Draw(big)
    s = rng.uniform(0.9, 1.3) * 4 * min(w, h) / 40
    cx = 2 * w + rng.uniform(-0.12, 0.12) * 4 * w
    cy = 2 * h + rng.uniform(-0.12, 0.12) * 4 * h
    points = []
    for i in range(120):
        t = 2 * math.pi * i / 120
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((cx + x * s, cy - y * s))
    draw.polygon(points, fill=HEART)
    return big.resize((w, h), Image.Resampling.BOX)


def make_dataset(folder: Path, n: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    names = list(BACKGROUNDS)
    for i in range(n):
        bg = names[i % len(names)]
        draw_heart((64, 64), BACKGROUNDS[bg], rng).save(folder / f"heart{i:02d}.png")
        # Most captions carry the trigger; the others get it prepended by the worker.
        caption = f"{TRIGGER} heart on a {bg} background" if i % 4 else f"heart on a {bg} background"
        (folder / f"heart{i:02d}.txt").write_text(caption)
    # Wide images (their own aspect-ratio bucket), without captions.
    for i, bg in enumerate(("green", "white", "red", "black")):
        draw_heart((96, 64), BACKGROUNDS[bg], rng).save(folder / f"wide{i}.png")
    # Files that must be skipped, each with a reason.
    (folder / "orphan.txt").write_text("a caption without an image")
    (folder / "noise.png").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(3000)))
    buf = folder / "cut.jpg"
    draw_heart((64, 64), BACKGROUNDS["red"], rng).save(buf, format="JPEG", quality=95)
    buf.write_bytes(buf.read_bytes()[:400])
    Image.new("RGB", (10, 10), (255, 0, 0)).save(folder / "tiny.png")
    return folder


def train_params(dataset: Path, job: Path, **overrides) -> dict:
    params = {
        "model": str(EMBEDDED),
        "dataset": str(dataset),
        "out_dir": str(job),
        "output": str(job / "lora" / "hearts.safetensors"),
        "trigger": TRIGGER,
        "rank": 8,
        "lr": 5e-3,
        "batch": 8,
        "steps": 100,
        "seed": 7,
        "checkpoint_every": 50,
        "sample_every": 50,
        "sample_prompts": [f"{TRIGGER} heart on a white background"],
        "sample_steps": 12,
        "sample_cfg": 7.0,
        "metadata": {"modelspec.title": "Hearts", "note": "made by the test"},
    }
    params.update(overrides)
    return params


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def generate(worker, out_dir: Path, **overrides) -> dict:
    params = {
        "model": str(EMBEDDED),
        "prompt": f"{TRIGGER} heart on a white background",
        "sampler": "Euler",
        "steps": 20,
        "cfg": 7.0,
        "seed": 0,
        "out_dir": str(out_dir),
    }
    params.update(overrides)
    _, terminal = worker.call("generate", params)
    assert terminal["type"] == "result", terminal
    return terminal["result"]


def heart_fraction(image: np.ndarray) -> float:
    """Share of pixels within RGB distance 60 of the heart colour."""
    return float((np.linalg.norm(image.astype(np.float64) - np.array(HEART), axis=-1) < 60).mean())


def lora_tensors(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("hearts") / "hearts")


@pytest.fixture(scope="module")
def trained(worker, dataset, tmp_path_factory) -> dict:
    """One training run on the session worker, shared by the tests below. Before it, the base
    model's image for a fixed request, to compare with after training."""
    root = tmp_path_factory.mktemp("train-job")
    base = generate(worker, root / "base-before", seed=3)
    params = train_params(dataset, root / "job")
    events, terminal = worker.call("train", params, timeout=TRAIN_TIMEOUT_S)
    assert terminal["type"] == "result", terminal
    return {
        "params": params,
        "events": events,
        "result": terminal["result"],
        "root": root,
        "base_image": base["images"][0]["path"],
    }


# ---------------------------------------------------------------------- pure helpers


def test_buckets_and_presets():
    from atelier_runtime.training.dataset import apply_trigger, bucket_sizes, cover, nearest_bucket
    from atelier_runtime.training.presets import preset, tier

    sizes = bucket_sizes(512, True)
    assert sizes == [(384, 640), (448, 576), (512, 512), (576, 448), (640, 384)]
    assert nearest_bucket((1200, 800), sizes) == (640, 384)
    assert nearest_bucket((800, 800), sizes) == (512, 512)
    assert nearest_bucket((600, 1000), sizes) == (384, 640)
    xl = bucket_sizes(1024, True)
    assert (1024, 1024) in xl and all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in xl)
    assert all((h, w) in xl for w, h in xl) and (1344, 768) in xl
    assert bucket_sizes(512, False) == [(512, 512)]
    assert all(w % 8 == 0 and h % 8 == 0 for w, h in bucket_sizes(64, True))
    assert cover((100, 50), (64, 64)) == ((128, 64), (0, 32))
    assert apply_trigger("a cat", "sks") == "sks, a cat"
    assert apply_trigger("a SKS cat", "sks") == "a SKS cat"
    assert apply_trigger("", "sks") == "sks"
    assert tier(0) == "cpu" and tier(8192) == "8gb" and tier(12282) == "12gb" and tier(24564) == "24gb"
    for family in ("sd15", "sdxl"):
        for vram in (0, 8192, 12282, 24564):
            p = preset(family, vram)
            assert set(p) == {"rank", "batch", "resolution", "gradient_checkpointing", "mixed_precision", "optimizer"}
            assert p["mixed_precision"] == ("no" if vram == 0 else "auto")
    assert preset("sdxl", 8192)["gradient_checkpointing"] is True
    assert preset("sdxl", 24564)["resolution"] == 1024 and preset("sd15", 0)["resolution"] == 512


def test_checkpoint_recovery_after_a_crash_between_renames(tmp_path):
    from atelier_runtime.training.trainer import _recover_checkpoint

    final = tmp_path / "checkpoint"
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "state.json").write_text("{}")
    (tmp_path / "checkpoint.tmp").mkdir()
    _recover_checkpoint(str(final))
    assert (final / "state.json").exists()
    assert not (tmp_path / "checkpoint.old").exists() and not (tmp_path / "checkpoint.tmp").exists()


# ---------------------------------------------------------------------- a. the run


def test_training_lowers_the_loss_and_reports_every_step(trained, dataset):
    events, result, params = trained["events"], trained["result"], trained["params"]
    progress = [e for e in events if e["type"] == "train_progress"]
    assert [e["step"] for e in progress] == list(range(1, 101))
    assert all(e["total"] == 100 for e in progress)
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["loss_avg"]) for e in progress)
    assert all(e["lr"] == pytest.approx(5e-3) and e["it_s"] > 0 and e["eta_s"] >= 0 for e in progress)
    # 20 images (16 square + 4 wide): 2 square batches of 8 and 1 wide batch of 4 per epoch.
    assert progress[0]["epoch"] == 1 and progress[2]["epoch"] == 1 and progress[3]["epoch"] == 2
    assert progress[-1]["eta_s"] == 0

    loss = [v for _, v in result["loss"]]
    assert result["loss"] == [[e["step"], e["loss"]] for e in progress]
    first, last = np.mean(loss[:20]), np.mean(loss[-20:])
    it_s = np.mean([e["it_s"] for e in progress])
    print(f"\nloss: first 20% {first:.4f}, last 20% {last:.4f}; {it_s:.2f} steps/s; job {result['seconds']:.1f} s")
    assert last < first
    assert result["final_loss"] == pytest.approx(np.mean(loss[-10:]))

    assert result["output"] == params["output"] and os.path.isfile(params["output"])
    assert result["steps"] == 100 and result["resumed_from"] == 0 and result["images"] == 20
    assert {s["file"] for s in result["skipped"]} == BAD_FILES
    reasons = {s["file"]: s["reason"] for s in result["skipped"]}
    assert "without an image" in reasons["orphan.txt"]
    assert "not an image" in reasons["noise.png"]
    assert "damaged or incomplete" in reasons["cut.jpg"]
    assert "too small" in reasons["tiny.png"] and "10×10" in reasons["tiny.png"]

    statuses = [e for e in events if e["type"] == "train_status"]
    phases = [e["phase"] for e in statuses]
    assert phases[0] == "loading" and phases[-1] == "saving"
    assert phases.index("caching") < phases.index("training") < phases.index("sampling")
    caching = [e for e in statuses if e["phase"] == "caching"]
    assert caching and all(e["images"] == 20 and e["skipped"] == result["skipped"] for e in caching)
    assert all("skipped" not in e for e in statuses if e["phase"] != "caching")

    checkpoints = [e for e in events if e["type"] == "train_checkpoint"]
    assert [e["step"] for e in checkpoints] == [50, 100]
    assert checkpoints[0]["path"] == str(Path(params["out_dir"]) / "checkpoint")
    samples = [e for e in events if e["type"] == "train_sample"]
    assert [e["step"] for e in samples] == [50, 100]
    for e in samples:
        (image,) = e["images"]
        assert image["prompt"] == params["sample_prompts"][0] and image["seed"] == 0
        assert image["path"] == str(Path(params["out_dir"]) / "samples" / f"step-{e['step']:06d}-0.png")
        with Image.open(image["path"]) as img:
            assert img.size == (64, 64)
    checkpoint_files = sorted(os.listdir(Path(params["out_dir"]) / "checkpoint"))
    assert checkpoint_files == ["lora.safetensors", "optimizer.pt", "state.json"]
    assert len(list((Path(params["out_dir"]) / "cache").iterdir())) == 1


# ---------------------------------------------------------------------- b. it learned the concept


def test_the_lora_draws_the_dataset_concept(worker, trained, tmp_path):
    output = trained["result"]["output"]
    prompts = [f"{TRIGGER} heart on a white background", f"{TRIGGER} heart on a green background"]
    measured = {}
    for weight in (0.0, 1.0):
        fractions = []
        for seed in range(6):
            for i, prompt in enumerate(prompts):
                loras = [{"path": output, "weight": weight}] if weight else []
                r = generate(worker, tmp_path / f"{weight}-{seed}-{i}", prompt=prompt, seed=seed, loras=loras)
                fractions.append(heart_fraction(pixels(r["images"][0]["path"])))
        measured[weight] = float(np.mean(fractions))
    print(f"\nheart-colour pixels: without the LoRA {measured[0.0]:.4f}, with it {measured[1.0]:.4f}")
    # Measured with the shipped (epsilon) embedded model: 0.0009 without the LoRA, 0.1425 with it
    # (with seeds 0-7: 0.0177 and 0.1971).
    assert measured[1.0] > 3 * measured[0.0] and measured[1.0] - measured[0.0] > 0.05


# ---------------------------------------------------------------------- d. the file


def test_the_file_is_kohya_format_with_metadata(trained, dataset):
    from safetensors import safe_open

    output = trained["result"]["output"]
    with safe_open(output, "pt") as f:
        keys = list(f.keys())
        metadata = f.metadata()
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight" in keys
    stems = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in keys}
    for stem in stems:
        assert {f"{stem}.lora_down.weight", f"{stem}.lora_up.weight", f"{stem}.alpha"} <= set(keys)
    tensors = lora_tensors(output)
    down = tensors["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"]
    assert down.shape == (8, 128) and down.dtype.is_floating_point
    assert float(tensors["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.alpha"]) == 8.0

    assert metadata == trained["result"]["metadata"]
    expected = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "8",
        "ss_base_model_version": "sd_v1",
        "ss_resolution": "(64, 64)",
        "ss_num_train_images": "20",
        "ss_steps": "100",
        "ss_learning_rate": "0.005",
        "ss_seed": "7",
        "ss_output_name": "hearts",
        "atelier.trigger": TRIGGER,
        "atelier.base_model": "atelier-shapes",
        "atelier.base_family": "sd15",
        "atelier.rank": "8",
        "atelier.alpha": "8",
        "atelier.steps": "100",
        "atelier.dataset_size": "20",
        "atelier.version": "1",
        "modelspec.title": "Hearts",
        "note": "made by the test",
    }
    assert {k: metadata.get(k) for k in expected} == expected
    tags = json.loads(metadata["ss_tag_frequency"])["hearts"]
    assert tags[TRIGGER] == 4 + 4  # prepended to the 4 captions without it; the caption of the 4 wide images
    assert sum(v for k, v in tags.items() if k.startswith(f"{TRIGGER} heart on a")) == 12


def test_the_file_loads_in_plain_diffusers_and_changes_the_image(trained):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    def run():
        out = pipe(
            f"{TRIGGER} heart on a white background",
            num_inference_steps=8,
            guidance_scale=7.0,
            generator=torch.Generator().manual_seed(5),
            output_type="np",
        )
        return out.images[0]

    before = run()
    pipe.load_lora_weights(trained["result"]["output"], adapter_name="hearts")
    after = run()
    assert np.abs(after - before).mean() > 0.01


def test_generate_with_the_lora_matches_the_final_sample_and_then_the_base(worker, trained, tmp_path):
    """The file holds what was trained: generating with it (weight 1) reproduces the sample written at
    the last step (same prompt, seed, steps, cfg and sampler); weight 0 and no LoRA give the base."""
    params, output = trained["params"], trained["result"]["output"]
    final_sample = [e for e in trained["events"] if e["type"] == "train_sample"][-1]["images"][0]["path"]
    same = {
        "prompt": params["sample_prompts"][0],
        "sampler": "DPM++ 2M Karras",
        "steps": params["sample_steps"],
        "cfg": params["sample_cfg"],
        "seed": 0,
        "negative_prompt": "",
    }
    with_lora = generate(worker, tmp_path / "one", loras=[{"path": output, "weight": 1.0}], **same)
    diff = np.abs(pixels(with_lora["images"][0]["path"]) - pixels(final_sample))
    assert diff.max() <= 2, diff.max()

    base = generate(worker, tmp_path / "base", **same)
    zero = generate(worker, tmp_path / "zero", loras=[{"path": output, "weight": 0.0}], **same)
    assert not np.array_equal(pixels(base["images"][0]["path"]), pixels(with_lora["images"][0]["path"]))
    assert np.array_equal(pixels(base["images"][0]["path"]), pixels(zero["images"][0]["path"]))
    # After training (and after a generation with the LoRA) the model is the base model again.
    after = generate(worker, tmp_path / "after", seed=3)
    assert np.array_equal(pixels(after["images"][0]["path"]), pixels(trained["base_image"]))


def test_text_encoder_training_writes_lora_te_keys_that_reproduce_the_sample(worker, dataset, trained, tmp_path):
    params = train_params(
        dataset,
        tmp_path / "job",
        text_encoder=True,
        text_encoder_lr=2e-3,
        steps=6,
        batch=4,
        checkpoint_every=0,
        sample_every=6,
        output=str(tmp_path / "te.safetensors"),
        seed=1,
    )
    events, terminal = worker.call("train", params, timeout=TRAIN_TIMEOUT_S)
    assert terminal["type"] == "result", terminal
    tensors = lora_tensors(params["output"])
    te_keys = [k for k in tensors if k.startswith("lora_te_")]
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in te_keys
    assert any(k.startswith("lora_unet_") for k in tensors)
    assert float(tensors["lora_te_text_model_encoder_layers_0_self_attn_out_proj.alpha"]) == 8.0
    sample = [e for e in events if e["type"] == "train_sample"][-1]["images"][0]["path"]
    r = generate(
        worker,
        tmp_path / "gen",
        loras=[{"path": params["output"], "weight": 1.0}],
        prompt=params["sample_prompts"][0],
        sampler="DPM++ 2M Karras",
        steps=params["sample_steps"],
        cfg=params["sample_cfg"],
        seed=0,
    )
    diff = np.abs(pixels(r["images"][0]["path"]) - pixels(sample))
    assert diff.max() <= 2, diff.max()
    # Only the UNet part: the text-encoder part matters.
    unet_only = {k: v for k, v in tensors.items() if k.startswith("lora_unet_")}
    from atelier_runtime.training.kohya import write_safetensors_atomic

    write_safetensors_atomic(str(tmp_path / "unet-only.safetensors"), unet_only, None)
    r2 = generate(
        worker,
        tmp_path / "gen2",
        loras=[{"path": str(tmp_path / "unet-only.safetensors"), "weight": 1.0}],
        prompt=params["sample_prompts"][0],
        sampler="DPM++ 2M Karras",
        steps=params["sample_steps"],
        cfg=params["sample_cfg"],
        seed=0,
    )
    assert not np.array_equal(pixels(r2["images"][0]["path"]), pixels(r["images"][0]["path"]))
    # The text encoder is the base one again too.
    after = generate(worker, tmp_path / "after", seed=3)
    assert np.array_equal(pixels(after["images"][0]["path"]), pixels(trained["base_image"]))


def test_a_finished_job_sent_again_resumes_at_the_end(worker, trained):
    before = lora_tensors(trained["result"]["output"])
    events, terminal = worker.call("train", trained["params"], timeout=TRAIN_TIMEOUT_S)
    assert terminal["type"] == "result", terminal
    result = terminal["result"]
    assert result["resumed_from"] == 100 and result["steps"] == 100
    assert result["loss"] == trained["result"]["loss"]
    assert not [e for e in events if e["type"] in ("train_progress", "train_sample")]
    after = lora_tensors(result["output"])  # written again, the same tensors and metadata
    assert after.keys() == before.keys() and all(after[k].equal(before[k]) for k in after)
    assert result["metadata"] == trained["result"]["metadata"]


# ---------------------------------------------------------------------- c. kill, cancel, resume


def test_kill_and_resume_gives_the_uninterrupted_weights_and_cancel_pauses(dataset, tmp_path):
    common = {"steps": 12, "batch": 4, "checkpoint_every": 4, "sample_every": 0, "seed": 11}
    killed = train_params(dataset, tmp_path / "killed", **common)

    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    w1 = spawn_worker(tmp_path / "w1")
    try:
        request = w1.send("train", killed)
        streamed = {}
        while True:
            event = w1.wait_for(lambda e: e.get("id") == request, TRAIN_TIMEOUT_S)
            assert event["type"] not in ("result", "error"), event
            if event["type"] == "train_progress":
                streamed[event["step"]] = event["loss"]
            if event["type"] == "train_checkpoint":
                w1.proc.send_signal(signal.SIGKILL)
                k = event["step"]
                break
    finally:
        w1.close()
    assert k == 4
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == k

    w2 = spawn_worker(tmp_path / "w2")
    try:
        events, terminal = w2.call("train", killed, timeout=TRAIN_TIMEOUT_S)
        assert terminal["type"] == "result", terminal
        resumed = terminal["result"]
        assert resumed["resumed_from"] == k and resumed["steps"] == 12
        assert [s for s, _ in resumed["loss"]] == list(range(1, 13))
        assert [[s, streamed[s]] for s in range(1, k + 1)] == resumed["loss"][:k]
        assert [e["step"] for e in events if e["type"] == "train_progress"] == list(range(k + 1, 13))
        # Nothing was encoded again: the latent cache of the first run was used.
        assert any("cached latents" in e.get("message", "") for e in events if e["type"] == "train_status")

        straight = train_params(dataset, tmp_path / "straight", **common)
        _, terminal = w2.call("train", straight, timeout=TRAIN_TIMEOUT_S)
        assert terminal["type"] == "result", terminal
        uninterrupted = terminal["result"]
        assert uninterrupted["resumed_from"] == 0
        assert uninterrupted["loss"][k:] == resumed["loss"][k:]
        assert_same_weights(resumed["output"], uninterrupted["output"])

        # Cancel = pause: a checkpoint of the last finished step, then CANCELLED; resuming loses nothing.
        paused = train_params(dataset, tmp_path / "paused", **{**common, "checkpoint_every": 0})
        request = w2.send("train", paused)
        w2.wait_for(
            lambda e: e.get("id") == request and e["type"] == "train_progress" and e["step"] >= 3, TRAIN_TIMEOUT_S
        )
        w2.send("cancel", {"target": request})
        pause_events, terminal = w2.collect(request, TRAIN_TIMEOUT_S)
        assert terminal["type"] == "error" and terminal["error"]["code"] == "CANCELLED", terminal
        checkpoint = [e for e in pause_events if e["type"] == "train_checkpoint"]
        last_step = max([3] + [e["step"] for e in pause_events if e["type"] == "train_progress"])
        assert [e["step"] for e in checkpoint] == [last_step]
        assert pause_events[-1]["type"] == "train_checkpoint"  # right before the error
        _, terminal = w2.call("train", paused, timeout=TRAIN_TIMEOUT_S)
        assert terminal["type"] == "result", terminal
        assert terminal["result"]["resumed_from"] == last_step
        assert terminal["result"]["loss"] == uninterrupted["loss"]
        assert_same_weights(terminal["result"]["output"], uninterrupted["output"])
    finally:
        w2.close()


def assert_same_weights(a: str, b: str) -> None:
    import torch

    ta, tb = lora_tensors(a), lora_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.allclose(ta[key], tb[key], rtol=0, atol=1e-6), key


# ---------------------------------------------------------------------- f. validation


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ({"rank": 0}, "rank", "between 1 and 256"),
        ({"alpha": 0}, "alpha", "greater than 0"),
        ({"lr": 0}, "lr", "greater than 0"),
        ({"lr": 2}, "lr", "between 0 and 1"),
        ({"resolution": 100}, "resolution", "multiple of 8"),
        ({"resolution": 4096}, "resolution", "between 64 and 2048"),
        ({"output": "/tmp/lora.ckpt"}, "output", ".safetensors"),
        ({"output": "lora.safetensors"}, "output", "absolute path"),
        ({"dataset": None}, "dataset", "required"),
        ({"steps": 0}, "steps", "between 1 and 1000000"),
        ({"epochs": 0, "steps": None}, "epochs", "between 1 and 10000"),
        ({"batch": 65}, "batch", "between 1 and 64"),
        ({"seed": 2**32}, "seed", "between 0 and 4294967295"),
        ({"optimizer": "sgd"}, "optimizer", "adamw, adamw8bit"),
        ({"optimizer": "adamw8bit"}, "optimizer", "adamw8bit"),
        ({"mixed_precision": "fp16"}, "mixed_precision", "needs a GPU"),
        ({"lr_scheduler": "step"}, "lr_scheduler", "constant, cosine, linear"),
        ({"sample_prompts": ["x"] * 9}, "sample_prompts", "at most 8"),
        ({"sample_prompts": [1]}, "sample_prompts[0]", "string"),
        ({"metadata": {"ss_network_dim": "4"}}, "metadata", "reserved"),
        ({"metadata": {"k": 1}}, "metadata", "string"),
        ({"buckets": "yes"}, "buckets", "true or false"),
        ({"trigger": "a\nb"}, "trigger", "one line"),
    ],
)
def test_bad_train_params(worker, dataset, tmp_path, override, field, words):
    params = {**train_params(dataset, tmp_path / "job"), **override}
    params = {k: v for k, v in params.items() if v is not None}
    error = worker.error("train", params)
    assert error["code"] == "BAD_REQUEST", error
    assert field in error["message"] and words in error["message"], error["message"]


def test_dataset_errors(worker, tmp_path):
    missing = worker.error("train", train_params(tmp_path / "nowhere", tmp_path / "job"))
    assert missing["code"] == "BAD_REQUEST", missing
    assert missing["message"].startswith("dataset") and "does not exist" in missing["message"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png at all")
    Image.new("RGB", (8, 8)).save(bad / "b.png")
    events, terminal = worker.call("train", train_params(bad, tmp_path / "job2"))
    assert terminal["type"] == "error", terminal
    error = terminal["error"]
    assert error["code"] == "BAD_REQUEST" and error["message"].startswith("dataset"), error
    assert "no usable images" in error["message"] and "a.png" in error["message"] and "b.png" in error["message"]
    caching = [e for e in events if e["type"] == "train_status" and "skipped" in e]
    assert caching and caching[0]["images"] == 0 and {s["file"] for s in caching[0]["skipped"]} == {"a.png", "b.png"}


def test_resume_with_other_settings_is_refused_and_resume_false_starts_over(worker, trained, tmp_path):
    params = {**trained["params"], "rank": 16, "lr": 1e-3}
    error = worker.error("train", params)
    assert error["code"] == "BAD_REQUEST" and error["message"].startswith("resume"), error
    message = error["message"]
    assert "other settings" in message and "rank 8 (now 16)" in message and "lr 0.005 (now 0.001)" in message
    assert "resume false" in message and trained["params"]["out_dir"] in message

    # resume false on a copy of the job folder: the old checkpoint is deleted, training starts at 0.
    job = tmp_path / "copy"
    shutil.copytree(trained["params"]["out_dir"], job)
    fresh = {
        **params,
        "out_dir": str(job),
        "output": str(job / "fresh.safetensors"),
        "steps": 2,
        "sample_every": 0,
        "resume": False,
    }
    _, terminal = worker.call("train", fresh, timeout=TRAIN_TIMEOUT_S)
    assert terminal["type"] == "result", terminal
    assert terminal["result"]["resumed_from"] == 0 and [s for s, _ in terminal["result"]["loss"]] == [1, 2]
    assert json.loads((job / "checkpoint" / "state.json").read_text())["config"]["rank"] == 16


def test_a_v_prediction_zero_snr_model_trains(worker, dataset, tmp_path):
    """The embedded model is being retrained as v_prediction + zero terminal SNR + trailing spacing: a
    copy of it with that scheduler config (its UNet is not trained for it, so only the code paths
    count here) trains with velocity targets, samples and writes its LoRA."""
    model = tmp_path / "vpred"
    shutil.copytree(EMBEDDED, model)
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")
    config_path.write_text(json.dumps(config))
    params = train_params(
        dataset,
        tmp_path / "job",
        model=str(model),
        steps=4,
        batch=4,
        checkpoint_every=0,
        sample_every=4,
        sample_steps=4,
        output=str(tmp_path / "v.safetensors"),
    )
    events, terminal = worker.call("train", params, timeout=TRAIN_TIMEOUT_S)
    assert terminal["type"] == "result", terminal
    assert [s for s, _ in terminal["result"]["loss"]] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for _, v in terminal["result"]["loss"])
    assert [e["step"] for e in events if e["type"] == "train_sample"] == [4]
    assert any(k.startswith("lora_unet_") for k in lora_tensors(params["output"]))


def test_sdxl_training_with_both_text_encoders(worker, sdxl, dataset, trained, tmp_path):
    """The tiny random SDXL model: pooled embeddings and time ids, lora_te1_/lora_te2_ keys, and the
    LoRA reproduces the last sample through generate; an SD 1.5 LoRA does not fit it."""
    params = train_params(
        dataset,
        tmp_path / "job",
        model=sdxl["diffusers"],
        steps=4,
        batch=2,
        text_encoder=True,
        checkpoint_every=0,
        sample_every=4,
        sample_steps=4,
        output=str(tmp_path / "xl.safetensors"),
        sample_prompts=["a red rose"],
    )
    events, terminal = worker.call("train", params, timeout=TRAIN_TIMEOUT_S)
    assert terminal["type"] == "result", terminal
    assert terminal["result"]["metadata"]["ss_base_model_version"] == "sdxl_base_v1-0"
    assert terminal["result"]["metadata"]["atelier.base_family"] == "sdxl"
    tensors = lora_tensors(params["output"])
    prefixes = {k.split("_text_model")[0] if k.startswith("lora_te") else "lora_unet" for k in tensors}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}
    assert "lora_te2_text_model_encoder_layers_0_self_attn_v_proj.lora_up.weight" in tensors

    sample = [e for e in events if e["type"] == "train_sample"][-1]["images"][0]["path"]
    same = {
        "model": sdxl["diffusers"],
        "prompt": "a red rose",
        "sampler": "DPM++ 2M Karras",
        "steps": 4,
        "cfg": params["sample_cfg"],
        "seed": 0,
    }
    r = generate(worker, tmp_path / "gen", loras=[{"path": params["output"], "weight": 1.0}], **same)
    assert np.abs(pixels(r["images"][0]["path"]) - pixels(sample)).max() <= 2

    _, terminal = worker.call(
        "generate", {**same, "out_dir": str(tmp_path / "x"), "loras": [{"path": trained["result"]["output"]}]}
    )
    assert terminal["type"] == "error" and terminal["error"]["code"] == "BAD_REQUEST", terminal
    message = terminal["error"]["message"]
    assert message.startswith("loras[0].path") and "Stable Diffusion 1.5 LoRA" in message, message
