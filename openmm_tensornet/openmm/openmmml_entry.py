"""The object openmm-ml's ``openmmml.potentials`` entry point loads for ``MLPotential("tensornet")``.

openmm-ml loads every entry point while ``openmmml.mlpotential`` itself is being imported. If this factory lived in
:mod:`openmm_tensornet.openmm.openmmml_plugin`, which imports ``openmmml.mlpotential``, importing that plugin module first
would make openmm-ml look the factory up in a half-initialised module (a circular import). This module needs only
the factory base class, which openmm-ml defines before it loads entry points; the implementation is imported when
the first potential is created.
"""

from __future__ import annotations

from typing import Optional

from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory


class TensorNetPotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`openmm_tensornet.openmm.openmmml_plugin.TensorNetPotentialImpl` objects for openmm-ml."""

    def createImpl(self, name: str, modelPath: Optional[str] = None, energyUnit: Optional[str] = None,
                   lengthUnit: Optional[str] = None, lengthScale: Optional[float] = None,
                   energyScale: Optional[float] = None, remove_ref_energy: Optional[bool] = None,
                   **args) -> MLPotentialImpl:
        from .openmmml_plugin import TensorNetPotentialImpl

        if args:
            raise TypeError(f"MLPotential('{name}') got unexpected arguments {sorted(args)}; it takes modelPath, "
                            "energyUnit and lengthUnit (or openmm-ml's lengthScale and energyScale), and "
                            "remove_ref_energy.")
        return TensorNetPotentialImpl(name, modelPath, energyUnit, lengthUnit, lengthScale, energyScale,
                                      remove_ref_energy)
