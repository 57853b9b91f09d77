"""The ``canny`` method: edge maps for ControlNet, answered at once even while a generation runs."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image


def square_image(tmp_path, size: int = 64) -> str:
    img = np.zeros((size, size), np.uint8)
    img[16:48, 16:48] = 255
    path = tmp_path / "square.png"
    Image.fromarray(img).save(path)
    return str(path)


def test_canny_draws_the_edges_of_a_white_square(worker, tmp_path):
    out = tmp_path / "edges" / "square-edges.png"  # the folder is created
    result = worker.result("canny", {"image": square_image(tmp_path), "out": str(out)})
    assert result["path"] == str(out) and (result["width"], result["height"]) == (64, 64)
    with Image.open(out) as img:
        assert img.mode == "L"
        edges = np.asarray(img)
    assert set(np.unique(edges)) <= {0, 255}
    ys, xs = np.nonzero(edges)
    # Edges lie on the square's border (within a pixel), nowhere else.
    assert ys.min() >= 14 and ys.max() <= 49 and xs.min() >= 14 and xs.max() <= 49
    assert edges[24:40, 24:40].sum() == 0  # the inside is flat
    assert edges[0:10].sum() == 0
    assert 0 < result["edge_fraction"] < 0.1
    assert abs(result["edge_fraction"] - (edges > 0).mean()) < 1e-5
    assert sorted(p.name for p in out.parent.iterdir()) == ["square-edges.png"]  # written atomically


def test_canny_thresholds_and_resize(worker, tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    img = np.clip(x * 2 + rng.normal(0, 25, (96, 96)), 0, 255).astype(np.uint8)
    src = tmp_path / "noisy.png"
    Image.fromarray(img).convert("RGB").save(src)
    low = worker.result("canny", {"image": str(src), "low": 20, "high": 60, "out": str(tmp_path / "low.png")})
    high = worker.result("canny", {"image": str(src), "low": 200, "high": 400, "out": str(tmp_path / "high.png")})
    assert low["edge_fraction"] > high["edge_fraction"]
    sized = worker.result(
        "canny", {"image": str(src), "out": str(tmp_path / "sized.png"), "width": 128, "height": 48}
    )
    assert (sized["width"], sized["height"]) == (128, 48)
    with Image.open(tmp_path / "sized.png") as im:
        assert im.size == (128, 48)


def test_canny_bad_requests(worker, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    out = str(tmp_path / "o.png")
    cases = [
        ({"image": str(corrupt), "out": out}, "image"),
        ({"image": str(text), "out": out}, "image"),
        ({"image": str(tmp_path / "missing.png"), "out": out}, "does not exist"),
        ({"out": out}, "image is required"),
        ({"image": str(corrupt)}, "out is required"),
        ({"image": "rel.png", "out": out}, "absolute path"),
        ({"image": str(corrupt), "out": out, "low": 300, "high": 100}, "low must be at most high"),
        ({"image": str(corrupt), "out": out, "low": -1}, "low"),
        ({"image": str(corrupt), "out": out, "width": 64}, "width and height"),
    ]
    for params, words in cases:
        error = worker.error("canny", params)
        assert error["code"] == "BAD_REQUEST", (params, error)
        assert words in error["message"], (params, error["message"])
    assert not (tmp_path / "o.png").exists()


def test_canny_answers_while_a_generation_runs(worker, sd15, tmp_path):
    src = square_image(tmp_path)
    gen_id = worker.send(
        "generate",
        {
            "model": sd15["diffusers"],
            "prompt": "a cat",
            "sampler": "Euler",
            "steps": 200,
            "seed": 1,
            "width": 128,
            "height": 128,
            "out_dir": str(tmp_path / "gen"),
        },
    )
    worker.wait_for(lambda e: e.get("id") == gen_id and e["type"] == "progress" and e["step"] == 2)
    started = time.monotonic()
    canny_id = worker.send("canny", {"image": src, "out": str(tmp_path / "live.png")})
    answer = worker.wait_for(lambda e: e.get("id") == canny_id)
    elapsed = time.monotonic() - started
    assert answer["type"] == "result", answer
    # The generation is still running: it has not ended yet.
    cancel = worker.result("cancel", {"target": gen_id})
    assert cancel["cancelled"] is True, "the generation ended before canny answered"
    _, terminal = worker.collect(gen_id)
    assert terminal["type"] == "error" and terminal["error"]["code"] == "CANCELLED"
    assert elapsed < 10
