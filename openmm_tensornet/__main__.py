"""``python -m openmm_tensornet`` is the ``openmm-tensornet`` command (e.g. under ``torchrun``)."""

import sys

from .app.cli import main

sys.exit(main())
