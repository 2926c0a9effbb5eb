"""``python -m boost_core``: see boost_core.cli.main.

SIGTERM / SIGINT handling is installed before anything else is imported: a cancel at any moment (argument parsing,
the torch import, network loading, kernel compilation, inference, writing) ends with exit 130 and, with
``--progress json``, a ``done`` event with ``cancelled: true``.
"""

import sys

from boost_core.host.signals import terminate_as_interrupt

terminate_as_interrupt()


def _run() -> int:
    try:
        from boost_core.cli.main import main

        return main()
    except KeyboardInterrupt:  # before a command could report it itself (imports, argument parsing)
        from boost_core.cli.main import report_cancel

        report_cancel(sys.argv[1:])
        return 130
    finally:
        _forget_caught_interrupts()
        _ignore_late_signals()


def _ignore_late_signals() -> None:
    """The command has ended (its exit status decided, its files written or cleaned up): a SIGTERM / SIGINT that
    lands while the interpreter shuts down is ignored. CPython puts the default action back for the signals it
    handles when it finalises, so such a late signal (a runner's timer firing just as the job ends) killed the
    process with -15 instead of its own status; handlers set to "ignore" are left as they are."""
    import signal

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def _forget_caught_interrupts() -> None:
    """Make a caught cancel end with the exit status the command returned (130), not a death by SIGINT.

    Under ``python -m``, CPython remembers a KeyboardInterrupt that ended any *string* ``exec``/``eval``
    (``PyRun_String``: dataclasses, namedtuple and torch's import run code that way) even when it was caught, and
    after a normal ``sys.exit`` kills itself with SIGINT (``Py_RunMain``'s check of
    ``_PyRuntime.signals.unhandled_keyboard_interrupt``). A signal landing during such an import therefore turned
    exit 130 into -2 now and then. The flag is cleared at the start of every string evaluation, so one empty
    evaluation here clears it; a KeyboardInterrupt that really is unhandled still propagates and sets it again.
    """
    exec("None", {})


if __name__ == "__main__":
    sys.exit(_run())
