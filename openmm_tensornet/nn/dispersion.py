"""Grimme's D2 dispersion as torchmd-net's ``D2`` prior: ``-s6 sum_{i<j} C6_ij / r^6 f_damp(r)`` within a cutoff,
with the C6 coefficients (J mol^-1 nm^6) and van der Waals radii (nm) the checkpoint carries."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..ops.neighbors import neighbor_pairs
from .repulsion import split_to_atoms

AVOGADRO = 6.02214076e23


class D2Prior(nn.Module):
    """Per-atom D2 energies in the data's units (``distance_scale`` m and ``energy_scale`` J per unit), on pairs
    within ``cutoff_distance`` (data units) without periodic images, as torchmd-net evaluates it. ``Z_map[t]`` is
    the atomic number of atom type ``t``; ``C_6`` and ``R_r`` are indexed by atomic number."""

    def __init__(self, cutoff_distance: float, distance_scale: float, energy_scale: float, num_types: int,
                 num_elements: int, dtype: torch.dtype):
        super().__init__()
        self.cutoff_distance = float(cutoff_distance)
        self.distance_scale = float(distance_scale)
        self.energy_scale = float(energy_scale)
        # Filled from the checkpoint (torchmd-net stores its tables with the weights).
        self.register_buffer("Z_map", torch.zeros(num_types, dtype=torch.long))
        self.register_buffer("C_6", torch.zeros(num_elements, dtype=dtype))
        self.register_buffer("R_r", torch.zeros(num_elements, dtype=dtype))
        self.damping = 20.0
        self.s6 = 1.0
        self.molar_energy_scale = self.energy_scale * AVOGADRO  # J/mol per data unit

    def forward(self, z: Tensor, pos: Tensor, box: Optional[Tensor], batch: Tensor) -> Tensor:
        found = neighbor_pairs(pos, self.cutoff_distance, None, batch, half=True, check_inputs=False)
        pairs = found.indices
        r = found.distances * (self.distance_scale * 1.0e9)  # nm
        numbers = self.Z_map[z]
        na, nb = numbers.index_select(0, pairs[0]), numbers.index_select(0, pairs[1])
        c6 = torch.sqrt(self.C_6[na] * self.C_6[nb])
        radius = self.R_r[na] + self.R_r[nb]
        damping = 1.0 / (1.0 + torch.exp(-self.damping * (r / radius - 1.0)))
        energy = -self.s6 * c6 / r ** 6 * damping / self.molar_energy_scale
        return split_to_atoms(energy, pairs, z.shape[0])
