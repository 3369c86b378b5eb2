"""``python -m comfyfixersmart``: the ``comfyfixer`` command."""

import sys

from .cli import main

sys.exit(main())
