"""Import ``openmmtorch`` without its stray deprecation line.

openmmtorch 1.5 imports ``simtk.openmm``, whose shim logs "Warning: importing 'simtk.openmm' is deprecated" on the
root logger. The user's script never imported ``simtk``, so the line would only confuse; it is dropped, and every
other log record passes.
"""

from __future__ import annotations

import logging

_SIMTK_LINE = "importing 'simtk.openmm' is deprecated"


def _not_simtk(record: logging.LogRecord) -> bool:
    return _SIMTK_LINE not in str(record.msg)


def import_openmmtorch():
    """The ``openmmtorch`` module (imported once; later calls return the cached module)."""
    root = logging.getLogger()
    root.addFilter(_not_simtk)
    try:
        import openmmtorch
    finally:
        root.removeFilter(_not_simtk)
    return openmmtorch
