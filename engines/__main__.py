"""``python -m engines build|targets``: the builder's entry point where only the device-side
packages are installed (a deploy bundle's ``python/`` folder)."""
import sys

from engines.cli import main

if __name__ == "__main__":
    sys.exit(main())
