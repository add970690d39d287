"""``python -m faltung`` is the ``faltung`` command."""

import sys

from .cli import entry

sys.exit(entry())
