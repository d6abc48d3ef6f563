"""Element symbols and masses by atomic number, for the layers that must not import OpenMM (the model).

The values are those of OpenMM 8.6 `openmm.app.element` (dalton), copied into ``elements.csv`` (next to this file)
so that `nn/` stays free of OpenMM; `tests/unit/test_architecture.py` checks them against OpenMM's table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple


def _read_table() -> Dict[int, Tuple[str, float]]:
    table: Dict[int, Tuple[str, float]] = {}
    for line in (Path(__file__).with_name("elements.csv")).read_text().splitlines():
        if line and not line.startswith("#"):
            number, symbol, mass = line.split(",")
            table[int(number)] = (symbol, float(mass))
    return table


# atomic number: (symbol, mass in dalton)
ELEMENTS: Dict[int, Tuple[str, float]] = _read_table()
