"""OpenMM-facing facade with openmm-ml's verbs: ``TensorNetPotential(model).createSystem / createMixedSystem``."""

from __future__ import annotations

import operator
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from ..nn.model import TensorNet
from .export import torch_force
from .force_spec import ForceSpec
from .interpolation import PARAMETER, subtraction_forces
from .region_charges import predicted_charges, set_region_charges

# Bonded forces whose terms inside the ML region are switched off (their energy is the ML model's job now).
_BONDED_ZEROED = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "RBTorsionForce")
# Forces kept as they are: no interactions within the region to hand over (thermostats, barostats), or restraints
# the user added on purpose (positions, RMSD, centroids), which stay on top of the ML energy.
_LEFT_ALONE = ("CMMotionRemover", "MonteCarloBarostat", "MonteCarloAnisotropicBarostat",
               "MonteCarloMembraneBarostat", "MonteCarloFlexibleBarostat", "AndersenThermostat",
               "CustomExternalForce", "RMSDForce", "CustomCentroidBondForce")


class TensorNetPotential:
    """A TensorNet model as an OpenMM potential.

    Parameters
    ----------
    model : TensorNet, str, Path or None
        A model, the path of a checkpoint (ours or torchmd-net's, see :func:`openmm_tensornet.load_model`), or
        ``None`` for the shipped default model (GFN2-xTB quality, H C N O F S Cl; see ``load_default_model``).

    Examples
    --------
    >>> potential = TensorNetPotential("model.pt")                          # doctest: +SKIP
    >>> system = potential.createMixedSystem(pdb.topology, mm_system, ligand_atoms)  # doctest: +SKIP
    """

    def __init__(self, model: Union[TensorNet, str, Path, None] = None):
        if model is None:
            from ..io.checkpoint import load_default_model

            model = load_default_model()
        if isinstance(model, (str, Path)):
            from ..io.checkpoint import load_model

            model = load_model(model)
        if not isinstance(model, TensorNet):
            raise TypeError(f"model must be a TensorNet or a checkpoint path; got {type(model).__name__}.")
        self.model = model

    @staticmethod
    def _atomic_numbers(topology: app.Topology, atoms: List[int], system: Optional[openmm.System] = None
                        ) -> List[int]:
        topology_atoms = list(topology.atoms())
        numbers = []
        for index in atoms:
            atom = topology_atoms[index]
            if system is not None and system.isVirtualSite(index):
                raise ValueError(f"particle {index} ({atom.name} in residue {atom.residue.name} {atom.residue.id}) is "
                                 "a virtual site; leave it out of atoms. Virtual sites built from region atoms are "
                                 "handled with the region automatically.")
            if atom.element is None:
                raise ValueError(f"atom {index} ({atom.name} in residue {atom.residue.name} {atom.residue.id}) has no "
                                 "element (an extra particle?); it cannot be in the ML region.")
            numbers.append(atom.element.atomic_number)
        return numbers

    def createSystem(self, topology: app.Topology, removeCMMotion: bool = True, charge: float = 0.0,
                     cudaGraphs: bool = False, neighborCapacity: Optional[int] = None, backend: str = "TorchForce",
                     torchCompile: bool = False) -> openmm.System:
        """A System in which TensorNet describes every atom (periodic when the topology has a box).

        ``charge`` is the total charge of the system (e). ``cudaGraphs`` sets openmm-torch's CUDA-graph property
        and sizes a neighbour capacity from the box's density (``neighborCapacity`` overrides it); see
        :func:`openmm_tensornet.create_torch_force`. ``backend``: ``"TorchForce"`` (openmm-torch, TorchScript; the
        default) or ``"PythonForce"`` (``openmm.PythonForce``, no TorchScript; ``torchCompile=True`` runs it through
        ``torch.compile``); see :mod:`openmm_tensornet.openmm.python_force`.
        """
        system = openmm.System()
        atoms = list(topology.atoms())
        if len(atoms) == 0:
            raise ValueError("the topology has no atoms.")
        for atom in atoms:
            if atom.element is None:
                raise ValueError(f"atom {atom.index} ({atom.name}) has no element; TensorNet needs real atoms.")
            system.addParticle(atom.element.mass)
        box = topology.getPeriodicBoxVectors()
        periodic = box is not None
        if periodic:
            system.setDefaultPeriodicBoxVectors(*box)
        numbers = self._atomic_numbers(topology, list(range(len(atoms))))
        spec = ForceSpec.of(numbers, None, charge, periodic=periodic, neighbor_capacity=neighborCapacity,
                            box_vectors=box)
        system.addForce(_make_force(backend, torchCompile, cudaGraphs, self.model, spec))
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
        cudaGraphs: bool = False,
        neighborCapacity: Optional[int] = None,
        backend: str = "TorchForce",
        torchCompile: bool = False,
        regionCharges: Optional[Sequence[float]] = None,
    ) -> openmm.System:
        """A copy of the MM ``system`` in which TensorNet describes the interactions *within* ``atoms``.

        Mechanical embedding: MM bonds, angles, torsions and CMAP terms whose atoms all lie in the region are removed,
        nonbonded pairs inside the region are excluded (zeroed exceptions / exclusions), and the interactions between
        the region and the rest keep their MM Lennard-Jones and Coulomb parameters. Constraints between region atoms
        are removed when ``removeConstraints`` (use a 1 fs or 0.5 fs time step then). ``charge`` is the total charge
        of the region (e). The result does not depend on the order of ``atoms``. The region is evaluated as one
        molecule, never against its own periodic images.

        ``interpolate=True`` adds the global parameter ``lambda_interpolate`` (default 1): 0 is the MM system
        exactly, 1 the ML/MM system above, linear in between, with ``dE/dlambda_interpolate`` available from
        ``State.getEnergyParameterDerivatives()`` (see :mod:`openmm_tensornet.openmm.interpolation`).

        ``backend`` and ``torchCompile`` as in :meth:`createSystem` (with ``"PythonForce"``, ``lambda_interpolate``
        still scales the ML energy but ``dE/dlambda_interpolate`` is not available).

        ``regionCharges`` (e, one per atom in the order of ``atoms``, summing to ``charge``) replace the region's MM
        charges in the region-MM Coulomb interactions, for example the model's own charges from
        :meth:`predictCharges` (tensornet2 models). Not with ``interpolate``, whose end state 0 is the MM system.
        """
        _check_backend(backend, torchCompile, cudaGraphs)
        if regionCharges is not None and interpolate:
            raise ValueError("regionCharges cannot be combined with interpolate=True: lambda_interpolate = 0 must be "
                             "the MM system exactly. Set the charges in the MM system before creating the mixed one.")
        region = _region(atoms, system.getNumParticles())
        if topology.getNumAtoms() != system.getNumParticles():
            raise ValueError(f"the topology has {topology.getNumAtoms()} atoms but the system "
                             f"{system.getNumParticles()} particles; they must describe the same system.")
        numbers = self._atomic_numbers(topology, region, system)
        # Virtual sites built only from region atoms (e.g. TIP4P M sites) belong to the region's MM interactions.
        inside = set(region) | _virtual_sites_of(system, set(region))
        for force in system.getForces():
            _check_supported(force, inside)
        mixed = openmm.XmlSerializer.clone(system)
        if regionCharges is not None:
            set_region_charges(mixed, list(atoms), regionCharges, charge)
        if interpolate:
            for force in subtraction_forces(system, sorted(inside)):
                mixed.addForce(force)
        else:
            for force in mixed.getForces():
                _embed(force, inside)
        if removeConstraints:
            _remove_constraints(mixed, system, inside, interpolate)
        mixed.addForce(_region_bonds(region, system.usesPeriodicBoundaryConditions()))
        spec = ForceSpec.of(numbers, region, charge, uses_box=system.usesPeriodicBoundaryConditions(),
                            force_group=forceGroup, num_particles=system.getNumParticles(),
                            neighbor_capacity=neighborCapacity, global_parameter=PARAMETER if interpolate else None,
                            bonds=topology_bonds(topology, region))
        mixed.addForce(_make_force(backend, torchCompile, cudaGraphs, self.model, spec))
        return mixed


    def predictCharges(self, topology: app.Topology, positions, atoms: Optional[Iterable[int]] = None,
                       charge: float = 0.0) -> List[float]:
        """The atomic charges (e) the model predicts for ``atoms`` (default: all) at ``positions`` (all atoms of
        the topology, nm or a Quantity), as one molecule of total charge ``charge``; for ``regionCharges``."""
        indices = list(range(topology.getNumAtoms())) if atoms is None else list(atoms)
        _region(indices, topology.getNumAtoms())  # integers, no duplicates, in range
        if unit.is_quantity(positions):
            positions = positions.value_in_unit(unit.nanometer)
        coordinates = np.asarray(positions, dtype=np.float64)
        if coordinates.shape != (topology.getNumAtoms(), 3):
            raise ValueError(f"positions must hold all {topology.getNumAtoms()} atoms of the topology (nm); got shape "
                             f"{list(coordinates.shape)}.")
        return predicted_charges(self.model, self._atomic_numbers(topology, indices), coordinates[indices], charge)


BACKENDS = ("TorchForce", "PythonForce")


def _check_backend(backend: str, torch_compile: bool, cuda_graphs: bool) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    if backend == "TorchForce" and torch_compile:
        raise ValueError("torchCompile applies to backend='PythonForce'; the TorchForce backend runs TorchScript.")
    if backend == "PythonForce" and cuda_graphs:
        raise ValueError("cudaGraphs needs backend='TorchForce' (openmm-torch's C++ CUDA graphs).")


def _make_force(backend: str, torch_compile: bool, cuda_graphs: bool, model: TensorNet, spec: ForceSpec
                ) -> openmm.Force:
    """The ML force of ``spec`` with the chosen backend."""
    _check_backend(backend, torch_compile, cuda_graphs)
    if backend == "TorchForce":
        return torch_force(model, spec, cuda_graphs)
    from .python_force import python_force

    return python_force(model, spec, torch_compile)


def _region(atoms: Iterable[int], num_particles: int) -> List[int]:
    """The region as sorted particle indices, with every input error named."""
    given = list(atoms)
    indices = []
    for value in given:
        try:
            indices.append(operator.index(value))
        except TypeError:
            raise TypeError(f"atoms must hold integer particle indices; got {value!r} "
                            f"({type(value).__name__}).") from None
    region = sorted(set(indices))
    if len(region) == 0:
        raise ValueError("atoms is empty: give the indices of the atoms TensorNet should describe.")
    if len(region) != len(indices):
        duplicates = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"atoms contains duplicate indices: {duplicates[:10]}.")
    if region[0] < 0 or region[-1] >= num_particles:
        raise ValueError(f"atoms must be particle indices in [0, {num_particles}); got min {region[0]}, "
                         f"max {region[-1]}.")
    return region


def _virtual_sites_of(system: openmm.System, region: set) -> set:
    """Virtual sites whose parent particles all lie in the region; a site with parents on both sides is an error."""
    sites = set()
    for index in range(system.getNumParticles()):
        if not system.isVirtualSite(index):
            continue
        site = system.getVirtualSite(index)
        parents = {site.getParticle(k) for k in range(site.getNumParticles())}
        if parents <= region:
            sites.add(index)
        elif parents & region:
            raise ValueError(f"virtual site {index} is built from particles {sorted(parents)}, some inside the ML "
                             "region and some outside; put all of them on one side.")
    return sites


def topology_bonds(topology: app.Topology, region) -> tuple:
    """The topology's bonds between two atoms of ``region`` (pairs of particle indices), along which the force
    makes the region whole in a periodic box."""
    inside = set(region)
    return tuple((bond.atom1.index, bond.atom2.index) for bond in topology.bonds()
                 if bond.atom1.index in inside and bond.atom2.index in inside and bond.atom1.index != bond.atom2.index)


def _region_bonds(region: List[int], periodic: bool) -> openmm.CustomBondForce:
    """Zero-energy bonds chaining the region, so OpenMM treats it as one molecule.

    OpenMM wraps molecules, not atoms, into the periodic box. Once the region's bonds and constraints are gone, a
    region hydrogen would otherwise become a molecule of its own, be wrapped apart from its neighbours, and the
    (non-periodic) zeroed nonbonded exceptions would then see the wrong distance.
    """
    chain = openmm.CustomBondForce("0")
    chain.setName("TensorNet region (zero-energy bonds keeping it one molecule)")
    chain.setUsesPeriodicBoundaryConditions(periodic)
    for first, second in zip(region[:-1], region[1:]):
        chain.addBond(first, second, [])
    return chain


def _remove_constraints(mixed: openmm.System, system: openmm.System, inside: set, interpolate: bool) -> None:
    bonded = set()
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for k in range(force.getNumBonds()):
                i, j = force.getBondParameters(k)[:2]
                bonded.add((min(i, j), max(i, j)))
    unrestrained = []
    for index in reversed(range(mixed.getNumConstraints())):
        first, second, _ = mixed.getConstraintParameters(index)
        if first in inside and second in inside:
            mixed.removeConstraint(index)
            if (min(first, second), max(first, second)) not in bonded:
                unrestrained.append((first, second))
    if interpolate and unrestrained:
        warnings.warn(
            f"{len(unrestrained)} constraints inside the ML region were removed (e.g. atoms {unrestrained[0]}) and "
            "the MM system has no bond term for them, so at lambda_interpolate < 1 those bonds are held only by the "
            "ML fraction of the energy. Build the MM system with flexibleConstraints=True, or pass "
            "removeConstraints=False.", UserWarning, stacklevel=3)


def _check_supported(force: openmm.Force, inside: set) -> None:
    """Refuse forces that cannot be split into ML and MM parts (before anything is built)."""
    name = type(force).__name__
    if name in _BONDED_ZEROED or name in _LEFT_ALONE or name in (
            "CMAPTorsionForce", "NonbondedForce", "CustomNonbondedForce"):
        return
    if name in ("GBSAOBCForce", "CustomGBForce", "AmoebaMultipoleForce"):
        raise ValueError(f"{name} (implicit solvent / polarisable) cannot be split into ML and MM parts; use explicit "
                         "solvent or a pure ML system.")
    _reject_unknown(force, name, inside)


def _embed(force: openmm.Force, inside: set) -> None:
    """Remove the region's internal interactions from one MM force, in place."""
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
        # Point the region's CMAP terms at an all-zero map: the force keeps its place, name and group.
        zero_map = None
        for k in range(force.getNumTorsions()):
            parameters = force.getTorsionParameters(k)
            if set(parameters[1:]) <= inside:
                if zero_map is None:
                    zero_map = force.addMap(2, [0.0] * 4)
                force.setTorsionParameters(k, zero_map, *parameters[1:])
    elif name == "NonbondedForce":
        region = sorted(inside)
        for a, i in enumerate(region):
            for j in region[a + 1:]:
                force.addException(i, j, 0.0, 1.0, 0.0, True)
        # Parameter offsets on those exceptions would bring their interactions back: zero them.
        for k in range(force.getNumExceptionParameterOffsets()):
            parameter, exception, _, _, _ = force.getExceptionParameterOffset(k)
            i, j = force.getExceptionParameters(exception)[:2]
            if i in inside and j in inside:
                force.setExceptionParameterOffset(k, parameter, exception, 0.0, 0.0, 0.0)
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
    if name == "Force":  # a force SWIG cannot name: a plugin's, e.g. a TorchForce already in the system
        name = "A plugin force (e.g. a TorchForce)"
        raise ValueError(f"{name} is in the MM system; createMixedSystem needs the plain MM system (build the mixed "
                         "system once, from the MM system).")
    raise ValueError(f"{name} is not supported in a mixed ML/MM system; open an issue with your use case.")
