"""TensorNet's sums over a half neighbour list (embedding and messages): the compiled ops and their pure-torch twins.

For every atom ``i``, ``M[i, k, c] = sum_j W[p(i, j), part(k), c] * X[j, k, c]`` over the neighbours ``j`` of ``i``,
with one weight row per unordered pair ``p`` (the weights depend on the distance only) and ``part(k)`` the irreducible
part of component ``k`` (0 for component 0, 1 for 1-3, 2 for 4-8; :func:`openmm_tensornet.nn.tensors.expand_parts`). ``pairs [2, P]`` is a half list (each
pair once, valid rows sorted by first atom, padding rows ``-1`` at the end), as :func:`neighbor_pairs` returns with
``half=True``.

:func:`tensor_messages` calls ``torch.ops.openmm_tensornet.tensor_messages`` (``plugin/messages``: no ``[P, 9, F]``
intermediate, analytic first derivative); :func:`tensor_messages_reference` is the same sum in plain torch, twice
differentiable, used for training and as the test oracle. :func:`tensor_embedding` (and its twin
:func:`tensor_embedding_reference`) is the embedding's sum of pair-weighted edge tensors
(:class:`openmm_tensornet.nn.embedding.TensorEmbedding`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .tensors import expand_parts, from_matrix, matmul, to_matrix


class PairIndex(NamedTuple):
    """A half list (padding rows -1) with its CSR indices: by first atom (``first_ptr``) and by second atom
    (``second_order``, ``second_ptr``)."""

    pairs: Tensor  # [2, P]
    first_ptr: Tensor  # [N + 1]
    second_order: Tensor  # [P]
    second_ptr: Tensor  # [N + 1]


def _csr_pointer(index: Tensor, num_atoms: int) -> Tensor:
    counts = torch.zeros(num_atoms + 1, dtype=torch.long, device=index.device)
    counts = counts.index_add(0, index + 1, torch.ones_like(index))  # padding (-1) lands in slot 0, dropped below
    counts[0] = 0
    return torch.cumsum(counts, 0)


def pair_index(pairs: Tensor, num_atoms: int, compiled: bool = True) -> PairIndex:
    """CSR indices of a half list ``pairs [2, P]`` (padding rows ``-1`` are left out): the compiled ``pair_csr`` op
    on the CPU, :func:`pair_index_reference` otherwise (no host synchronisation there)."""
    if compiled and pairs.device.type == "cpu":
        first_ptr, second_order, second_ptr = torch.ops.openmm_tensornet.pair_csr(pairs, num_atoms)
        return PairIndex(pairs, first_ptr, second_order, second_ptr)
    return pair_index_reference(pairs, num_atoms)


def pair_index_reference(pairs: Tensor, num_atoms: int) -> PairIndex:
    """The pure-torch twin of :func:`pair_index`."""
    first, second = pairs[0], pairs[1]
    # Padding sorts last: give it the key num_atoms.
    key = torch.where(second >= 0, second, torch.full_like(second, num_atoms))
    order = torch.argsort(key, stable=True)
    return PairIndex(pairs, _csr_pointer(first, num_atoms), order, _csr_pointer(second, num_atoms))


def tensor_messages(weights: Tensor, features: Tensor, index: PairIndex) -> Tensor:
    """Messages ``[N, 9, F]`` from pair weights ``[P, 3, F]`` and features ``[N, 9, F]`` (compiled op)."""
    return torch.ops.openmm_tensornet.tensor_messages(
        weights, features, index.pairs, index.first_ptr, index.second_order, index.second_ptr
    )


def tensor_messages_reference(weights: Tensor, features: Tensor, pairs: Tensor,
                              reverse_weights: Optional[Tensor] = None) -> Tensor:
    """The pure-torch twin of :func:`tensor_messages` (padding rows must carry zero weights).

    ``reverse_weights [P, 3, F]``: the weights of the messages to each pair's second atom where they differ from
    those to its first (charge-dependent filters, see :mod:`openmm_tensornet.nn.charge_equilibration`)."""
    expanded = expand_parts(weights)  # [P, 9, F]
    reverse = expanded if reverse_weights is None else expand_parts(reverse_weights)
    first = pairs[0].clamp(min=0)
    second = pairs[1].clamp(min=0)
    out = torch.zeros_like(features).index_add(0, first, expanded * features.index_select(0, second))
    return out.index_add(0, second, reverse * features.index_select(0, first))


def _parity(like: Tensor) -> Tensor:
    """Sign of each component under ``u -> -u``: the skew part (components 1-3) is odd. Shape ``[1, 9, 1]``."""
    return torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=like.dtype, device=like.device).view(
        1, 9, 1
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


def tensor_embedding_sums(radial: Tensor, edge: Tensor, receiver_term: Tensor, sender_term: Tensor,
                          pairs: Tensor) -> Tuple[Tensor, Tensor]:
    """The pure-torch twin of the op's two outputs ``(features, edge_sum)``; ``edge_sum`` is the embedding sum with
    a receiver term of one and no sender term (padding rows must carry zero weights)."""
    features = tensor_embedding_reference(radial, edge, receiver_term, sender_term, pairs)
    edge_sum = tensor_embedding_reference(radial, edge, torch.ones_like(receiver_term), torch.zeros_like(sender_term),
                                          pairs)
    return features, edge_sum


def tensor_embedding_reference(radial: Tensor, edge: Tensor, receiver_term: Tensor, sender_term: Tensor,
                               pairs: Tensor) -> Tensor:
    """The pure-torch twin of :func:`tensor_embedding` (used for training)."""
    first = pairs[0].clamp(min=0)
    second = pairs[1].clamp(min=0)
    forward = expand_parts(radial) * edge.unsqueeze(-1)
    to_first = (receiver_term.index_select(0, first) + sender_term.index_select(0, second)).unsqueeze(1)
    to_second = (receiver_term.index_select(0, second) + sender_term.index_select(0, first)).unsqueeze(1)
    features = torch.zeros(receiver_term.shape[0], 9, receiver_term.shape[1], dtype=radial.dtype,
                           device=radial.device)
    features = features.index_add(0, first, to_first * forward)
    return features.index_add(0, second, to_second * (forward * _parity(forward)))


def tensor_product(left: Tensor, right: Tensor) -> Tensor:
    """Components ``[N, 9, F]`` of the channel-wise matrix product ``left @ right`` (compiled op)."""
    return torch.ops.openmm_tensornet.tensor_product(left, right)


def tensor_product_reference(left: Tensor, right: Tensor, basis_matrix: Tensor) -> Tensor:
    """The pure-torch twin of :func:`tensor_product`; ``basis_matrix`` is ``tensors.basis().reshape(9, 9)``."""
    return from_matrix(matmul(to_matrix(left, basis_matrix), to_matrix(right, basis_matrix)), basis_matrix)
