"""``python -m boost_core``: see boost_core.cli.main."""

import sys

from boost_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
