"""TensorNet's embedding: edge tensors from unit vectors, weighted by radial and atomic-number features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .radial import CosineCutoff
from .tensors import compose, identity_part, skew_from_vector, squared_norm


def scatter_sum(values: Tensor, index: Tensor, num_atoms: int) -> Tensor:
    """Sum rows of ``values [E, ...]`` into ``[num_atoms, ...]`` at ``index [E]``."""
    out = torch.zeros((num_atoms,) + values.shape[1:], dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)


class TensorEmbedding(nn.Module):
    """Initial per-atom tensors ``X_i = sum_j f(d_ij, Z_i, Z_j) (I-, A-, S-parts of u_ij)``, then channel mixing.

    For an edge ``(i, j)`` with unit vector ``u`` (zero on self-loops), the three edge tensors are ``Id``,
    ``[u]_x`` and ``u u^T - Id / 3``. Each is weighted per channel by ``C(d) * W_pair [E(Z_i), E(Z_j)]`` times a
    linear map of the radial basis. After summing over neighbours, the norms of ``X`` feed an MLP that scales the
    channel-mixed ``I``, ``A`` and ``S`` parts.
    """

    def __init__(
        self,
        hidden_channels: int,
        num_rbf: int,
        activation: nn.Module,
        cutoff_lower: float,
        cutoff_upper: float,
        max_z: int,
        dtype: torch.dtype,
    ):
        super().__init__()
        f = hidden_channels
        self.hidden_channels = f
        self.atom_embedding = nn.Embedding(max_z, f, dtype=dtype)
        self.pair_linear = nn.Linear(2 * f, f, dtype=dtype)
        self.radial_linear = nn.Linear(num_rbf, 3 * f, dtype=dtype)  # I, A and S weights side by side
        self.cutoff = CosineCutoff(cutoff_lower, cutoff_upper)
        self.norm = nn.LayerNorm(f, dtype=dtype)
        self.scalar_mlp = nn.ModuleList([nn.Linear(f, 2 * f, dtype=dtype), nn.Linear(2 * f, 3 * f, dtype=dtype)])
        self.component_mix = nn.ModuleList([nn.Linear(f, f, bias=False, dtype=dtype) for _ in range(3)])
        self.act = activation

    def forward(
        self, z: Tensor, edge_index: Tensor, distances: Tensor, unit_vectors: Tensor, rbf: Tensor
    ) -> Tensor:
        num_atoms = z.shape[0]
        f = self.hidden_channels
        receiver, sender = edge_index[0], edge_index[1]
        atom_features = self.atom_embedding(z)
        pair = self.pair_linear(torch.cat((atom_features[receiver], atom_features[sender]), dim=-1))
        weights = (self.cutoff(distances).unsqueeze(-1) * pair).unsqueeze(1)
        weights = weights * self.radial_linear(rbf).view(-1, 3, f)  # [E, 3, F]

        scalar = scatter_sum(weights[:, 0], receiver, num_atoms)  # [N, F]
        vector = scatter_sum(weights[:, 1].unsqueeze(1) * unit_vectors.unsqueeze(-1), receiver, num_atoms)
        outer = unit_vectors.unsqueeze(2) * unit_vectors.unsqueeze(1)  # [E, 3, 3]
        sym = scatter_sum(weights[:, 2, None, None, :] * outer.unsqueeze(-1), receiver, num_atoms)
        sym = sym - identity_part(sym.diagonal(dim1=1, dim2=2).mean(-1))

        features = compose(scalar, skew_from_vector(vector), sym)
        gates = self.norm(squared_norm(features))
        for linear in self.scalar_mlp:
            gates = self.act(linear(gates))
        gates = gates.view(num_atoms, 3, f)

        scalar = self.component_mix[0](scalar) * gates[:, 0]
        vector = self.component_mix[1](vector) * gates[:, 1].unsqueeze(1)
        sym = self.component_mix[2](sym) * gates[:, 2, None, None, :]
        return compose(scalar, skew_from_vector(vector), sym)
