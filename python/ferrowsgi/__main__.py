"""``python -m ferrowsgi``: the same as the ``ferrowsgi`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
