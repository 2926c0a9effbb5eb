"""How the engine's processes end on a signal: SIGTERM (how the Blender extension and job runners cancel) and
SIGINT (Ctrl-C) unwind as KeyboardInterrupt, so ``finally`` blocks remove temp files, kill compiler children and
the CLI can report the cancel (exit 130, a ``done`` event with ``cancelled: true``).

``python -m boost_core`` installs this before it imports anything else (see ``boost_core.__main__``), so a signal
during argument parsing, imports, network loading or kernel compilation ends the same way as one during inference.
Only the first signal interrupts: later ones (a second Ctrl-C, a job runner repeating SIGTERM) are ignored while
the clean-up of the first runs, so it cannot itself be cut short and leave partial files behind.
"""

from __future__ import annotations

import signal

_received: list[int] = []


def _interrupt(signum, frame):
    if _received:  # already unwinding: let the clean-up finish
        return
    _received.append(signum)
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt (once), so temp files are removed and children killed."""
    try:
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass


def cancelled() -> bool:
    """Whether a SIGTERM / SIGINT has been received by the handler above."""
    return bool(_received)
