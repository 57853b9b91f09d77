"""The Atelier worker: JSON lines over stdio, protocol version 1 (see PROTOCOL.md).

    python -u -m atelier_runtime.worker

Threads:
  * a reader thread reads stdin line by line. It answers ``ping``, ``canny``, ``cancel`` and
    ``shutdown`` at once (``canny`` is cheap OpenCV work, no torch) and queues ``load_model``,
    ``generate`` and ``train`` (one queue: a training run and generations take turns); at EOF it
    cancels everything and stops the worker;
  * the main thread runs the queued requests one at a time (torch and diffusers stay on one thread).

stdout carries protocol lines only: at start-up the real stdout is duplicated for the protocol and
file descriptor 1 is pointed at stderr, so anything a library prints (even from C code) lands
on stderr. Every line is written whole, under a lock, and flushed.
"""

from __future__ import annotations

import os
import sys

# Set before any Hugging Face library is imported: the worker never contacts a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from typing import BinaryIO  # noqa: E402

from . import PROTOCOL_VERSION, __version__  # noqa: E402
from .errors import BAD_REQUEST, INTERNAL, Cancelled, WorkerError  # noqa: E402
from .params import CannyParams, GenerateParams, LoadParams, TrainParams, require_params  # noqa: E402
from .stdio import claim_stdout  # noqa: E402

QUEUED_METHODS = ("load_model", "generate", "train")
METHODS = ("ping", "canny", "load_model", "generate", "train", "cancel", "shutdown")
EOF_GRACE_S = 10.0  # after stdin closes, how long a running step may take before the worker exits anyway

log = logging.getLogger("atelier.worker")


class Job:
    """A queued or running request."""

    def __init__(self, request_id: str, method: str, params):
        self.id = request_id
        self.method = method
        self.params = params
        self.state = "queued"  # queued -> running -> done (guarded by Worker._jobs_lock)
        self._cancel = threading.Event()
        self._cancel_message = "Cancelled."

    def request_cancel(self, message: str = "Cancelled.") -> None:
        self._cancel_message = message
        self._cancel.set()

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(self._cancel_message)


class Worker:
    def __init__(self, out: BinaryIO, device):
        self._out = out
        self._write_lock = threading.Lock()
        self._jobs_lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue = queue.Queue()
        self.device = device
        self.engine = None
        self._engine_error: str | None = None

    # ------------------------------------------------------------------ output

    def emit(self, event: dict) -> None:
        line = (json.dumps(event, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        with self._write_lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError):
                # Nobody reads our output any more: the app is gone.
                os._exit(0)

    def _result(self, request_id: str, result: dict) -> None:
        self.emit({"type": "result", "id": request_id, "result": result})

    def _error(self, request_id: str | None, error: WorkerError) -> None:
        self.emit({"type": "error", "id": request_id, "error": error.to_payload()})

    def hello(self) -> dict:
        import torch

        from .device import choose_memory_mode

        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "runtime": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": _dist_version("diffusers"),
            "transformers": _dist_version("transformers"),
            "device": self.device.kind,
            "dtype": self.device.dtype_name,
            "devices": self.device.devices,
            # Chosen for SDXL, the larger family; load_model reports the mode chosen for the model loaded.
            "memory_mode": choose_memory_mode(self.device, "sdxl"),
        }

    # ------------------------------------------------------------------ main loop

    def serve(self, stdin: BinaryIO) -> int:
        reader = threading.Thread(target=self._read_loop, args=(stdin,), name="stdin-reader", daemon=True)
        reader.start()
        # Importing diffusers takes seconds: do it after hello, while the reader already answers pings.
        try:
            from .engine import Engine

            self.engine = Engine(self.device, self.emit)
        except Exception:  # noqa: BLE001 - every later request reports it
            self._engine_error = traceback.format_exc()
            log.error("the image engine failed to start:\n%s", self._engine_error)
        while True:
            job = self._queue.get()
            if job is None:  # stdin reached EOF
                return 0
            self._run(job)

    def _run(self, job: Job) -> None:
        with self._jobs_lock:
            if job.state != "queued":
                return  # cancelled while queued; its error was already sent
            job.state = "running"
        result, error = None, None
        try:
            job.raise_if_cancelled()
            result = self._dispatch(job)
        except WorkerError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - any failure ends the request, never the worker
            error = WorkerError(INTERNAL, f"Something went wrong in the image engine: {exc}", traceback.format_exc())
            log.error("request %s failed:\n%s", job.id, error.detail)
        with self._jobs_lock:
            job.state = "done"
            self._jobs.pop(job.id, None)
            # A cancel that was answered `true` must end the request with CANCELLED, even when it
            # arrived after the last step.
            if error is None and job.cancel_requested():
                error = Cancelled()
        if error is None:
            self._result(job.id, result)
        else:
            self._error(job.id, error)

    def _dispatch(self, job: Job) -> dict:
        if self.engine is None:
            raise WorkerError(
                INTERNAL,
                "The image engine could not start (a broken Python environment?). Repairing the runtime may fix it.",
                self._engine_error,
            )
        if job.method == "load_model":
            p = LoadParams.parse(job.params)
            return self.engine.load(p.path, p.config, p.memory_mode, job)
        if job.method == "generate":
            return self.engine.generate(GenerateParams.parse(job.params), job)
        if job.method == "train":
            return self.engine.train(TrainParams.parse(job.params), job)
        raise AssertionError(job.method)

    # ------------------------------------------------------------------ reader thread

    def _read_loop(self, stdin: BinaryIO) -> None:
        while True:
            try:
                raw = stdin.readline()
            except (OSError, ValueError):
                raw = b""
            if not raw:
                break
            try:
                self._handle_line(raw)
            except Exception:  # noqa: BLE001 - the reader must survive anything
                log.error("failed to handle a request line:\n%s", traceback.format_exc())
        self._on_eof()

    def _handle_line(self, raw: bytes) -> None:
        text = raw.strip()
        if not text:
            return
        try:
            message = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(None, WorkerError(BAD_REQUEST, f"A request line is not valid JSON ({exc}).", _clip(text)))
            return
        if not isinstance(message, dict):
            self._error(None, WorkerError(BAD_REQUEST, "A request must be a JSON object.", _clip(text)))
            return
        request_id = message.get("id")
        if not isinstance(request_id, str) or not request_id:
            self._error(
                None, WorkerError(BAD_REQUEST, 'A request needs an "id" that is a non-empty string.', _clip(text))
            )
            return
        method = message.get("method")
        if not isinstance(method, str):
            self._error(request_id, WorkerError(BAD_REQUEST, 'The request has no "method" string.'))
            return
        try:
            params = require_params(message.get("params"))
        except WorkerError as exc:
            self._error(request_id, exc)
            return

        if method == "ping":
            self._result(request_id, {})
        elif method == "canny":
            self._canny(request_id, params)
        elif method == "cancel":
            self._cancel(request_id, params)
        elif method == "shutdown":
            self._shutdown(request_id)
        elif method in QUEUED_METHODS:
            with self._jobs_lock:
                duplicate = request_id in self._jobs
                if not duplicate:
                    job = Job(request_id, method, params)
                    self._jobs[request_id] = job
            if duplicate:
                # Answering under this id would end the request that already uses it.
                self._error(
                    None, WorkerError(BAD_REQUEST, f'The id "{request_id}" is already used by a request in progress.')
                )
                return
            self._queue.put(job)
        else:
            self._error(
                request_id,
                WorkerError(BAD_REQUEST, f'Unknown method "{method}". The methods are: {", ".join(METHODS)}.'),
            )

    def _canny(self, request_id: str, params: dict) -> None:
        """Edge map for a live preview: answered on the reader thread, even while a generation runs."""
        try:
            from .imaging import run_canny

            result = run_canny(CannyParams.parse(params))
        except WorkerError as exc:
            self._error(request_id, exc)
            return
        except Exception as exc:  # noqa: BLE001 - never the reader thread
            detail = traceback.format_exc()
            log.error("canny %s failed:\n%s", request_id, detail)
            self._error(request_id, WorkerError(INTERNAL, f"The edge map could not be made: {exc}", detail))
            return
        self._result(request_id, result)

    def _cancel(self, request_id: str, params: dict) -> None:
        target = params.get("target")
        if not isinstance(target, str):
            self._error(request_id, WorkerError(BAD_REQUEST, "target is required: the id of the request to cancel."))
            return
        was_queued = False
        with self._jobs_lock:
            job = self._jobs.get(target)
            cancelled = job is not None and job.state != "done"
            if cancelled:
                job.request_cancel()
                if job.state == "queued":
                    # It never starts: the main thread skips it when it comes up.
                    was_queued = True
                    job.state = "done"
                    del self._jobs[target]
        self._result(request_id, {"cancelled": cancelled})
        if was_queued:
            self._error(target, Cancelled("Cancelled before it started."))

    def _shutdown(self, request_id: str) -> None:
        self._result(request_id, {})
        with self._write_lock:  # no other line may start after the answer
            try:
                self._out.flush()
            finally:
                os._exit(0)

    def _on_eof(self) -> None:
        """stdin closed: the app is gone or wants us gone. Stop the running job and exit."""
        with self._jobs_lock:
            for job in self._jobs.values():
                job.request_cancel("Cancelled: the worker is stopping because its input closed.")
        self._queue.put(None)
        # A step or a model load cannot be interrupted; do not wait for one for ever.
        timer = threading.Timer(EOF_GRACE_S, os._exit, args=(0,))
        timer.daemon = True
        timer.start()


# ---------------------------------------------------------------------- process set-up


def _exit_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies (stdin EOF is the main signal; this is a second guard)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)
    except (OSError, AttributeError):
        pass


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _clip(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


def main() -> int:
    out = claim_stdout()
    _exit_with_parent()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from .device import detect_device

    worker = Worker(out, detect_device())
    worker.emit(worker.hello())
    return worker.serve(sys.stdin.buffer)


if __name__ == "__main__":
    sys.exit(main())
