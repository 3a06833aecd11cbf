"""``python -m bench [--tiny] [--out PATH] [--quiet]``."""

import sys

from linsam._src.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
