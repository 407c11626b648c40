"""Allow ``python -m pysev``."""

import sys

from pysev.cli import main

if __name__ == "__main__":
    sys.exit(main())
