"""Energy audit: the potential energy of a System split by force, so the ML, MM and ML–MM parts can be read off."""

from __future__ import annotations

from typing import Dict, List, Tuple

import openmm
import openmm.unit as unit


def energy_report(system: openmm.System, positions, platform: str = "Reference", box_vectors=None,
                  show: bool = True) -> Dict[str, float]:
    """Potential energy (kJ/mol) of every force of ``system`` at ``positions``, plus the total.

    Each force is evaluated on its own (its force group is temporarily unique), so a mixed system shows the TensorNet
    term (``TorchForce``), the remaining MM bonded terms and the nonbonded term that holds the ML–MM interactions.
    ``system`` is not modified. Returns ``{"<index> <Force name>": energy, ..., "total": energy}`` and prints a table
    when ``show``.
    """
    copy = openmm.XmlSerializer.clone(system) if not _has_torch_force(system) else _clone_with_torch(system)
    if copy.getNumForces() > 32:
        raise ValueError(f"the system has {copy.getNumForces()} forces; at most 32 can be told apart (force groups).")
    labels: List[Tuple[str, int]] = []
    for index in range(copy.getNumForces()):
        force = copy.getForce(index)
        force.setForceGroup(index)
        name = force.getName() or type(force).__name__
        labels.append((f"{index} {name}", index))
    context = openmm.Context(copy, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    if box_vectors is not None:
        context.setPeriodicBoxVectors(*box_vectors)
    context.setPositions(positions)
    energies: Dict[str, float] = {}
    for label, group in labels:
        state = context.getState(getEnergy=True, groups={group})
        energies[label] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    energies["total"] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    if show:
        width = max(len(label) for label in energies)
        for label, value in energies.items():
            print(f"{label:<{width}}  {value:16.4f} kJ/mol")
    return energies


def _has_torch_force(system: openmm.System) -> bool:
    return any(type(f).__name__ in ("TorchForce", "Force") for f in system.getForces())


def _clone_with_torch(system: openmm.System) -> openmm.System:
    from .serialization import deserialize_system, serialize_system

    return deserialize_system(serialize_system(system))
