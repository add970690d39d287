"""``python -m faltung`` is the ``faltung`` command."""

import sys

from .cli import main

sys.exit(main())
