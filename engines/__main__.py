"""``python -m inception_deploy.engines build|targets``: the builder's entry point where only the device-side
packages are installed (a deploy bundle's ``python/`` folder)."""
import sys

from inception_deploy.engines.cli import main

if __name__ == "__main__":
    sys.exit(main())
