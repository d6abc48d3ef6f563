"""Unit conversions between a model's units and OpenMM's (nm, kJ/mol), in one place.

Constants: CODATA 2018 (the values OpenMM's ``openmm.unit`` uses): 1 eV = 96.485 332 12 kJ/mol,
1 hartree = 2625.499 639 48 kJ/mol, 1 kcal = 4.184 kJ (thermochemical), 1 bohr = 0.052 917 721 090 3 nm.
"""

from __future__ import annotations

from .choices import EnergyUnit, LengthUnit, parse_choice

KJ_PER_MOL = {
    "eV": 96.48533212331002,
    "kcal/mol": 4.184,
    "kJ/mol": 1.0,
    "hartree": 2625.4996394798254,
}

NM = {
    "angstrom": 0.1,
    "nm": 1.0,
    "bohr": 0.0529177210903,
}


def energy_to_kj_per_mol(unit: str) -> float:
    """Multiply an energy in ``unit`` by this to get kJ/mol."""
    return KJ_PER_MOL[parse_choice("energy_unit", unit, EnergyUnit)]


def nm_to_length(unit: str) -> float:
    """Multiply a length in nm by this to get ``unit`` (10 for Å)."""
    return 1.0 / NM[parse_choice("length_unit", unit, LengthUnit)]
