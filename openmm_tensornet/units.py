"""Unit conversions between a model's units and OpenMM's (nm, kJ/mol), in one place.

Constants: CODATA 2018 (the values OpenMM's ``openmm.unit`` uses): 1 eV = 96.485 332 12 kJ/mol,
1 hartree = 2625.499 639 48 kJ/mol, 1 kcal = 4.184 kJ (thermochemical), 1 bohr = 0.052 917 721 090 3 nm.
"""

from __future__ import annotations

from typing import Optional, Tuple

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


def _unit_of_scale(kind: str, scale: float, table: dict, example: str) -> str:
    for name, value in table.items():
        if abs(float(scale) - value) <= 1e-3 * value:
            return name
    allowed = ", ".join(f"{value:g} ({name})" for name, value in table.items())
    raise ValueError(f"{kind}={scale!r} matches none of the units openmm-tensornet converts exactly: {allowed}. "
                     f"Pass one of these (or {example}).")


def units_from_scales(length_scale: Optional[float], energy_scale: Optional[float]) -> Tuple[Optional[str],
                                                                                               Optional[str]]:
    """openmm-ml's ``lengthScale`` (nm per model length unit) and ``energyScale`` (kJ/mol per model energy unit)
    as our unit names, e.g. 0.1 -> "angstrom" and 96.4916 -> "eV" (a scale within 0.1 % of a unit's exact
    factor names that unit, whose CODATA factor is then used); None stays None."""
    length = None if length_scale is None else _unit_of_scale("lengthScale", length_scale, NM, "lengthUnit='nm'")
    energy = None if energy_scale is None else _unit_of_scale("energyScale", energy_scale, KJ_PER_MOL,
                                                              "energyUnit='kcal/mol'")
    return length, energy
