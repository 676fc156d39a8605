"""``python -m kithara_io``: the ``kithara-io`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
