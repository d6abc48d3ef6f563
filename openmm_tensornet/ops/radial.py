"""Radial functions of the interatomic distance: smooth cutoffs and radial basis expansions (Å)."""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor, nn


def _register(module: nn.Module, trainable: bool, **tensors: Tensor) -> None:
    """Attach each tensor to ``module`` as a parameter (``trainable``) or as a buffer (saved, not trained)."""
    for name, value in tensors.items():
        if trainable:
            module.register_parameter(name, nn.Parameter(value))
        else:
            module.register_buffer(name, value)


class CosineCutoff(nn.Module):
    """Cosine switch from 1 to 0 between ``lower`` and ``upper`` (Å); zero outside ``[lower, upper)``.

    With ``lower == 0`` it is ``0.5 (cos(pi d / upper) + 1)`` for ``d < upper``, so it also equals 1 at
    ``d = 0`` (TensorNet's self-loops). With ``lower > 0`` it rises from 0 at ``lower`` to 1 at the middle of the
    window and falls back to 0 at ``upper``, as in torchmd-net.
    """

    def __init__(self, lower: float, upper: float):
        super().__init__()
        self.lower = float(lower)
        self.upper = float(upper)

    def forward(self, distances: Tensor) -> Tensor:
        inside = (distances < self.upper).to(distances.dtype)
        if self.lower > 0.0:
            phase = 2.0 * (distances - self.lower) / (self.upper - self.lower) + 1.0
            inside = inside * (distances > self.lower).to(distances.dtype)
            return 0.5 * (torch.cos(math.pi * phase) + 1.0) * inside
        return 0.5 * (torch.cos(distances * (math.pi / self.upper)) + 1.0) * inside


class ExpNormalRBF(nn.Module):
    """PhysNet's exponential-normal basis, ``f_k(d) = fc(d) exp(-beta_k (exp(alpha (lower - d)) - mu_k)^2)``.

    ``alpha = 5 / (upper - lower)``; ``fc`` is a cosine cutoff from 0 to ``upper``. Means start evenly spaced
    between ``exp(lower - upper)`` and 1, all widths ``(2 (1 - exp(lower - upper)) / num_rbf)^-2``.
    """

    def __init__(self, lower: float, upper: float, num_rbf: int, trainable: bool, dtype: torch.dtype):
        super().__init__()
        self.lower = float(lower)
        self.rbf_type = "expnorm"
        self.alpha = 5.0 / (upper - lower)
        self.envelope = CosineCutoff(0.0, upper)
        start = math.exp(lower - upper)
        means = torch.linspace(start, 1.0, num_rbf, dtype=dtype)
        betas = torch.full((num_rbf,), (2.0 / num_rbf * (1.0 - start)) ** -2, dtype=dtype)
        _register(self, trainable, means=means, betas=betas)

    def basis_tensors(self) -> Tuple[Tensor, Tensor]:
        """``(means, betas)`` as the compiled ``pair_geometry`` op takes them."""
        return self.means, self.betas

    def forward(self, distances: Tensor) -> Tensor:
        d = distances.unsqueeze(-1)
        shifted = torch.exp(self.alpha * (self.lower - d)) - self.means
        return self.envelope(d) * torch.exp(-self.betas * shifted * shifted)


class GaussianRBF(nn.Module):
    """Gaussians ``exp(coeff (d - offset_k)^2)`` with offsets evenly spaced on ``[lower, upper]``.

    ``coeff = -0.5 / spacing^2``. (No envelope: the cosine cutoff of each layer makes the model smooth.)
    """

    def __init__(self, lower: float, upper: float, num_rbf: int, trainable: bool, dtype: torch.dtype):
        super().__init__()
        self.rbf_type = "gauss"
        offsets = torch.linspace(lower, upper, num_rbf, dtype=dtype)
        coeff = -0.5 / (offsets[1] - offsets[0]) ** 2
        _register(self, trainable, offsets=offsets, coeff=coeff)

    def basis_tensors(self) -> Tuple[Tensor, Tensor]:
        """``(offsets, coeff [1])`` as the compiled ``pair_geometry`` op takes them."""
        return self.offsets, self.coeff.reshape(1)

    def forward(self, distances: Tensor) -> Tensor:
        d = distances.unsqueeze(-1) - self.offsets
        return torch.exp(self.coeff * d * d)


def make_rbf(
    rbf_type: str, lower: float, upper: float, num_rbf: int, trainable: bool, dtype: torch.dtype
) -> nn.Module:
    """Build the radial basis named by ``rbf_type`` (already validated by ``choices.parse_choice``)."""
    if rbf_type == "gauss":
        return GaussianRBF(lower, upper, num_rbf, trainable, dtype)
    return ExpNormalRBF(lower, upper, num_rbf, trainable, dtype)
