"""Partial charges predicted from TensorNet features with neutral charge equilibration (torchmd-net's
``tensornet2``, after AIMNet2): after the embedding and after every interaction layer, ``q`` charge channels per
atom are predicted and shifted so that each channel sums to the molecule's total charge."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops.tensors import squared_norm
from .embedding import scatter_sum
from .heads import MLP


def charge_features(features: Tensor) -> Tensor:
    """``[N, 3F]`` inputs of a charge predictor from features ``[N, 9, F]``: the signed isotropic part
    ``trace(X) / 3`` and the squared norms of the antisymmetric and the symmetric traceless parts."""
    isotropic = features[:, 0, :] / math.sqrt(3.0)  # component 0 is trace(X) / sqrt(3) in the orthonormal basis
    return torch.cat((isotropic, squared_norm(features[:, 1:4, :]), squared_norm(features[:, 4:9, :])), dim=-1)


def equilibrate(charges: Tensor, weights: Tensor, batch: Tensor, total_charge: Tensor, num_molecules: int) -> Tensor:
    """Shift ``charges [N, q]`` so that each channel sums to ``total_charge [M]`` within each molecule, atom ``i``
    taking the share ``w_i^2 / (sum_j w_j^2 + 1e-6)`` of the excess."""
    share = weights * weights
    share_sum = scatter_sum(share, batch, num_molecules) + 1.0e-6
    excess = total_charge.unsqueeze(-1) - scatter_sum(charges, batch, num_molecules)
    return charges + share / share_sum[batch] * excess[batch]


class ChargePredictor(nn.Module):
    """``q`` equilibrated charge channels per atom: ``LayerNorm`` and a two-hidden-layer MLP on
    :func:`charge_features` give raw charges and their weights, then :func:`equilibrate`."""

    def __init__(self, hidden_channels: int, charge_channels: int, activation: str, dtype: torch.dtype):
        super().__init__()
        self.charge_channels = charge_channels
        self.norm = nn.LayerNorm(3 * hidden_channels, dtype=dtype)
        self.mlp = MLP(3 * hidden_channels, hidden_channels, 2 * charge_channels, activation, 1, dtype)

    def forward(self, features: Tensor, batch: Tensor, total_charge: Tensor, num_molecules: int) -> Tensor:
        raw = self.mlp(self.norm(charge_features(features)))
        q = self.charge_channels
        return equilibrate(raw[:, :q], raw[:, q:], batch, total_charge, num_molecules)
