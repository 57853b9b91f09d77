"""Helpers for tests: tiny random models built offline."""
