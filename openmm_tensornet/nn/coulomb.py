"""Coulomb energy of predicted partial charges (torchmd-net's ``ScalarPlusWeightedCoulomb`` output, after AIMNet2):
damped at short range, either between all pairs of a molecule or within a cutoff with a reaction field."""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from ..ops.neighbors import neighbor_pairs

# Hartree (eV) and Bohr radius (Å) as torchmd-net and AIMNet2 take them (ase.units, CODATA 2014).
HARTREE_EV = 27.211386024367243
BOHR_ANGSTROM = 0.5291772105638411
DAMPING_RADIUS = 4.6  # Å: the Coulomb term is switched on smoothly over this range (AIMNet2's value)


def short_range_switch(distances: Tensor, radius: float) -> Tensor:
    """``exp(-1 / (1 - (d / r)^2)) / exp(-1)``: 1 at ``d = 0``, smoothly 0 from ``d = r`` on."""
    x = (distances / radius).clamp(0.0, 1.0 - 1.0e-6)
    return torch.exp(-1.0 / (1.0 - x * x)) / 0.36787944117144233


class PredictedChargeCoulomb(nn.Module):
    """Per-atom Coulomb energies (eV, positions in Å) of the charge channels ``[N, C]`` of a charge-equilibrating
    TensorNet, as the weighted mean over channels (weights ``channel_weights``, one list of ``q`` per prediction).

    ``E_ij = k/2 (1 - s(d_ij)) q_i q_j g(d_ij)`` is added to both atoms of each pair ``i < j``, with
    ``g = 1/d`` for all pairs of a molecule (``cutoff`` None; no periodic box) or the reaction field
    ``g = 1/d + k_rf d^2 - c_rf`` within ``cutoff`` (dielectric ``epsilon``; periodic boxes allowed).
    """

    def __init__(self, channel_weights: List[List[float]], cutoff: Optional[float], epsilon: float,
                 dtype: torch.dtype):
        super().__init__()
        flat = [float(w) for row in channel_weights for w in row]
        self.register_buffer("qweights", torch.tensor(flat, dtype=dtype))
        self.cutoff = -1.0 if cutoff is None else float(cutoff)
        self.epsilon = float(epsilon)
        self.factor = 0.5 * HARTREE_EV * BOHR_ANGSTROM
        self.damping_radius = DAMPING_RADIUS

    def forward(self, charges: Tensor, pos: Tensor, box: Optional[Tensor], batch: Tensor) -> Tensor:
        weighted = charges * (self.qweights / self.qweights.sum()).unsqueeze(0)  # the mean over channels is bilinear
        if self.cutoff < 0.0:
            if box is not None:
                raise ValueError("this model's Coulomb term sums over all pairs of a molecule (coulomb_cutoff = "
                                 "None), which is not defined in a periodic box; evaluate it without a box, or "
                                 "use a model trained with a coulomb_cutoff (reaction field).")
            return self._all_pairs(weighted, charges, pos, batch)
        found = neighbor_pairs(pos, self.cutoff, box, batch, half=True, check_inputs=False)
        pairs, distances = found.indices, found.distances
        k_rf = (self.epsilon - 1.0) / (2.0 * self.epsilon + 1.0) / self.cutoff ** 3
        c_rf = 3.0 * self.epsilon / (2.0 * self.epsilon + 1.0) / self.cutoff
        kernel = 1.0 / distances + k_rf * distances * distances - c_rf
        damping = 1.0 - short_range_switch(distances, self.damping_radius)
        product = (weighted.index_select(0, pairs[0]) * charges.index_select(0, pairs[1])).sum(-1)
        energy = self.factor * damping * kernel * product
        atom_energy = torch.zeros(charges.shape[0], dtype=energy.dtype, device=energy.device)
        return atom_energy.index_add(0, pairs[0], energy).index_add(0, pairs[1], energy)

    def _all_pairs(self, weighted: Tensor, charges: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        """Every pair of a molecule as dense ``[N, N]`` matrices (the charge products as one matrix product):
        each atom gets the energies of all its pairs."""
        num_atoms = pos.shape[0]
        other = (batch.unsqueeze(0) != batch.unsqueeze(1)) | torch.eye(num_atoms, dtype=torch.bool, device=pos.device)
        vectors = pos.unsqueeze(1) - pos.unsqueeze(0)
        squared = torch.where(other, torch.ones_like(vectors[..., 0]), (vectors * vectors).sum(-1))
        distances = torch.sqrt(squared)  # 1 where the pair does not count (no NaN in the gradient)
        damping = 1.0 - short_range_switch(distances, self.damping_radius)
        energy = self.factor * damping / distances * (weighted @ charges.t())
        return torch.where(other, torch.zeros_like(energy), energy).sum(1)

    def atomic_charges(self, charges: Tensor) -> Tensor:
        """``[N]`` one charge per atom: the channels' mean with the Coulomb weights (it keeps the total charge)."""
        return (charges * self.qweights.unsqueeze(0)).sum(-1) / self.qweights.sum()
