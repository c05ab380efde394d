"""``python -m workload_ids``."""

import sys

from .cli import main

sys.exit(main())
