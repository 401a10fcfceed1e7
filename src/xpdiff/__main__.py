"""``python -m xpdiff``: the command line of :mod:`xpdiff.cli`.

Layer: top (with ``xpdiff.cli``).
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
