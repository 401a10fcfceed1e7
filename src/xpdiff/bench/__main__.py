"""``python -m xpdiff.bench``: run the benchmark suite (see :mod:`xpdiff.bench`)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
