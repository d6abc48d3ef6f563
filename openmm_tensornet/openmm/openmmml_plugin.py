"""openmm-ml plugin: ``MLPotential("tensornet", modelPath=...)``.

Registered through the ``openmmml.potentials`` entry point in ``pyproject.toml`` (its factory lives in
:mod:`openmm_tensornet.openmm.openmmml_entry`, see there why), so openmm-ml finds it once openmm-tensornet is installed.
``modelPath`` takes our checkpoints and torchmd-net TensorNet ``.ckpt`` files (see
:func:`openmm_tensornet.load_model`). The forces are the same TorchForces that :class:`TensorNetPotential` builds.

``createMixedSystem`` with the default ``embedding="mechanical"`` is performed by
:meth:`TensorNetPotential.createMixedSystem` itself (openmm-ml lets a potential provide an embedding by that name):
the same energies as the facade, the region never against its own images, and ``interpolate=True`` exact at
``lambda_interpolate = 0``. Link atoms (capping a region cut through covalent bonds) are not added.

Extra keyword arguments: ``charge`` (total charge of the ML atoms, e), ``cudaGraphs``, ``neighborCapacity``,
``remove_ref_energy``; ``energyUnit``/``lengthUnit`` (or openmm-ml's ``energyScale``/``lengthScale``, mapped to
the unit they stand for) and ``remove_ref_energy`` (False: total energies from a model trained with the atomic
references removed) when creating the potential.
"""

from __future__ import annotations

from typing import Iterable, List, Optional

import openmm
import openmm.app as app
from openmmml.mlpotential import MLPotentialImpl

from .openmmml_entry import TensorNetPotentialImplFactory  # noqa: F401 - the entry point's object, re-exported

_OPTIONS = ("charge", "cudaGraphs", "neighborCapacity", "backend", "torchCompile", "remove_ref_energy")


class TensorNetPotentialImpl(MLPotentialImpl):
    """A TensorNet model (our checkpoint or a torchmd-net TensorNet checkpoint) for openmm-ml."""

    def __init__(self, name: str, modelPath: Optional[str], energyUnit: Optional[str], lengthUnit: Optional[str],
                 lengthScale: Optional[float] = None, energyScale: Optional[float] = None,
                 remove_ref_energy: Optional[bool] = None):
        from ..units import units_from_scales
        from .potential import TensorNetPotential

        length_from_scale, energy_from_scale = units_from_scales(lengthScale, energyScale)
        self.load_options = dict(energy_unit=energyUnit or energy_from_scale,
                                 length_unit=lengthUnit or length_from_scale)
        self.model_path = modelPath
        self.remove_ref_energy = remove_ref_energy
        if modelPath is None:
            self.potential = TensorNetPotential(None)  # the shipped default, or a clear error
        else:
            self.potential = self._load(remove_ref_energy)
        self.name = name

    def _load(self, remove_ref_energy: Optional[bool]):
        from ..io.checkpoint import load_model
        from .potential import TensorNetPotential

        return TensorNetPotential(load_model(self.model_path, remove_ref_energy=remove_ref_energy,
                                             **self.load_options))

    def _potential(self, options: dict):
        """The potential, reloaded when createSystem asks for another ``remove_ref_energy`` (as openmm-ml's
        torchmdnet potential takes it there)."""
        wanted = options.pop("remove_ref_energy", None)
        if wanted is None or wanted == self.remove_ref_energy or self.model_path is None:
            return self.potential
        return self._load(wanted)

    def addForces(self, topology: app.Topology, system: openmm.System, atoms: Optional[Iterable[int]],
                  forceGroup: int, **args) -> None:
        from .force_spec import ForceSpec
        from .potential import _make_force, _region, topology_bonds

        options = _options(args)
        potential = self._potential(options)
        box = topology.getPeriodicBoxVectors()
        if atoms is None:
            indices: Optional[List[int]] = None
            numbers = potential._atomic_numbers(topology, list(range(topology.getNumAtoms())))
        else:
            # openmm-ml may pass a System without particles (it copies the forces afterwards): check against the
            # topology then.
            count = system.getNumParticles() or topology.getNumAtoms()
            indices = _region(atoms, count)
            numbers = potential._atomic_numbers(topology, indices)
        spec = ForceSpec.of(numbers, indices, options.get("charge", 0.0), periodic=atoms is None and box is not None,
                            uses_box=box is not None, force_group=forceGroup,
                            neighbor_capacity=options.get("neighborCapacity"), box_vectors=box,
                            bonds=() if indices is None else topology_bonds(topology, indices))
        force = _make_force(options.get("backend", "TorchForce"), options.get("torchCompile", False),
                            options.get("cudaGraphs", False), potential.model, spec)
        system.addForce(force)

    def getSupportedEmbeddings(self) -> List[str]:
        return ["mechanical"]

    def getMLLongRange(self) -> bool:
        # TensorNet is local, except tensornet2's Coulomb term between all pairs of the region
        return self.potential.model.coulomb is not None and self.potential.model.coulomb.cutoff < 0

    def createMixedSystem(self, topology: app.Topology, system: openmm.System, atoms: List[int], forceGroup: int,
                          interpolate: bool, embedding: str, returnInfo: bool = False, **args):
        options = _options(args)
        potential = self._potential(options)
        # openmm-ml removes the region's constraints itself afterwards (removeConstraints).
        mixed = potential.createMixedSystem(topology, system, atoms, removeConstraints=False,
                                                 forceGroup=forceGroup, interpolate=interpolate, **options)
        if returnInfo:
            return dict(system=mixed, topology=topology, oldToNew=list(range(topology.getNumAtoms())))
        return mixed


def _options(args: dict) -> dict:
    unknown = sorted(set(args) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected arguments {unknown} for the TensorNet potential; it takes {list(_OPTIONS)}.")
    return dict(args)
