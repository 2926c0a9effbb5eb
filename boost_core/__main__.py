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


if __name__ == "__main__":
    sys.exit(_run())
