"""The wire protocol itself: hello, ping, malformed lines, unknown methods, EOF and shutdown."""

from __future__ import annotations

import json
import time

import pytest

from conftest import spawn_worker


def test_hello_is_the_first_line_with_every_field(worker):
    hello = worker.hello
    assert hello["type"] == "hello"
    assert hello["protocol"] == 1
    assert hello["runtime"] == "0.1.0"
    for key in ("python", "torch", "diffusers", "transformers"):
        assert isinstance(hello[key], str) and hello[key][0].isdigit(), (key, hello[key])
    assert hello["device"] == "cpu"
    assert hello["dtype"] == "float32"
    assert hello["devices"][0]["kind"] == "cpu"
    assert hello["devices"][0]["vram_mb"] == 0
    assert "threads" in hello["devices"][0]["name"]
    assert hello["memory_mode"] == "normal"


def test_ping(worker):
    assert worker.result("ping") == {}


def test_malformed_line_gets_an_error_with_null_id_and_the_worker_keeps_going(worker):
    worker.send_raw(b"this is not json\n")
    event = worker.wait_for(lambda e: e.get("type") == "error" and e.get("id") is None)
    assert event["error"]["code"] == "BAD_REQUEST"
    assert "JSON" in event["error"]["message"]

    worker.send_raw(b'["a", "list"]\n')
    event = worker.wait_for(lambda e: e.get("type") == "error" and e.get("id") is None)
    assert "object" in event["error"]["message"]

    worker.send_raw(json.dumps({"method": "ping"}).encode() + b"\n")
    event = worker.wait_for(lambda e: e.get("type") == "error" and e.get("id") is None)
    assert '"id"' in event["error"]["message"]

    worker.send_raw(b"\n")  # blank lines are ignored
    assert worker.result("ping") == {}


def test_unknown_method_is_a_bad_request_naming_it(worker):
    error = worker.error("paint_me_a_picture")
    assert error["code"] == "BAD_REQUEST"
    assert "paint_me_a_picture" in error["message"]
    assert "generate" in error["message"]


def test_params_must_be_an_object(worker):
    error = worker.error("generate", ["not", "an", "object"])  # type: ignore[arg-type]
    assert error["code"] == "BAD_REQUEST"
    assert "params" in error["message"]


def test_cancel_of_an_unknown_request_is_false(worker):
    assert worker.result("cancel", {"target": "no-such-request"}) == {"cancelled": False}


def test_cancel_needs_a_target(worker):
    error = worker.error("cancel", {})
    assert error["code"] == "BAD_REQUEST" and "target" in error["message"]


@pytest.mark.slow
def test_eof_on_stdin_cancels_the_running_job_and_exits_0(tmp_path, sd15):
    w = spawn_worker(tmp_path)
    assert w.hello["type"] == "hello"
    assert w.result("ping") == {}
    request_id = w.send(
        "generate",
        {"model": sd15["diffusers"], "prompt": "a cat", "seed": 1, "steps": 200, "out_dir": str(tmp_path / "out")},
    )
    w.wait_for(lambda e: e.get("id") == request_id and e["type"] == "progress")
    start = time.monotonic()
    w.proc.stdin.close()
    _, terminal = w.collect(request_id, timeout=30)
    assert terminal["error"]["code"] == "CANCELLED"
    assert w.proc.wait(30) == 0, w.stderr_tail()
    assert time.monotonic() - start < 15
    assert w.close() == 0
    assert not w.non_protocol_lines


@pytest.mark.slow
def test_shutdown_answers_then_exits_0(tmp_path):
    w = spawn_worker(tmp_path)
    request_id = w.send("shutdown")
    event = w.wait_for(lambda e: e.get("id") == request_id)
    assert event == {"type": "result", "id": request_id, "result": {}}
    assert w.proc.wait(30) == 0
    assert w.next_event(10) is None  # nothing after the answer: stdout closed
    w.close()
