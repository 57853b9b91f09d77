"""Error codes of the worker protocol (PROTOCOL.md, "Errors") and the exception that carries them."""

from __future__ import annotations

BAD_REQUEST = "BAD_REQUEST"
MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
NOT_A_MODEL = "NOT_A_MODEL"
OUT_OF_MEMORY = "OUT_OF_MEMORY"
CANCELLED = "CANCELLED"
INTERNAL = "INTERNAL"


class WorkerError(Exception):
    """An error that ends a request with ``{"type": "error", "error": {code, message, detail}}``.

    ``message`` is written for the person using the app; ``detail`` (a traceback or a technical
    reason) is for bug reports and may be None.
    """

    def __init__(self, code: str, message: str, detail: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail

    def to_payload(self) -> dict:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class Cancelled(WorkerError):
    """The request was cancelled by a ``cancel`` request (or because the worker is stopping)."""

    def __init__(self, message: str = "Cancelled."):
        super().__init__(CANCELLED, message)
