"""Ziegler-Biersack-Littmark screened nuclear repulsion, in the two forms torchmd-net uses: TensorNet2's
``repulsion`` term on the model's own pairs (eV, Å), and the ``ZBL`` prior with its own cutoff and units."""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from ..ops.neighbors import neighbor_pairs
from ..ops.radial import CosineCutoff

BOHR_ANGSTROM = 0.529177210903  # Bohr radius (Å), CODATA 2018
ANGSTROM_TO_BOHR = 1.8897261258369282  # as torchmd-net's RepulsionZBL takes it
COULOMB_EV_ANGSTROM = 14.399645  # e^2 / (4 pi eps0) in eV Å
COULOMB_J_M = 2.30707755e-28  # e^2 / (4 pi eps0) in J m


def zbl_screening(x: Tensor) -> Tensor:
    """The universal ZBL screening function of the reduced distance ``x = r / a``."""
    return (0.1818 * torch.exp(-3.2 * x) + 0.5099 * torch.exp(-0.9423 * x) + 0.2802 * torch.exp(-0.4029 * x)
            + 0.02817 * torch.exp(-0.2016 * x))


def split_to_atoms(pair_energy: Tensor, pairs: Tensor, num_atoms: int) -> Tensor:
    """Per-atom energies ``[N]``: half of each pair's energy to each of its atoms."""
    half = 0.5 * pair_energy
    atom_energy = torch.zeros(num_atoms, dtype=pair_energy.dtype, device=pair_energy.device)
    return atom_energy.index_add(0, pairs[0], half).index_add(0, pairs[1], half)


class ZBLRepulsion(nn.Module):
    """TensorNet2's short-range repulsion (eV, Å) on the model's own pairs: ZBL with the screening length
    ``0.4543 a0 / (Z_a^0.3 + Z_b^0.3)``, switched off by a degree-6 polynomial envelope at the sum of the two
    covalent radii. The tables are buffers, so a checkpoint carries the ones it was trained with."""

    def __init__(self, max_z: int, dtype: torch.dtype):
        super().__init__()
        from ase.data import covalent_radii

        num_elements = min(int(max_z), len(covalent_radii))
        z = torch.arange(num_elements, dtype=torch.float64)
        z[0] = 1.0  # index 0 is never an atom; avoids 0 ** 0.3
        radius = torch.tensor(covalent_radii[:num_elements], dtype=torch.float64)
        self.register_buffer("z_pow", (z ** 0.3).to(dtype))
        self.register_buffer("z_outer", torch.outer(z, z).to(dtype))
        self.register_buffer("cutoff_ab", (radius.unsqueeze(0) + radius.unsqueeze(1)).to(dtype))
        self.num_elements = num_elements
        self.screening_prefactor = 0.4543 / ANGSTROM_TO_BOHR  # Å (TorchScript reads attributes, not globals)
        self.coulomb = COULOMB_EV_ANGSTROM

    def forward(self, z: Tensor, pairs: Tensor, distances: Tensor, valid: Tensor) -> Tensor:
        """Per-atom energies ``[N]`` of the half list ``pairs [2, P]`` (``valid [P]``: not padding)."""
        r = torch.where(valid, distances, torch.ones_like(distances))
        za = z.index_select(0, pairs[0]).clamp(max=self.num_elements - 1)
        zb = z.index_select(0, pairs[1]).clamp(max=self.num_elements - 1)
        screening_length = self.screening_prefactor / (self.z_pow[za] + self.z_pow[zb])
        phi = zbl_screening(r / screening_length)
        cutoff = self.cutoff_ab[za, zb]
        p = 6.0
        rr = (r / cutoff).clamp(max=1.0)
        envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * rr ** p + p * (p + 2.0) * rr ** (p + 1.0)
                    - p * (p + 1.0) / 2.0 * rr ** (p + 2.0)) * (r < cutoff).to(r.dtype)
        energy = self.coulomb * self.z_outer[za, zb] / r * phi * envelope * valid.to(r.dtype)
        return split_to_atoms(energy, pairs, z.shape[0])


class ZBLPrior(nn.Module):
    """torchmd-net's ``ZBL`` prior: ZBL repulsion with the screening length ``0.8854 a0 / (Z_a^0.23 + Z_b^0.23)``
    times a cosine cutoff at ``cutoff_distance``, on its own pairs, in the data's units (``distance_scale`` m and
    ``energy_scale`` J per unit). ``atomic_number[t]`` is the atomic number of atom type ``t``."""

    def __init__(self, cutoff_distance: float, atomic_number: List[int], distance_scale: float, energy_scale: float):
        super().__init__()
        self.register_buffer("atomic_number", torch.as_tensor(atomic_number, dtype=torch.long))
        self.cutoff_distance = float(cutoff_distance)
        self.cutoff = CosineCutoff(0.0, float(cutoff_distance))
        self.distance_scale = float(distance_scale)
        self.energy_scale = float(energy_scale)
        self.screening_prefactor = 0.8854 * BOHR_ANGSTROM * 1.0e-10  # m
        self.energy_factor = COULOMB_J_M / self.energy_scale / self.distance_scale

    def forward(self, z: Tensor, pos: Tensor, box: Optional[Tensor], batch: Tensor) -> Tensor:
        """Per-atom energies ``[N]`` in the data's energy unit."""
        found = neighbor_pairs(pos, self.cutoff_distance, box, batch, half=True, check_inputs=False)
        pairs, distances = found.indices, found.distances
        numbers = self.atomic_number[z].to(pos.dtype)
        za, zb = numbers.index_select(0, pairs[0]), numbers.index_select(0, pairs[1])
        a = self.screening_prefactor / (za ** 0.23 + zb ** 0.23)
        f = zbl_screening(distances * self.distance_scale / a) * self.cutoff(distances)
        energy = self.energy_factor * f * za * zb / distances
        return split_to_atoms(energy, pairs, z.shape[0])
