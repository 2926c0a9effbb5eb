"""``python -m boost_core``: the estimate command (``IMAGE ... --net --mode --output``, see ``estimate``) or a
subcommand (``weights``, ``merge``, ``resolution``, ``evaluate``, ``prepare-dataset``, ``train``, ``align``), each a module
here with ``main(argv) -> exit code``."""

from __future__ import annotations

import sys

SUBCOMMANDS = {  # name -> module of this package with main(argv) -> int
    "weights": "weights",
    "merge": "merge",
    "resolution": "resolution",
    "evaluate": "evaluate",
    "prepare-dataset": "prepare_dataset",
    "train": "train",
    "align": "align",
}


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for JSON lines (``--progress json`` / ``--progress=json``; ``merge --json``),
    read without argparse."""
    if argv[:1] == ["merge"]:
        return "--json" in argv
    return any(a == "--progress=json" or (a == "--progress" and b == "json") for a, b in zip(argv, argv[1:] + [""]))


def report_cancel(argv: list[str]) -> None:
    """A cancel before the command could report it: the ``done`` event (with --progress json) and one line."""
    import json

    try:
        if wants_json(argv):
            sys.stdout.write(json.dumps({"event": "done", "ok": 0, "failed": 0, "cancelled": True}) + "\n")
            sys.stdout.flush()
        sys.stderr.write("cancelled\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the reader is gone
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(f"{__package__}.{SUBCOMMANDS[argv[0]]}").main(argv[1:])
    from .estimate import estimate_main

    return estimate_main(argv)
