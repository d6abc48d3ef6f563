"""TorchScript export of a TensorNet model into an OpenMM force (openmm-torch ``TorchForce``).

The exported module takes what ``TorchForce`` passes — the positions of *all* particles of the System in nm and,
when periodic, the box vectors in nm — selects the ML atoms, converts to the model's units, evaluates TensorNet with
the compiled neighbour list, and returns the energy in kJ/mol. Forces come from openmm-torch's autograd.

Two geometries:

* ``"periodic"``: the ML atoms fill a periodic system (a pure-ML water box); pairs use the minimum image.
* ``"molecule"``: the ML atoms form a region inside a larger (possibly periodic) MM system, e.g. a ligand. The region
  is made whole around its first atom by the minimum image and then evaluated *without* periodicity, so it never
  interacts with its own periodic images (openmm-ml issue 108). The region must span less than half the box.
"""

from __future__ import annotations

import copy
import re
from typing import List, Optional, Sequence, Set

import torch
from torch import Tensor, nn

from .model import TensorNet
from .neighbors import minimum_image
from .units import energy_to_kj_per_mol, nm_to_length


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

    Build it with :func:`export_torchscript`; the constructor arguments are documented there.
    """

    def __init__(
        self,
        model: TensorNet,
        atomic_numbers: Sequence[int],
        atoms: Optional[Sequence[int]],
        total_charge: float,
        geometry: str,
    ):
        super().__init__()
        model = copy.deepcopy(model).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
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

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tensor:
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
            # Make the region whole around its first atom; the shifts are constant, so forces are unchanged.
            pos = pos[0:1] + minimum_image(pos - pos[0:1], box)
            widths = torch.stack((box[0, 0], box[1, 1], box[2, 2]))
            if bool((torch.linalg.vector_norm(pos - pos[0:1], dim=1) > 0.5 * widths.min()).any()):
                raise RuntimeError("the ML region spans more than half of the periodic box, so it cannot be made "
                                   "whole unambiguously; use a larger box or model the whole periodic system "
                                   "with TensorNetPotential.createSystem.")
            box = None
        if not self.periodic:
            box = None
        pos = pos * self.length_scale
        if box is not None:
            box = box * self.length_scale
        output = self.model(self.z, pos, None, box, self.total_charge)
        return output.energy.sum() * self.energy_scale


def _check_selection(atomic_numbers: Sequence[int], atoms: Optional[Sequence[int]], num_particles: Optional[int],
                     model: TensorNet) -> List[int]:
    numbers = [int(z) for z in atomic_numbers]
    if len(numbers) == 0:
        raise ValueError("atomic_numbers is empty: the ML region must contain at least one atom.")
    unknown = sorted({z for z in numbers if z < 1 or z >= model.max_z})
    if unknown:
        raise ValueError(f"atomic numbers {unknown} are outside the model's range [1, {model.max_z - 1}]; this "
                         "model cannot describe those elements. Choose another ML region or model.")
    if atoms is None:
        return numbers
    selection = [int(a) for a in atoms]
    if len(selection) != len(numbers):
        raise ValueError(f"atoms has {len(selection)} entries but atomic_numbers has {len(numbers)}; give one "
                         "atomic number per ML atom, in the order of atoms.")
    if len(set(selection)) != len(selection):
        raise ValueError("atoms contains duplicate indices.")
    if min(selection) < 0 or (num_particles is not None and max(selection) >= num_particles):
        raise ValueError(f"atoms must be particle indices in [0, {num_particles}); got min {min(selection)}, "
                         f"max {max(selection)}.")
    return numbers


def export_torchscript(
    model: TensorNet,
    atomic_numbers: Sequence[int],
    atoms: Optional[Sequence[int]] = None,
    total_charge: float = 0.0,
    periodic: bool = False,
    num_particles: Optional[int] = None,
) -> torch.jit.ScriptModule:
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

    Returns
    -------
    torch.jit.ScriptModule
        ``forward(positions, boxvectors=None) -> energy`` in nm → kJ/mol. ``.save(path)`` writes a file that loads
        with ``torch.jit.load`` after ``import openmm_tensornet``.
    """
    _check_selection(atomic_numbers, atoms, num_particles, model)
    geometry = "periodic" if periodic else ("molecule" if atoms is not None else "none")
    return torch.jit.script(TorchForceModule(model, atomic_numbers, atoms, total_charge, geometry))


def create_torch_force(
    model: TensorNet,
    atomic_numbers: Sequence[int],
    atoms: Optional[Sequence[int]] = None,
    total_charge: float = 0.0,
    periodic: bool = False,
    uses_box: Optional[bool] = None,
    force_group: int = 0,
    num_particles: Optional[int] = None,
):
    """An ``openmmtorch.TorchForce`` evaluating ``model`` on the ML atoms (see :func:`export_torchscript`).

    ``uses_box`` (default: ``periodic``) makes OpenMM pass the box to the module; set it for an ML region in a
    periodic MM system. The model is embedded in the force (and in the System XML), so no file must be kept.
    """
    import openmmtorch

    if not 0 <= force_group <= 31:
        raise ValueError(f"force_group must be in [0, 31]; got {force_group}.")
    module = export_torchscript(model, atomic_numbers, atoms, total_charge, periodic, num_particles)
    force = openmmtorch.TorchForce(module)
    force.setUsesPeriodicBoundaryConditions(bool(periodic if uses_box is None else uses_box))
    force.setForceGroup(force_group)
    return force
