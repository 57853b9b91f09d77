"""Fixtures: tiny models built offline, and the real worker driven over its stdio protocol."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

# One thread per process: the suite runs on 2 shared cores, where torch's default (one thread
# per core in each process) makes processes fight. Set before torch is imported anywhere.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

RUNTIME_DIR = Path(__file__).resolve().parents[1]
if str(RUNTIME_DIR) not in sys.path:
    sys.path.insert(0, str(RUNTIME_DIR))

HELLO_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 180


def worker_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(RUNTIME_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


class WorkerProcess:
    """The worker as the app runs it: ``python -u -m atelier_runtime.worker`` with pipes."""

    def __init__(self, stderr_path: Path, env: dict):
        self.stderr_file = open(stderr_path, "wb")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "atelier_runtime.worker"],
            cwd=str(RUNTIME_DIR),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
        )
        self.events: queue.Queue = queue.Queue()
        self.non_protocol_lines: list[bytes] = []
        self._backlog: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.hello = self.next_event(HELLO_TIMEOUT_S)

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                self.non_protocol_lines.append(raw)  # stdout must carry protocol lines only
                continue
            self.events.put(event)
        self.events.put(None)  # EOF

    # -- sending

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, method: str, params: dict | None = None, request_id: str | None = None) -> str:
        request_id = request_id or f"{method}-{uuid.uuid4().hex[:8]}"
        message = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send_raw((json.dumps(message) + "\n").encode())
        return request_id

    # -- receiving

    def next_event(self, timeout: float = REQUEST_TIMEOUT_S) -> dict | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no event from the worker within {timeout} s; stderr:\n{self.stderr_tail()}"
            ) from None

    def wait_for(self, predicate, timeout: float = REQUEST_TIMEOUT_S) -> dict:
        """The first event (backlog first) that satisfies ``predicate``; others stay in the backlog."""
        for i, event in enumerate(self._backlog):
            if predicate(event):
                return self._backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"the worker closed stdout; stderr:\n{self.stderr_tail()}")
            if predicate(event):
                return event
            self._backlog.append(event)

    def collect(self, request_id: str, timeout: float = REQUEST_TIMEOUT_S) -> tuple[list[dict], dict]:
        """All events of ``request_id`` up to and including its terminal event."""
        events = []
        while True:
            event = self.wait_for(lambda e: e.get("id") == request_id, timeout)
            if event["type"] in ("result", "error"):
                return events, event
            events.append(event)

    def call(
        self, method: str, params: dict | None = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> tuple[list[dict], dict]:
        return self.collect(self.send(method, params), timeout)

    def result(self, method: str, params: dict | None = None) -> dict:
        _, terminal = self.call(method, params)
        assert terminal["type"] == "result", terminal
        return terminal["result"]

    def error(self, method: str, params: dict | None = None) -> dict:
        _, terminal = self.call(method, params)
        assert terminal["type"] == "error", terminal
        return terminal["error"]

    def stderr_tail(self, n: int = 4000) -> str:
        self.stderr_file.flush()
        try:
            return self.stderr_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr_file.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def configs_root(tmp_path_factory) -> Path:
    """Stands in for the app's bundled resources/model-configs (empty until a test fills it)."""
    return tmp_path_factory.mktemp("model-configs")


@pytest.fixture(scope="session")
def worker(tmp_path_factory, configs_root):
    """One worker for the session, as the app keeps one (tests run one after another on it)."""
    logs = tmp_path_factory.mktemp("logs")
    w = WorkerProcess(logs / "worker.stderr", worker_env(ATELIER_MODEL_CONFIGS_DIR=str(configs_root)))
    yield w
    w.close()
    assert not w.non_protocol_lines, f"non-protocol lines on stdout: {w.non_protocol_lines[:3]}"


def spawn_worker(tmp_path: Path, **env: str) -> WorkerProcess:
    return WorkerProcess(tmp_path / "worker.stderr", worker_env(**env))


@pytest.fixture(scope="session")
def sd15(tmp_path_factory) -> dict:
    """The tiny SD 1.5 model: a diffusers folder and the same weights as an LDM single file."""
    from atelier_runtime.testing.tiny import write_tiny_model

    return write_tiny_model(str(tmp_path_factory.mktemp("models")), "sd15")


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory) -> dict:
    """The tiny SDXL model, built through the CLI (which also checks the CLI's JSON line)."""
    out = tmp_path_factory.mktemp("models-xl")
    proc = subprocess.run(
        [sys.executable, "-m", "atelier_runtime.testing.tiny", str(out), "--family", "sdxl"],
        cwd=str(RUNTIME_DIR),
        env=worker_env(),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1, f"the CLI must print exactly one line, got {lines!r}"
    return json.loads(lines[0])


def copy_configs_only(model_dir: str, dest: Path) -> Path:
    """A diffusers folder without weights: what the app bundles for single-file checkpoints."""
    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return dest


@pytest.fixture(scope="session")
def sd15_controlnet(tmp_path_factory, sd15) -> dict:
    """The tiny SD 1.5 ControlNet (from_unet of the tiny SD 1.5 UNet): a folder and a single file."""
    from diffusers import UNet2DConditionModel

    from atelier_runtime.testing.tiny import write_tiny_controlnet

    unet = UNet2DConditionModel.from_pretrained(os.path.join(sd15["diffusers"], "unet"))
    return write_tiny_controlnet(str(tmp_path_factory.mktemp("controlnet")), unet, "sd15")


@pytest.fixture(scope="session")
def sdxl_controlnet(tmp_path_factory, sdxl) -> dict:
    from diffusers import UNet2DConditionModel

    from atelier_runtime.testing.tiny import write_tiny_controlnet

    unet = UNet2DConditionModel.from_pretrained(os.path.join(sdxl["diffusers"], "unet"))
    return write_tiny_controlnet(str(tmp_path_factory.mktemp("controlnet-xl")), unet, "sdxl")


@pytest.fixture(scope="session")
def sd15_inpaint(tmp_path_factory) -> dict:
    """The tiny dedicated inpainting model (9-channel UNet), built through the CLI with --controlnet."""
    out = tmp_path_factory.mktemp("models-inpaint")
    proc = subprocess.run(
        [sys.executable, "-m", "atelier_runtime.testing.tiny", str(out), "--family", "sd15-inpaint", "--controlnet"],
        cwd=str(RUNTIME_DIR),
        env=worker_env(),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1, f"the CLI must print exactly one line, got {lines!r}"
    return json.loads(lines[0])
