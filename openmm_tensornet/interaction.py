"""TensorNet's interaction layer: normalise, decompose, mix, pass messages, combine by matrix products."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .embedding import scatter_sum
from .radial import CosineCutoff
from .tensors import compose, decompose, matmul, skew_from_vector, squared_norm, vector_from_skew


class Interaction(nn.Module):
    """One interaction layer on ``X [N, 3, 3, F]``.

    ``X <- X / (|X|^2 + 1)``; ``Y = mix(I) + mix(A) + mix(S)``; messages ``M_i = sum_j f_ij * (I_j, A_j, S_j)`` with
    radial weights ``f`` (an MLP of the radial basis times the cosine cutoff, separately for the I, A and S parts);
    ``C = (1 + 0.1 q) (Y M + M Y)`` for O(3), ``C = 2 Y M`` for SO(3); ``C``'s parts divided by ``|C|^2 + 1``
    and mixed again into ``dX``; ``X <- X + dX + (1 + 0.1 q) dX dX``. ``q`` is the molecule's total charge.
    """

    def __init__(
        self,
        num_rbf: int,
        hidden_channels: int,
        activation: nn.Module,
        cutoff_lower: float,
        cutoff_upper: float,
        equivariance_group: str,
        dtype: torch.dtype,
    ):
        super().__init__()
        f = hidden_channels
        self.hidden_channels = f
        self.so3 = equivariance_group == "SO(3)"
        self.cutoff = CosineCutoff(cutoff_lower, cutoff_upper)
        self.radial_mlp = nn.ModuleList(
            [nn.Linear(num_rbf, f, dtype=dtype), nn.Linear(f, 2 * f, dtype=dtype), nn.Linear(2 * f, 3 * f, dtype=dtype)]
        )
        self.mix_in = nn.ModuleList([nn.Linear(f, f, bias=False, dtype=dtype) for _ in range(3)])
        self.mix_out = nn.ModuleList([nn.Linear(f, f, bias=False, dtype=dtype) for _ in range(3)])
        self.act = activation

    def forward(
        self, features: Tensor, edge_index: Tensor, distances: Tensor, rbf: Tensor, charge_factor: Tensor
    ) -> Tensor:
        num_atoms = features.shape[0]
        receiver, sender = edge_index[0], edge_index[1]
        radial = rbf
        for linear in self.radial_mlp:
            radial = self.act(linear(radial))
        radial = (radial * self.cutoff(distances).unsqueeze(-1)).view(-1, 3, self.hidden_channels)

        features = features / (squared_norm(features) + 1.0)[:, None, None, :]
        scalar, skew, sym = decompose(features)
        scalar = self.mix_in[0](scalar)
        vector = self.mix_in[1](vector_from_skew(skew))
        sym = self.mix_in[2](sym)
        mixed = compose(scalar, skew_from_vector(vector), sym)

        msg_scalar = scatter_sum(radial[:, 0] * scalar[sender], receiver, num_atoms)
        msg_vector = scatter_sum(radial[:, 1].unsqueeze(1) * vector[sender], receiver, num_atoms)
        msg_sym = scatter_sum(radial[:, 2, None, None, :] * sym[sender], receiver, num_atoms)
        message = compose(msg_scalar, skew_from_vector(msg_vector), msg_sym)

        factor = charge_factor[:, None, None, None]
        if self.so3:
            product = 2.0 * matmul(mixed, message)
        else:
            product = factor * (matmul(message, mixed) + matmul(mixed, message))
        scalar, skew, sym = decompose(product)
        scale = 1.0 / (squared_norm(product) + 1.0)
        scalar = self.mix_out[0](scalar * scale)
        vector = self.mix_out[1](vector_from_skew(skew) * scale.unsqueeze(1))
        sym = self.mix_out[2](sym * scale[:, None, None, :])
        update = compose(scalar, skew_from_vector(vector), sym)
        return features + update + factor * matmul(update, update)
