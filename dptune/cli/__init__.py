"""The `dptune` command line: `main` parses and dispatches (`main.py`); the search commands'
arguments and handlers are in `search_commands.py`."""

from dptune.cli.main import main

__all__ = ["main"]
