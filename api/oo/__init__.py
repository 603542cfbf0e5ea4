"""The `oo` command line (see api/oo/cli.py); `python -m api.oo` runs it too."""

from .cli import cli, main

__all__ = ["cli", "main"]
