"""openmm-ml plugin: ``MLPotential("tensornet", modelPath=...)``.

Registered through the ``openmmml.potentials`` entry point in ``pyproject.toml`` (its factory lives in
:mod:`openmm_tensornet.openmmml_entry`, see there why), so openmm-ml finds it once openmm-tensornet is installed.
``modelPath`` takes our checkpoints and torchmd-net TensorNet ``.ckpt`` files (see
:func:`openmm_tensornet.load_model`). The forces are the same TorchForces that :class:`TensorNetPotential` builds.

``createMixedSystem`` with the default ``embedding="mechanical"`` is performed by
:meth:`TensorNetPotential.createMixedSystem` itself (openmm-ml lets a potential provide an embedding by that name):
the same energies as the facade, the region never against its own images, and ``interpolate=True`` exact at
``lambda_interpolate = 0``. Link atoms (capping a region cut through covalent bonds) are not added.

Extra keyword arguments: ``charge`` (total charge of the ML atoms, e), ``cudaGraphs``, ``neighborCapacity``;
``energyUnit``/``lengthUnit`` when creating the potential override the checkpoint's units.
"""

from __future__ import annotations

from typing import Iterable, List, Optional

import openmm
import openmm.app as app
from openmmml.mlpotential import MLPotentialImpl

from .openmmml_entry import TensorNetPotentialImplFactory  # noqa: F401 - the entry point's object, re-exported

_OPTIONS = ("charge", "cudaGraphs", "neighborCapacity", "backend", "torchCompile")


class TensorNetPotentialImpl(MLPotentialImpl):
    """A TensorNet model (our checkpoint or a torchmd-net TensorNet checkpoint) for openmm-ml."""

    def __init__(self, name: str, modelPath: Optional[str], energyUnit: Optional[str], lengthUnit: Optional[str]):
        from . import TensorNetPotential, load_model

        if modelPath is None:
            self.potential = TensorNetPotential(None)  # the shipped default, or a clear error
        else:
            self.potential = TensorNetPotential(load_model(modelPath, energy_unit=energyUnit,
                                                           length_unit=lengthUnit))
        self.name = name

    def addForces(self, topology: app.Topology, system: openmm.System, atoms: Optional[Iterable[int]],
                  forceGroup: int, **args) -> None:
        from .potential import _make_force, _region

        options = _options(args)
        box = topology.getPeriodicBoxVectors()
        if atoms is None:
            indices: Optional[List[int]] = None
            numbers = self.potential._atomic_numbers(topology, list(range(topology.getNumAtoms())))
        else:
            # openmm-ml may pass a System without particles (it copies the forces afterwards): check against the
            # topology then.
            count = system.getNumParticles() or topology.getNumAtoms()
            indices = _region(atoms, count)
            numbers = self.potential._atomic_numbers(topology, indices)
        force = _make_force(
            options.get("backend", "TorchForce"), options.get("torchCompile", False), options.get("cudaGraphs", False),
            self.potential.model, numbers, indices, options.get("charge", 0.0),
            periodic=atoms is None and box is not None,
            uses_box=box is not None, force_group=forceGroup, num_particles=None,
            neighbor_capacity=options.get("neighborCapacity"), box_vectors=box)
        system.addForce(force)

    def getSupportedEmbeddings(self) -> List[str]:
        return ["mechanical"]

    def getMLLongRange(self) -> bool:
        return False  # TensorNet is local: nothing beyond its cutoff

    def createMixedSystem(self, topology: app.Topology, system: openmm.System, atoms: List[int], forceGroup: int,
                          interpolate: bool, embedding: str, returnInfo: bool = False, **args):
        options = _options(args)
        # openmm-ml removes the region's constraints itself afterwards (removeConstraints).
        mixed = self.potential.createMixedSystem(topology, system, atoms, removeConstraints=False,
                                                 forceGroup=forceGroup, interpolate=interpolate, **options)
        if returnInfo:
            return dict(system=mixed, topology=topology, oldToNew=list(range(topology.getNumAtoms())))
        return mixed


def _options(args: dict) -> dict:
    unknown = sorted(set(args) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected arguments {unknown} for the TensorNet potential; it takes {list(_OPTIONS)}.")
    return dict(args)
