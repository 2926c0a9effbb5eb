"""How the engine's processes end on a signal: SIGTERM (how the Blender extension and job runners cancel) unwinds
like Ctrl-C (KeyboardInterrupt), so ``finally`` blocks remove temp files and the CLI can report the cancel."""

from __future__ import annotations

import signal


def terminate_as_interrupt() -> None:
    """SIGTERM (how the Blender extension cancels a job) unwinds like Ctrl-C, so temp files are removed."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
