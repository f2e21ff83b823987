"""``python -m gluonbert.cli``: the ``gluonbert`` command."""
import sys

from . import main

sys.exit(main())
