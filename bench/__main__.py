"""``python -m bench [--tiny] [--out PATH] [--quiet]``."""

import sys

from bench.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
