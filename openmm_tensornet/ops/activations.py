"""Activation functions by name (see ``choices.Activation``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def apply_activation(x: Tensor, name: str) -> Tensor:
    """The activation named ``name`` applied to ``x`` (a function, for TorchScript code that has no module)."""
    if name == "tanh":
        return torch.tanh(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "mish":
        return nn.functional.mish(x)
    if name == "ssp":
        return shifted_softplus(x)
    return nn.functional.silu(x)


def shifted_softplus(x: Tensor) -> Tensor:
    """``softplus(x) - log(2)``, zero at the origin (SchNet)."""
    return nn.functional.softplus(x) - math.log(2.0)


class ShiftedSoftplus(nn.Module):
    """``softplus(x) - log(2)``, zero at the origin (SchNet)."""

    def forward(self, x: Tensor) -> Tensor:
        return shifted_softplus(x)


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for a name already validated by ``choices.parse_choice``."""
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "mish":
        return nn.Mish()
    if name == "ssp":
        return ShiftedSoftplus()
    return nn.SiLU()
