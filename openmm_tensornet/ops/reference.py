"""The pure-torch twin of every compiled op, in one place.

Naming rule: the twin of ``torch.ops.openmm_tensornet.<op>`` is :func:`<op>` here, with the op's schema arguments
and results; ``library.py`` registers exactly these functions as the ops' fallback, and the tests compare each op
with its twin. The ``*_reference`` functions are the same math in the form the model's reference path (training,
float64, twice differentiable) calls it.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from .activations import apply_activation
from .pairs import PairIndex, pair_index_reference
from .tensors import (
    basis,
    edge_components,
    expand_parts,
    from_matrix,
    invariant_norms,
    matmul,
    mix_parts,
    part_rows,
    squared_norm,
    to_matrix,
    unit_vectors,
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


def tensor_product_reference(left: Tensor, right: Tensor, basis_matrix: Tensor) -> Tensor:
    """The pure-torch twin of :func:`tensor_product`; ``basis_matrix`` is ``tensors.basis().reshape(9, 9)``."""
    return from_matrix(matmul(to_matrix(left, basis_matrix), to_matrix(right, basis_matrix)), basis_matrix)


def radial_mlp_reference(rbf: Tensor, cutoff: Tensor, weights: List[Tensor], biases: List[Tensor],
                         activation: str) -> Tensor:
    """The pure-torch twin of ``torch.ops.openmm_tensornet.radial_mlp``: an MLP of ``rbf [P, K]`` times ``cutoff``.

    Every layer is ``act(h W^T + b)`` (``activation`` "none": no activation).
    """
    hidden = rbf
    for weight, bias in zip(weights, biases):
        hidden = nn.functional.linear(hidden, weight, bias)
        if activation != "none":
            hidden = apply_activation(hidden, activation)
    return hidden * cutoff.unsqueeze(1)


def interaction_reference(
    features: Tensor, radial: Tensor, loop: Tensor, charge_factor: Tensor, mix_in: Tensor, mix_out: Tensor,
    pairs: Tensor, index: PairIndex, so3: bool, basis_matrix: Tensor, compiled: bool,
    reverse_radial: Optional[Tensor] = None,
) -> Tensor:
    """One interaction layer in plain torch, the twin of ``torch.ops.openmm_tensornet.tensor_interaction``.

    ``features [N, 9, F]``, ``radial [P, 3, F]`` pair weights (padding rows zero), ``loop [3, F]`` the self-loop's
    weights, ``charge_factor [N]`` ``1 + 0.1 q``, ``mix_in`` and ``mix_out`` ``[3, F, F]`` the I, A, S mixing
    matrices (``loop``, ``mix_in`` and ``mix_out`` may also be given per component: ``[9, F]``, ``[9, F, F]``),
    ``pairs [2, P]`` the half list (padding rows index 0) and ``index`` its raw form with CSR indices. ``compiled``
    uses the compiled message and product ops, which give first derivatives only; otherwise everything is twice
    differentiable. ``reverse_radial [P, 3, F]``: the weights of the messages to each pair's second atom where they
    differ by direction; ``loop`` is then per atom, ``[N, 3, F]``.
    """
    features = features / (squared_norm(features) + 1.0).unsqueeze(1)
    mixed = mix_parts(features, mix_in)
    if reverse_radial is not None:
        message = tensor_messages_reference(radial, mixed, pairs, reverse_radial) + expand_parts(loop) * mixed
    else:
        if compiled:
            message = torch.ops.openmm_tensornet.tensor_messages(radial, mixed, index.pairs, index.first_ptr,
                                                                 index.second_order, index.second_ptr)
        else:
            message = tensor_messages_reference(radial, mixed, pairs)
        message = message + part_rows(loop).unsqueeze(0) * mixed

    factor = charge_factor[:, None, None]
    if so3:
        product = 2.0 * _product(mixed, message, basis_matrix, compiled)
    else:
        product = factor * (_product(message, mixed, basis_matrix, compiled)
                            + _product(mixed, message, basis_matrix, compiled))
    product = product / (squared_norm(product) + 1.0).unsqueeze(1)
    update = mix_parts(product, mix_out)
    return features + update + factor * _product(update, update, basis_matrix, compiled)


def _product(left: Tensor, right: Tensor, basis_matrix: Tensor, compiled: bool) -> Tensor:
    if compiled:
        return torch.ops.openmm_tensornet.tensor_product(left, right)  # the op itself, not this module's twin
    return tensor_product_reference(left, right, basis_matrix)


def embedding_gate_reference(
    sums: Tensor, loop: Tensor, norm_weight: Tensor, norm_bias: Tensor, eps: float, weight1: Tensor, bias1: Tensor,
    weight2: Tensor, bias2: Tensor, activation: str, mix: Tensor,
) -> Tensor:
    """The end of the embedding in plain torch, the twin of ``torch.ops.openmm_tensornet.embedding_gate``.

    ``sums [N, 9, F]`` the pair sums of :func:`tensor_embedding`, ``loop [N, F]`` the self-loop's identity component,
    then LayerNorm of the squared norms, a two-layer gate MLP (``activation`` after each layer) giving I, A and S gates,
    and the gated channel mixing ``mix [3, F, F]``.
    """
    num_atoms, _, f = sums.shape
    features = sums + torch.cat((loop.unsqueeze(1), torch.zeros_like(sums[:, 1:])), dim=1)
    gates = nn.functional.layer_norm(squared_norm(features), [f], norm_weight, norm_bias, eps)
    gates = apply_activation(nn.functional.linear(gates, weight1, bias1), activation)
    gates = apply_activation(nn.functional.linear(gates, weight2, bias2), activation)
    return mix_parts(features, mix) * expand_parts(gates.view(num_atoms, 3, f))


def invariant_readout_reference(features: Tensor, norm_weight: Tensor, norm_bias: Tensor, eps: float, weight: Tensor,
                                bias: Tensor, activation: str) -> Tensor:
    """Per-atom scalars ``act(LayerNorm(invariant_norms(X)) W^T + b)`` from features ``[N, 9, F]``: the readout
    before the output heads, in plain torch (the twin of ``torch.ops.openmm_tensornet.invariant_readout``)."""
    norms = invariant_norms(features)
    normed = nn.functional.layer_norm(norms, [norms.shape[1]], norm_weight, norm_bias, eps)
    return apply_activation(nn.functional.linear(normed, weight, bias), activation)


# --- twins with the ops' schemas (registered as the fallback implementation of each op) ---


def neighbor_pairs(positions: Tensor, box: Optional[Tensor], batch: Optional[Tensor], cutoff: float,
                   max_pairs: int = -1, half: bool = False, algorithm: str = "auto") -> Tuple[Tensor, Tensor, Tensor]:
    from .neighbors import neighbor_search_reference, search_arguments_problem

    problem = search_arguments_problem(positions, box, batch, cutoff, max_pairs, algorithm)
    if problem != "":
        raise RuntimeError("neighbor_pairs: " + problem)
    return neighbor_search_reference(positions, cutoff, box, batch, max_pairs, half)


def pair_vectors(positions: Tensor, indices: Tensor, shifts: Tensor, box: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    from .neighbors import vectors_from_shifts

    vectors = vectors_from_shifts(positions, indices, shifts, box)
    return vectors, torch.linalg.vector_norm(vectors, dim=-1)


def pair_csr(pairs: Tensor, num_atoms: int) -> Tuple[Tensor, Tensor, Tensor]:
    index = pair_index_reference(pairs, num_atoms)
    return index.first_ptr, index.second_order, index.second_ptr


def tensor_messages(weights: Tensor, features: Tensor, pairs: Tensor, first_ptr: Tensor, second_order: Tensor,
                    second_ptr: Tensor) -> Tensor:
    return tensor_messages_reference(weights, features, pairs)


def tensor_embedding(radial: Tensor, edge: Tensor, receiver_term: Tensor, sender_term: Tensor, pairs: Tensor,
                     first_ptr: Tensor, second_order: Tensor, second_ptr: Tensor) -> Tuple[Tensor, Tensor]:
    return tensor_embedding_sums(radial, edge, receiver_term, sender_term, pairs)


def tensor_product(left: Tensor, right: Tensor) -> Tensor:
    return tensor_product_reference(left, right, basis(left.dtype, left.device).reshape(9, 9))


def tensor_interaction(features: Tensor, radial: Tensor, loop: Tensor, charge_factor: Tensor, mix_in: Tensor,
                       mix_out: Tensor, pairs: Tensor, first_ptr: Tensor, second_order: Tensor, second_ptr: Tensor,
                       so3: bool) -> Tensor:
    basis_matrix = basis(features.dtype, features.device).reshape(9, 9)
    index = PairIndex(pairs, first_ptr, second_order, second_ptr)
    return interaction_reference(features, radial, loop, charge_factor, mix_in, mix_out, pairs.clamp(min=0), index,
                                 so3, basis_matrix, False)


def pair_geometry(vectors: Tensor, distances: Tensor, means: Tensor, betas: Tensor, lower: float, upper: float,
                  rbf_type: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .radial import CosineCutoff, make_rbf

    rbf_module = make_rbf(rbf_type, lower, upper, means.shape[0], False, vectors.dtype).to(vectors.device)
    rbf_module.load_state_dict(dict(zip(rbf_module.state_dict().keys(), (means, betas.reshape(())
                                        if rbf_type == "gauss" else betas))))
    # The slopes are only for the compiled backward; the twin is differentiated by autograd instead.
    empty = distances.new_zeros(0)
    edge = edge_components(unit_vectors(vectors, distances))
    return rbf_module(distances), CosineCutoff(lower, upper)(distances), edge, empty, empty


def radial_mlp(rbf: Tensor, cutoff: Tensor, weights: List[Tensor], biases: List[Tensor], activation: str) -> Tensor:
    return radial_mlp_reference(rbf, cutoff, weights, biases, activation)


def embedding_gate(sums: Tensor, loop: Tensor, norm_weight: Tensor, norm_bias: Tensor, eps: float, weight1: Tensor,
                   bias1: Tensor, weight2: Tensor, bias2: Tensor, activation: str, mix: Tensor) -> Tensor:
    return embedding_gate_reference(sums, loop, norm_weight, norm_bias, eps, weight1, bias1, weight2, bias2,
                                    activation, mix)


def invariant_readout(features: Tensor, norm_weight: Tensor, norm_bias: Tensor, eps: float, weight: Tensor,
                      bias: Tensor, activation: str) -> Tensor:
    return invariant_readout_reference(features, norm_weight, norm_bias, eps, weight, bias, activation)
