import sys

from inception_deploy.pipeline.cli import main

sys.exit(main())
