"""Activation functions by name (see ``choices.Activation``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ShiftedSoftplus(nn.Module):
    """``softplus(x) - log(2)``, zero at the origin (SchNet)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.softplus(x) - math.log(2.0)


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
