"""Per-channel Cartesian rank-2 tensors and their irreducible parts.

Features are stored as ``[N, 3, 3, F]`` (atom, row, column, channel). Every 3x3 tensor splits into
``X = I * Id + A + S``: the scalar ``I = tr(X) / 3``, the skew-symmetric ``A`` (carried as the vector
``a`` with ``A = [a]_x``) and the symmetric traceless ``S``. Channel-mixing linears act on the last axis.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def identity_part(scalar: Tensor) -> Tensor:
    """``[N, F]`` scalars -> ``[N, 3, 3, F]`` tensors ``I * Id``."""
    eye = torch.eye(3, dtype=scalar.dtype, device=scalar.device)
    return scalar[:, None, None, :] * eye[None, :, :, None]


def skew_from_vector(vector: Tensor) -> Tensor:
    """``[N, 3, F]`` vectors ``a`` -> ``[N, 3, 3, F]`` skew tensors ``[a]_x`` (so ``[a]_x v = a x v``)."""
    ax, ay, az = vector[:, 0], vector[:, 1], vector[:, 2]
    zero = torch.zeros_like(ax)
    rows = (zero, -az, ay, az, zero, -ax, -ay, ax, zero)
    return torch.stack(rows, dim=1).view(vector.shape[0], 3, 3, vector.shape[2])


def vector_from_skew(tensor: Tensor) -> Tensor:
    """Inverse of :func:`skew_from_vector` on the skew part: ``[N, 3, 3, F]`` -> ``[N, 3, F]``."""
    x = 0.5 * (tensor[:, 2, 1] - tensor[:, 1, 2])
    y = 0.5 * (tensor[:, 0, 2] - tensor[:, 2, 0])
    z = 0.5 * (tensor[:, 1, 0] - tensor[:, 0, 1])
    return torch.stack((x, y, z), dim=1)


def decompose(tensor: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Split ``[N, 3, 3, F]`` tensors into ``(I [N, F], A [N, 3, 3, F], S [N, 3, 3, F])``."""
    transposed = tensor.transpose(1, 2)
    skew = 0.5 * (tensor - transposed)
    trace_third = tensor.diagonal(dim1=1, dim2=2).mean(-1)
    sym = 0.5 * (tensor + transposed) - identity_part(trace_third)
    return trace_third, skew, sym


def compose(scalar: Tensor, skew: Tensor, sym: Tensor) -> Tensor:
    """Inverse of :func:`decompose`: ``I * Id + A + S``."""
    return identity_part(scalar) + skew + sym


def squared_norm(tensor: Tensor) -> Tensor:
    """Squared Frobenius norm of each channel's 3x3 tensor: ``[N, 3, 3, F]`` -> ``[N, F]``."""
    return (tensor * tensor).sum((1, 2))


def matmul(left: Tensor, right: Tensor) -> Tensor:
    """Channel-wise matrix product ``left @ right`` of ``[N, 3, 3, F]`` tensors."""
    return torch.einsum("nikf,nkjf->nijf", left, right)


def invariant_norms(tensor: Tensor) -> Tensor:
    """``[N, 3F]`` invariants ``(|I Id|^2, |A|^2, |S|^2)`` per channel, concatenated in that order."""
    scalar, skew, sym = decompose(tensor)
    return torch.cat((3.0 * scalar * scalar, squared_norm(skew), squared_norm(sym)), dim=-1)
