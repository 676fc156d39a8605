"""``python -m kithara_io`` and the ``kithara-io`` command line (``cli.main``)."""

import sys
from typing import Optional, Sequence

from .extras import MissingExtraError


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; without the ``player`` extra it needs, say which extra to install."""
    try:
        from .cli.main import main as run
    except MissingExtraError as exc:
        print(f"kithara-io: error: {exc}", file=sys.stderr)
        return 1
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
