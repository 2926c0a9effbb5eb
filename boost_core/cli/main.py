"""``python -m boost_core``: the estimate command (``IMAGE ... --net --mode --output``, see ``estimate``) or a
subcommand (``weights``, ``merge``, ``resolution``, ``evaluate``, ``prepare-dataset``, ``train``), each a module
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
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(f"{__package__}.{SUBCOMMANDS[argv[0]]}").main(argv[1:])
    from .estimate import estimate_main

    return estimate_main(argv)
