"""Atelier's Python worker: Stable Diffusion 1.5 / SDXL generation over a JSON-lines protocol."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
