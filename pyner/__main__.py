"""`python -m pyner ...` is the `pyner` command (used by the Docker image's entrypoint)."""

import sys

from .cli import main

sys.exit(main())
