"""TensorNet's sums over a half neighbour list: the Python entry points of the compiled message ops.

For every atom ``i``, ``M[i, k, c] = sum_j W[p(i, j), part(k), c] * X[j, k, c]`` over the neighbours ``j`` of ``i``,
with one weight row per unordered pair ``p`` (the weights depend on the distance only) and ``part(k)`` the
irreducible part of component ``k`` (0 for component 0, 1 for 1-3, 2 for 4-8;
:func:`openmm_tensornet.ops.tensors.expand_parts`). The pairs come as a :class:`~openmm_tensornet.ops.pairs.PairIndex`:
a half list (each pair once, valid rows sorted by first atom, padding rows ``-1`` at the end) with its CSR indices.

:func:`tensor_messages` calls ``torch.ops.openmm_tensornet.tensor_messages`` (``plugin/messages``: no ``[P, 9, F]``
intermediate, analytic first derivative); :func:`tensor_embedding` is the embedding's sum of pair-weighted edge
tensors (:class:`openmm_tensornet.nn.embedding.TensorEmbedding`); :func:`tensor_product` the channel-wise matrix
product. Their pure-torch twins (twice differentiable, used for training and as the test oracle) are in
:mod:`openmm_tensornet.ops.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .pairs import PairIndex


def tensor_messages(weights: Tensor, features: Tensor, index: PairIndex) -> Tensor:
    """Messages ``[N, 9, F]`` from pair weights ``[P, 3, F]`` and features ``[N, 9, F]`` (compiled op)."""
    return torch.ops.openmm_tensornet.tensor_messages(
        weights, features, index.pairs, index.first_ptr, index.second_order, index.second_ptr
    )


def tensor_embedding(radial: Tensor, edge: Tensor, receiver_term: Tensor, sender_term: Tensor,
                     index: PairIndex) -> Tensor:
    """``X_i = sum_j (R_i + S_j) radial_p * edge_p`` over both directions of every pair (compiled op), ``[N, 9, F]``.

    ``radial [P, 3, F]`` weights per part, ``edge [P, 9]`` components of the pair's edge tensors for its vector
    (the reverse direction uses the parity-flipped components), ``receiver_term`` and ``sender_term`` ``[N, F]``.
    """
    features, _ = torch.ops.openmm_tensornet.tensor_embedding(
        radial, edge, receiver_term, sender_term, index.pairs, index.first_ptr, index.second_order, index.second_ptr
    )
    return features


def tensor_product(left: Tensor, right: Tensor) -> Tensor:
    """Components ``[N, 9, F]`` of the channel-wise matrix product ``left @ right`` (compiled op)."""
    return torch.ops.openmm_tensornet.tensor_product(left, right)


