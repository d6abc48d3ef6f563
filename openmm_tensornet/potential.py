"""OpenMM-facing facade with openmm-ml's verbs: ``TensorNetPotential(model).createSystem / createMixedSystem``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Union

import openmm
import openmm.app as app

from .export import create_torch_force
from .model import TensorNet

# Bonded forces whose terms inside the ML region are switched off (their energy is the ML model's job now).
_BONDED_ZEROED = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "RBTorsionForce")
_LEFT_ALONE = ("CMMotionRemover", "MonteCarloBarostat", "MonteCarloAnisotropicBarostat",
               "MonteCarloMembraneBarostat", "MonteCarloFlexibleBarostat", "AndersenThermostat")


class TensorNetPotential:
    """A TensorNet model as an OpenMM potential.

    Parameters
    ----------
    model : TensorNet, str or Path
        A model, or the path of a checkpoint (ours or torchmd-net's, see :func:`openmm_tensornet.load_model`).

    Examples
    --------
    >>> potential = TensorNetPotential("model.pt")                          # doctest: +SKIP
    >>> system = potential.createMixedSystem(pdb.topology, mm_system, ligand_atoms)  # doctest: +SKIP
    """

    def __init__(self, model: Union[TensorNet, str, Path, None] = None):
        if model is None:
            raise ValueError("no model given and no default model is shipped with this version yet; pass a "
                             "TensorNet, or the path of a checkpoint (ours or a torchmd-net TensorNet .ckpt).")
        if isinstance(model, (str, Path)):
            from .checkpoint import load_model

            model = load_model(model)
        if not isinstance(model, TensorNet):
            raise TypeError(f"model must be a TensorNet or a checkpoint path; got {type(model).__name__}.")
        self.model = model

    @staticmethod
    def _atomic_numbers(topology: app.Topology, atoms: List[int]) -> List[int]:
        topology_atoms = list(topology.atoms())
        numbers = []
        for index in atoms:
            atom = topology_atoms[index]
            if atom.element is None:
                raise ValueError(f"atom {index} ({atom.name} in residue {atom.residue.name} {atom.residue.id}) has no "
                                 "element (a virtual site or extra particle?); it cannot be in the ML region.")
            numbers.append(atom.element.atomic_number)
        return numbers

    def createSystem(self, topology: app.Topology, removeCMMotion: bool = True, charge: float = 0.0) -> openmm.System:
        """A System in which TensorNet describes every atom (periodic when the topology has a box).

        ``charge`` is the total charge of the system (e).
        """
        system = openmm.System()
        atoms = list(topology.atoms())
        if len(atoms) == 0:
            raise ValueError("the topology has no atoms.")
        for atom in atoms:
            if atom.element is None:
                raise ValueError(f"atom {atom.index} ({atom.name}) has no element; TensorNet needs real atoms.")
            system.addParticle(atom.element.mass)
        periodic = topology.getPeriodicBoxVectors() is not None
        if periodic:
            system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
        numbers = self._atomic_numbers(topology, list(range(len(atoms))))
        system.addForce(create_torch_force(self.model, numbers, None, charge, periodic=periodic))
        if removeCMMotion:
            system.addForce(openmm.CMMotionRemover())
        return system

    def createMixedSystem(
        self,
        topology: app.Topology,
        system: openmm.System,
        atoms: Iterable[int],
        removeConstraints: bool = True,
        forceGroup: int = 0,
        interpolate: bool = False,
        charge: float = 0.0,
    ) -> openmm.System:
        """A copy of the MM ``system`` in which TensorNet describes the interactions *within* ``atoms``.

        Mechanical embedding: MM bonds, angles, torsions and CMAP terms whose atoms all lie in the region are removed,
        nonbonded pairs inside the region are excluded (zeroed exceptions / exclusions), and the interactions between
        the region and the rest keep their MM Lennard-Jones and Coulomb parameters. Constraints between region atoms
        are removed when ``removeConstraints`` (use a 1 fs or 0.5 fs time step then). ``charge`` is the total charge
        of the region (e). The result does not depend on the order of ``atoms``. The region is evaluated as one
        molecule, never against its own periodic images.
        """
        if interpolate:
            raise NotImplementedError("interpolate=True (lambda_interpolate) is not available in this version yet; "
                                      "build with interpolate=False.")
        region = sorted({int(a) for a in atoms})
        given = list(atoms) if not isinstance(atoms, (list, tuple)) else atoms
        if len(region) == 0:
            raise ValueError("atoms is empty: give the indices of the atoms TensorNet should describe.")
        if len(region) != len(given):
            raise ValueError("atoms contains duplicate indices.")
        if region[0] < 0 or region[-1] >= system.getNumParticles():
            raise ValueError(f"atoms must be particle indices in [0, {system.getNumParticles()}); got min "
                             f"{region[0]}, max {region[-1]}.")
        if topology.getNumAtoms() != system.getNumParticles():
            raise ValueError(f"the topology has {topology.getNumAtoms()} atoms but the system "
                             f"{system.getNumParticles()} particles; they must describe the same system.")
        inside = set(region)
        mixed = openmm.XmlSerializer.clone(system)
        for index in reversed(range(mixed.getNumForces())):
            force = mixed.getForce(index)
            replacement = _embed(force, inside)
            if replacement is not force:
                mixed.removeForce(index)
                if replacement is not None:
                    mixed.addForce(replacement)
        if removeConstraints:
            for index in reversed(range(mixed.getNumConstraints())):
                first, second, _ = mixed.getConstraintParameters(index)
                if first in inside and second in inside:
                    mixed.removeConstraint(index)
        numbers = self._atomic_numbers(topology, region)
        mixed.addForce(create_torch_force(
            self.model, numbers, region, charge, periodic=False,
            uses_box=system.usesPeriodicBoundaryConditions(), force_group=forceGroup,
            num_particles=system.getNumParticles()))
        return mixed


def _embed(force: openmm.Force, inside: set) -> Optional[openmm.Force]:
    """Remove the region's internal interactions from one MM force (in place, or a rebuilt copy)."""
    name = type(force).__name__
    if name == "HarmonicBondForce":
        for k in range(force.getNumBonds()):
            i, j, length, _ = force.getBondParameters(k)
            if i in inside and j in inside:
                force.setBondParameters(k, i, j, length, 0.0)
    elif name == "HarmonicAngleForce":
        for k in range(force.getNumAngles()):
            i, j, m, angle, _ = force.getAngleParameters(k)
            if i in inside and j in inside and m in inside:
                force.setAngleParameters(k, i, j, m, angle, 0.0)
    elif name == "PeriodicTorsionForce":
        for k in range(force.getNumTorsions()):
            i, j, m, n, periodicity, phase, _ = force.getTorsionParameters(k)
            if {i, j, m, n} <= inside:
                force.setTorsionParameters(k, i, j, m, n, periodicity, phase, 0.0)
    elif name == "RBTorsionForce":
        for k in range(force.getNumTorsions()):
            parameters = force.getTorsionParameters(k)
            if set(parameters[:4]) <= inside:
                force.setTorsionParameters(k, *parameters[:4], *([0.0] * 6))
    elif name == "CMAPTorsionForce":
        rebuilt = openmm.CMAPTorsionForce()
        rebuilt.setForceGroup(force.getForceGroup())
        rebuilt.setUsesPeriodicBoundaryConditions(force.usesPeriodicBoundaryConditions())
        for k in range(force.getNumMaps()):
            rebuilt.addMap(*force.getMapParameters(k))
        for k in range(force.getNumTorsions()):
            parameters = force.getTorsionParameters(k)
            if not set(parameters[1:]) <= inside:
                rebuilt.addTorsion(*parameters)
        return rebuilt
    elif name == "NonbondedForce":
        region = sorted(inside)
        for a, i in enumerate(region):
            for j in region[a + 1:]:
                force.addException(i, j, 0.0, 1.0, 0.0, True)
    elif name == "CustomNonbondedForce":
        existing = set()
        for k in range(force.getNumExclusions()):
            i, j = force.getExclusionParticles(k)
            existing.add((min(i, j), max(i, j)))
        region = sorted(inside)
        for a, i in enumerate(region):
            for j in region[a + 1:]:
                if (i, j) not in existing:
                    force.addExclusion(i, j)
    elif name in _LEFT_ALONE:
        pass
    elif name in ("GBSAOBCForce", "CustomGBForce", "AmoebaMultipoleForce"):
        raise ValueError(f"{name} (implicit solvent / polarisable) cannot be split into ML and MM parts; use explicit "
                         "solvent or a pure ML system.")
    else:
        _reject_unknown(force, name, inside)
    return force


def _reject_unknown(force: openmm.Force, name: str, inside: set) -> None:
    """Custom bonded forces: fine when none of their terms lies wholly inside the region, an error otherwise."""
    counters = {"CustomBondForce": ("getNumBonds", "getBondParameters", 2),
                "CustomAngleForce": ("getNumAngles", "getAngleParameters", 3),
                "CustomTorsionForce": ("getNumTorsions", "getTorsionParameters", 4)}
    if name in counters:
        count, getter, width = counters[name]
        for k in range(getattr(force, count)()):
            particles = getattr(force, getter)(k)[:width]
            if set(particles) <= inside:
                raise ValueError(f"{name} term {k} (particles {list(particles)}) lies inside the ML region; "
                                 "openmm-tensornet cannot tell what it represents. Remove it from the MM system "
                                 "or leave those atoms out of the region.")
        return
    raise ValueError(f"{name} is not supported in a mixed ML/MM system; open an issue with your use case.")
