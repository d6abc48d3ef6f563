"""Output heads on TensorNet's final features: energy (scalar), dipole (vector), polarisability (rank-2)."""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor, nn

from ..ops.activations import make_activation
from .embedding import scatter_sum


class MLP(nn.Module):
    """``Linear(in, hidden) -> act -> [Linear(hidden, hidden) -> act] * extra -> Linear(hidden, out)``."""

    def __init__(
        self, in_channels: int, hidden_channels: int, out_channels: int, activation: str, extra_layers: int,
        dtype: torch.dtype,
    ):
        super().__init__()
        layers: List[nn.Module] = [nn.Linear(in_channels, hidden_channels, dtype=dtype), make_activation(activation)]
        for _ in range(extra_layers):
            layers += [nn.Linear(hidden_channels, hidden_channels, dtype=dtype), make_activation(activation)]
        layers.append(nn.Linear(hidden_channels, out_channels, dtype=dtype))
        self.layers = nn.Sequential(*layers)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DipoleHead(nn.Module):
    """Molecular dipole ``mu = sum_i q_i (r_i - r_com) + sum_i p_i`` (e Å), equivariant under rotations.

    ``q_i`` are atomic charges from the invariant features, shifted equally within each molecule so that they sum
    to its total charge; ``p_i`` are atomic dipoles, a channel mix of the vector (A) part of the final tensors.
    Positions are taken relative to each molecule's centre of mass (the geometric centre when none of its elements
    has a standard mass), so the dipole of a charged molecule is defined.
    """

    def __init__(self, hidden_channels: int, activation: str, dtype: torch.dtype):
        super().__init__()
        self.charges = MLP(hidden_channels, hidden_channels // 2, 1, activation, 0, dtype)
        self.atomic_dipoles = nn.Linear(hidden_channels, 1, bias=False, dtype=dtype)

    def forward(
        self, scalars: Tensor, vectors: Tensor, pos: Tensor, batch: Tensor, counts: Tensor, masses: Tensor,
        total_charge: Tensor,
    ) -> List[Tensor]:
        num_molecules = counts.shape[0]
        charges = self.charges(scalars).squeeze(-1)
        excess = (scatter_sum(charges, batch, num_molecules) - total_charge) / counts
        charges = charges - excess[batch]
        # Weights: masses, or 1 per atom for a molecule whose elements all lack a standard mass (Z >= 117).
        massless = scatter_sum(masses, batch, num_molecules) == 0
        weights = torch.where(massless[batch], torch.ones_like(masses), masses)
        weight_sum = scatter_sum(weights, batch, num_molecules)
        centre = scatter_sum(weights.unsqueeze(-1) * pos, batch, num_molecules) / weight_sum.unsqueeze(-1)
        moments = charges.unsqueeze(-1) * (pos - centre[batch]) + self.atomic_dipoles(vectors).squeeze(-1)
        return [charges, scatter_sum(moments, batch, num_molecules)]


class PolarizabilityHead(nn.Module):
    """Molecular polarisability ``alpha = sum_i (a_i Id + s_i)`` (Å^3): symmetric, equivariant rank-2.

    ``a_i`` is an isotropic atomic term from the invariant features and ``s_i`` a channel mix of the symmetric
    traceless (S) part of the final tensors.
    """

    def __init__(self, hidden_channels: int, activation: str, dtype: torch.dtype):
        super().__init__()
        self.isotropic = MLP(hidden_channels, hidden_channels // 2, 1, activation, 0, dtype)
        self.anisotropic = nn.Linear(hidden_channels, 1, bias=False, dtype=dtype)

    def forward(self, scalars: Tensor, sym: Tensor, batch: Tensor, num_molecules: int) -> Tensor:
        eye = torch.eye(3, dtype=scalars.dtype, device=scalars.device)
        atomic = self.isotropic(scalars).unsqueeze(-1) * eye + self.anisotropic(sym).squeeze(-1)
        return scatter_sum(atomic, batch, num_molecules)
