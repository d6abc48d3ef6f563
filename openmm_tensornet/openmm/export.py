"""TorchScript export of a TensorNet model into an OpenMM force (openmm-torch ``TorchForce``).

The exported module takes what ``TorchForce`` passes — the positions of *all* particles of the System in nm and,
when periodic, the box vectors in nm — selects the ML atoms, converts to the model's units, evaluates TensorNet with
the compiled neighbour list, and returns the energy in kJ/mol. Forces come from openmm-torch's autograd.

Two geometries:

* ``"periodic"``: the ML atoms fill a periodic system (a pure-ML water box); pairs use the minimum image.
* ``"molecule"``: the ML atoms form a region inside a larger (possibly periodic) MM system, e.g. a ligand. The region
  is made whole along its bonds (:mod:`.region_tree`: each atom at the nearest image of its bonded parent, so a
  molecule of any length) and then evaluated *without* periodicity, so it never interacts with its own periodic
  images (openmm-ml issue 108). Parts no bond joins are placed at the nearest image of the first atom; a region of
  several parts must span less than half the box.
"""

from __future__ import annotations

import copy
import re
from typing import List, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor, nn

from ..nn.model import TensorNet
from ..ops.neighbors import minimum_image
from ..units import energy_to_kj_per_mol, nm_to_length
from .force_spec import ForceSpec, estimate_neighbor_capacity
from .openmmtorch_module import import_openmmtorch
from .region_tree import region_tree

__all__ = ["TorchForceModule", "create_torch_force", "ensure_torch_plugins", "estimate_neighbor_capacity",
           "export_torchscript", "force_module", "torch_force"]

_reloaded_plugins: Set[str] = set()


def ensure_torch_plugins() -> None:
    """Load openmm-torch's platform plugins if ``import openmm`` came before ``import torch``.

    OpenMM loads its plugins when it is imported; openmm-torch's need libtorch's libraries, which are only found once
    torch is imported, so in a script that imports openmm first every Context with a TorchForce fails with
    "Specified a Platform for a Context which does not support all required kernels". Called on
    ``import openmm_tensornet``.
    """
    import openmm

    for failure in openmm.Platform.getPluginLoadFailures():
        found = re.match(r"Error loading library (\S*OpenMMTorch\w*\.so)", failure)
        if found is None or found.group(1) in _reloaded_plugins:
            continue
        _reloaded_plugins.add(found.group(1))
        try:
            openmm.Platform.loadPluginLibrary(found.group(1))
        except Exception:  # noqa: BLE001 - e.g. the OpenCL variant without an OpenCL driver: not needed here
            pass


class TorchForceModule(nn.Module):
    """``forward(positions [N_all, 3] nm, boxvectors [3, 3] nm or None) -> energy (kJ/mol, scalar)``.

    Scaled by a global parameter (``scaled="nobox"`` / ``"box"``): ``forward(positions, parameter)`` /
    ``forward(positions, boxvectors, parameter) -> parameter * energy``. Build it with :func:`export_torchscript`;
    the constructor arguments are documented there.
    """

    def __init__(
        self,
        model: TensorNet,
        atomic_numbers: Sequence[int],
        atoms: Optional[Sequence[int]],
        total_charge: float,
        geometry: str,
        neighbor_capacity: Optional[int] = None,
        static_shapes: bool = False,
        scaled: Optional[str] = None,
        bonds: Sequence[Tuple[int, int]] = (),
    ):
        super().__init__()
        if scaled not in (None, "box", "nobox"):
            raise ValueError(f"scaled must be None, 'box' or 'nobox'; got {scaled!r}.")
        self.scaled = scaled is not None
        self.box_input = scaled == "box"
        model = copy.deepcopy(model).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.set_neighbor_capacity(neighbor_capacity, static_shapes, None if atoms is None else list(atoms))
        model.freeze_for_inference(torch.as_tensor(list(atomic_numbers), dtype=torch.long))
        # Errors come back as the model's status and are raised below, in forward itself: with openmm-torch 1.5,
        # libtorch crashes while reporting an exception raised in code inlined from a submodule.
        model.defer_errors = True
        self.model = model
        dtype = model.energy_mean.dtype
        self.register_buffer("z", torch.as_tensor(list(atomic_numbers), dtype=torch.long))
        selection = list(range(len(atomic_numbers))) if atoms is None else list(atoms)
        self.register_buffer("atoms", torch.as_tensor(selection, dtype=torch.long))
        self.select_atoms = atoms is not None
        self.register_buffer("total_charge", torch.tensor([float(total_charge)], dtype=dtype))
        self.length_scale = nm_to_length(model.length_unit)
        self.energy_scale = energy_to_kj_per_mol(model.energy_unit)
        self.periodic = geometry == "periodic"
        self.whole_molecule = geometry == "molecule"
        # bonds: pairs of positions within the region (0-based), the edges along which it is made whole
        tree = region_tree(len(selection), bonds)
        self.register_buffer("tree_parent", torch.as_tensor(tree.parent, dtype=torch.long))
        self.register_buffer("tree_jumps", torch.as_tensor(tree.jumps, dtype=torch.long).reshape(-1, len(selection)))
        self.parts = len(tree.anchors)

    def forward(self, positions: Tensor, second: Optional[Tensor] = None, third: Optional[Tensor] = None) -> Tensor:
        # One forward for every TorchForce layout (openmm-torch passes the box, if any, then global parameters):
        # (positions, box?) or, scaled by a global parameter, (positions, parameter) / (positions, box, parameter).
        # (All in one method on purpose: with openmm-torch 1.5, an error raised one method call deeper crashes
        # libtorch's error reporting in the second Context of a process.)
        boxvectors = second
        scale: Optional[Tensor] = None
        if self.scaled:
            if self.box_input:
                scale = third
            else:
                boxvectors = None
                scale = second
        dtype = self.total_charge.dtype
        pos = positions.to(dtype)
        if self.select_atoms:
            pos = pos.index_select(0, self.atoms)
        box: Optional[Tensor] = None
        if boxvectors is not None:
            box = boxvectors.to(dtype)
        if self.periodic and box is None:
            raise RuntimeError("this TensorNet force is periodic but received no box vectors; call "
                               "force.setUsesPeriodicBoundaryConditions(True) and give the System a periodic box.")
        if self.whole_molecule and box is not None and pos.shape[0] > 1:
            # Make the region whole along its bond tree: each atom's offset from atom 0 is the sum of the
            # minimum-image vectors to its parent along its path (pointer jumping). The shifts are whole box
            # vectors, constant between steps, so forces are unchanged.
            offset = minimum_image(pos - pos.index_select(0, self.tree_parent), box)
            for k in range(self.tree_jumps.shape[0]):
                offset = offset + offset.index_select(0, self.tree_jumps[k])
            pos = pos[0:1] + offset
            if self.parts > 1:
                # Parts no bond joins hang from atom 0 by the nearest image: right when the whole region spans less
                # than half the box, which is checked (a part placed on the wrong side usually shows up as more).
                fractional = pos @ torch.linalg.inv(box)
                extent = fractional.max(dim=0).values - fractional.min(dim=0).values
                if bool((extent >= 0.5).any()):
                    spans: List[float] = extent.tolist()
                    raise RuntimeError("the ML region is " + str(self.parts) + " parts that no bond joins, and it "
                                       "spans " + str(spans) + " of the periodic box along its three box vectors; "
                                       "each part is placed at the nearest image of the region's first atom, which "
                                       "is unambiguous only when the region spans less than half (0.5) along each. "
                                       "If it is one molecule, give its bonds (in the topology, or bonds= when "
                                       "creating the force); if it is several molecules (ligand + waters or ions), "
                                       "use a larger box or a smaller region, or model the whole periodic system "
                                       "with TensorNetPotential.createSystem.")
            box = None
        if not self.periodic:
            box = None
        pos = pos * self.length_scale
        if box is not None:
            box = box * self.length_scale
        self.model.error = ""
        output = self.model(self.z, pos, None, box, self.total_charge)
        if self.model.error != "":
            raise RuntimeError(self.model.error)
        energy = output.energy.sum() * self.energy_scale
        if scale is not None:
            energy = scale.to(energy.dtype) * energy
        return energy


def export_torchscript(model: TensorNet, atomic_numbers: Sequence[int], atoms: Optional[Sequence[int]] = None,
                       total_charge: float = 0.0, periodic: bool = False, num_particles: Optional[int] = None,
                       neighbor_capacity: Optional[int] = None, static_shapes: bool = False,
                       scaled: Optional[str] = None,
                       bonds: Sequence[Tuple[int, int]] = ()) -> torch.jit.ScriptModule:
    """Script a model for OpenMM's ``TorchForce``.

    Parameters
    ----------
    model : TensorNet
        The model (its ``energy_unit`` and ``length_unit`` say how to convert to kJ/mol and nm).
    atomic_numbers : sequence of int
        Atomic number of every ML atom (in the order of ``atoms``).
    atoms : sequence of int, optional
        Indices of the ML atoms among the System's particles; ``None`` when the System holds only ML atoms.
    total_charge : float
        Total charge of the ML region (e).
    periodic : bool
        ``True`` when the ML atoms *are* the periodic system (minimum-image pairs). For a region inside a periodic
        MM system leave it ``False``: the region is then made whole and evaluated without periodic images, and the
        TorchForce still needs ``setUsesPeriodicBoundaryConditions(True)`` so that it receives the box.
    num_particles : int, optional
        Number of particles in the System, to check ``atoms``.
    neighbor_capacity : int, optional
        Most ordered neighbour pairs (see :meth:`TensorNet.set_neighbor_capacity`); ``None``: no bound.
    static_shapes : bool
        Keep the pair tensors at ``neighbor_capacity`` rows (for CUDA graphs).
    scaled : {None, "box", "nobox"}
        ``None``: ``forward(positions, boxvectors=None) -> E``. Otherwise the module takes a global parameter
        after the positions (``"nobox"``) or after positions and box (``"box"``) and returns parameter x E, as
        ``TorchForce`` calls it when the force has that global parameter.
    bonds : sequence of (int, int)
        The region's covalent bonds (pairs of particle indices), along which a region in a periodic box is made
        whole, whatever its length. Without them the region must span less than half the box.

    Returns
    -------
    torch.jit.ScriptModule
        Energies in kJ/mol from positions in nm. ``.save(path)`` writes a file that loads with ``torch.jit.load``
        after ``import openmm_tensornet`` and :func:`openmm_tensornet.load_ops`.
    """
    if static_shapes and neighbor_capacity is None:
        raise ValueError("static_shapes needs a neighbor_capacity (see estimate_neighbor_capacity).")
    spec = ForceSpec.of(atomic_numbers, atoms, total_charge, periodic=periodic, num_particles=num_particles,
                        neighbor_capacity=neighbor_capacity, bonds=tuple(bonds)).for_model(model)
    return torch.jit.script(TorchForceModule(model, spec.atomic_numbers, spec.atoms, spec.total_charge,
                                             spec.geometry, spec.neighbor_capacity, static_shapes, scaled,
                                             spec.region_bonds))


def create_torch_force(
    model: TensorNet,
    atomic_numbers: Sequence[int],
    atoms: Optional[Sequence[int]] = None,
    total_charge: float = 0.0,
    periodic: bool = False,
    uses_box: Optional[bool] = None,
    force_group: int = 0,
    num_particles: Optional[int] = None,
    cuda_graphs: bool = False,
    neighbor_capacity: Optional[int] = None,
    box_vectors=None,
    global_parameter: Optional[str] = None,
    bonds: Sequence[Tuple[int, int]] = (),
):
    """An ``openmmtorch.TorchForce`` evaluating ``model`` on the ML atoms (see :func:`export_torchscript` and
    :class:`openmm_tensornet.openmm.force_spec.ForceSpec` for the arguments).

    ``uses_box`` (default: ``periodic``) makes OpenMM pass the box to the module; set it for an ML region in a
    periodic MM system, and ``bonds`` (pairs of particle indices: the region's covalent bonds), along which the
    region is made whole whatever its length. The model is embedded in the force (and in the System XML), so no
    file must be kept.

    ``cuda_graphs=True`` sets openmm-torch's ``useCUDAGraphs`` property (used by the CUDA platform, ignored by the
    others) and gives the module static shapes: a neighbour capacity, by default sized from the density
    (:func:`estimate_neighbor_capacity`; ``box_vectors``, in nm, give the density of a periodic ML system).
    ``neighbor_capacity`` bounds the list without CUDA graphs too. More pairs than the capacity is an error naming
    the most crowded atom, never a silently shortened list.

    ``global_parameter`` (e.g. ``"lambda_interpolate"``): the force's energy is that parameter x E_ML (default 1),
    and its derivative dE/dparameter = E_ML is available from ``State.getEnergyParameterDerivatives()``.
    """
    spec = ForceSpec.of(atomic_numbers, atoms, total_charge, periodic=periodic, uses_box=uses_box,
                        force_group=force_group, num_particles=num_particles, neighbor_capacity=neighbor_capacity,
                        box_vectors=box_vectors, global_parameter=global_parameter, bonds=tuple(bonds))
    return torch_force(model, spec, cuda_graphs)


def torch_force(model: TensorNet, spec: ForceSpec, cuda_graphs: bool = False):
    """The ``openmmtorch.TorchForce`` of ``spec`` (see :func:`create_torch_force`)."""
    openmmtorch = import_openmmtorch()
    module = force_module(model, spec, cuda_graphs, "cuda_graphs")
    force = openmmtorch.TorchForce(torch.jit.script(module))
    force.setUsesPeriodicBoundaryConditions(spec.box_input)
    force.setForceGroup(spec.force_group)
    if cuda_graphs:
        force.setProperty("useCUDAGraphs", "true")
    if spec.global_parameter is not None:
        force.addGlobalParameter(spec.global_parameter, 1.0)
        force.addEnergyParameterDerivative(spec.global_parameter)
    return force


def force_module(model: TensorNet, spec: ForceSpec, static_shapes: bool, reason: str) -> TorchForceModule:
    """The (unscripted) module of an OpenMM force of either backend: ``spec`` checked against the model, with a
    neighbour capacity sized for ``static_shapes`` when none is given (``reason`` names the option that asked for
    static shapes, for the error message)."""
    spec = spec.for_model(model, static_shapes, reason)
    return TorchForceModule(model, spec.atomic_numbers, spec.atoms, spec.total_charge, spec.geometry,
                            spec.neighbor_capacity, static_shapes, spec.scaled, spec.region_bonds)
