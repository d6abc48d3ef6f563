"""Per-channel Cartesian rank-2 tensors stored by their irreducible components.

A 3x3 tensor splits into ``X = I * Id + A + S``: the scalar ``I = tr(X) / 3``, the skew-symmetric ``A = [a]_x`` and
the symmetric traceless ``S``, i.e. 1 + 3 + 5 numbers. Features are stored as ``[N, 9, F]`` (atom, component,
channel): the coordinates of ``X`` in an orthonormal basis of 3x3 matrices (Frobenius inner product) ordered by
irreducible part, so component 0 is ``sqrt(3) I``, components 1-3 are ``sqrt(2) a`` and components 4-8 are ``S``.
Because the basis is orthonormal, Frobenius norms are sums of squares of components, and because each part spans
its own components, every TensorNet operation that acts part by part (channel mixing, radial weights) acts on
slices. Matrix products go through the 3x3 form (:func:`to_matrix`, :func:`from_matrix`).
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import Tensor


def basis(dtype: torch.dtype = torch.float64, device: torch.device = torch.device("cpu")) -> Tensor:
    """The orthonormal basis ``B [9, 3, 3]``: components are ``c_k = <B_k, X>``, and ``X = sum_k c_k B_k``."""
    r2, r3, r6 = math.sqrt(2.0), math.sqrt(3.0), math.sqrt(6.0)
    b = torch.zeros(9, 3, 3, dtype=torch.float64)
    b[0] = torch.eye(3, dtype=torch.float64) / r3
    for k, (row, col) in enumerate(((2, 1), (0, 2), (1, 0))):  # [e_x]_x, [e_y]_x, [e_z]_x, each / sqrt(2)
        b[1 + k, row, col] = 1.0 / r2
        b[1 + k, col, row] = -1.0 / r2
    for k, (row, col) in enumerate(((0, 1), (0, 2), (1, 2))):
        b[4 + k, row, col] = b[4 + k, col, row] = 1.0 / r2
    b[7, 0, 0], b[7, 1, 1] = 1.0 / r2, -1.0 / r2
    b[8, 0, 0], b[8, 1, 1], b[8, 2, 2] = 1.0 / r6, 1.0 / r6, -2.0 / r6
    return b.to(dtype=dtype, device=device)


def expand_parts(weights: Tensor) -> Tensor:
    """Per-part weights ``[P, 3, F]`` (I, A, S) -> per-component weights ``[P, 9, F]``."""
    return torch.cat(
        (weights[:, 0:1], weights[:, 1:2].expand(-1, 3, -1), weights[:, 2:3].expand(-1, 5, -1)), dim=1
    )


def to_matrix(components: Tensor, basis_matrix: Tensor) -> Tensor:
    """``[N, 9, F]`` components -> ``[N, 3, 3, F]`` matrices. ``basis_matrix`` is ``basis().view(9, 9)``."""
    return torch.matmul(basis_matrix.t(), components).view(components.shape[0], 3, 3, components.shape[2])


def from_matrix(matrices: Tensor, basis_matrix: Tensor) -> Tensor:
    """``[N, 3, 3, F]`` matrices -> ``[N, 9, F]`` components (inverse of :func:`to_matrix`)."""
    return torch.matmul(basis_matrix, matrices.reshape(matrices.shape[0], 9, matrices.shape[3]))


def matmul(left: Tensor, right: Tensor) -> Tensor:
    """Channel-wise matrix product ``left @ right`` of ``[N, 3, 3, F]`` tensors."""
    out = left[:, :, 0, None, :] * right[:, None, 0, :, :]
    out = out + left[:, :, 1, None, :] * right[:, None, 1, :, :]
    return out + left[:, :, 2, None, :] * right[:, None, 2, :, :]


def part_norms(components: Tensor) -> Tensor:
    """Squared Frobenius norms ``(|I Id|^2, |A|^2, |S|^2)`` of ``[N, 9, F]`` features -> ``[N, 3, F]``."""
    squares = components * components
    return torch.stack(
        (squares[:, 0], squares[:, 1:4].sum(1), squares[:, 4:9].sum(1)), dim=1
    )


def squared_norm(components: Tensor) -> Tensor:
    """Squared Frobenius norm of each channel's tensor: ``[N, 9, F]`` -> ``[N, F]``."""
    return (components * components).sum(1)


def invariant_norms(components: Tensor) -> Tensor:
    """``[N, 3F]`` invariants ``(|I Id|^2, |A|^2, |S|^2)`` per channel, concatenated in that order."""
    return part_norms(components).flatten(1)


def skew_vector(components: Tensor) -> Tensor:
    """The vector ``a`` of the skew part ``A = [a]_x``: ``[N, 9, F]`` -> ``[N, 3, F]``."""
    return components[:, 1:4] * (1.0 / math.sqrt(2.0))


def symmetric_matrix(components: Tensor, basis_matrix: Tensor) -> Tensor:
    """The symmetric traceless part ``S`` as ``[N, 3, 3, F]`` matrices."""
    sym_basis = basis_matrix[4:9]  # [5, 9]
    return torch.matmul(sym_basis.t(), components[:, 4:9]).view(
        components.shape[0], 3, 3, components.shape[2]
    )


def unit_vectors(vectors: Tensor, distances: Tensor) -> Tensor:
    """``vectors [E, 3] / distances [E]``, and 0 where the distance is 0 (self-loops; padding rows have zero
    vectors), not 0 / 0."""
    return vectors / torch.where(distances > 0, distances, torch.ones_like(distances)).unsqueeze(-1)


def edge_components(unit_vectors: Tensor) -> Tensor:
    """Components of the three edge tensors of a unit vector ``u``: ``[E, 3] -> [E, 9]``.

    Component 0 belongs to ``Id``, 1-3 to ``[u]_x`` and 4-8 to ``u u^T - Id / 3`` (zero vectors give ``Id`` only,
    TensorNet's self-loops).
    """
    x, y, z = unit_vectors[:, 0], unit_vectors[:, 1], unit_vectors[:, 2]
    r2, r6 = math.sqrt(2.0), math.sqrt(6.0)
    return torch.stack(
        (
            torch.full_like(x, math.sqrt(3.0)),
            r2 * x, r2 * y, r2 * z,
            r2 * x * y, r2 * x * z, r2 * y * z,
            (x * x - y * y) / r2,
            (x * x + y * y - 2.0 * z * z) / r6,
        ),
        dim=1,
    )


def part_rows(parts: Tensor) -> Tensor:
    """Per-part rows ``[3, ...]`` (I, A, S) -> per-component rows ``[9, ...]`` (any trailing shape); ``[9, ...]``
    passes unchanged."""
    if parts.shape[0] == 9:
        return parts
    rows: List[Tensor] = [parts[0:1]] + [parts[1:2]] * 3 + [parts[2:3]] * 5
    return torch.cat(rows, dim=0)


def mix_parts(features: Tensor, weights: Tensor) -> Tensor:
    """Channel mixing of the I, A and S parts of ``[N, 9, F]`` features, each with its own ``[F_out, F]`` matrix
    (bias-free linears, stacked as ``weights [3, F_out, F]``, or per component ``[9, F_out, F]``), as one batched
    matrix product over the 9 components."""
    per_component = part_rows(weights).transpose(1, 2)  # [9, F, F_out]
    return torch.bmm(features.transpose(0, 1), per_component).transpose(0, 1)
