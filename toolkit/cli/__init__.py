"""The ``toolkit`` command: argument parsing only; the work is in the library."""

from toolkit.cli.app import app, main

__all__ = ["app", "main"]
