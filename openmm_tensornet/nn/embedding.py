"""TensorNet's embedding: edge tensors from unit vectors, weighted by radial and atomic-number features."""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor, nn

from ..ops.messages import tensor_embedding
from ..ops.pairs import PairIndex
from ..ops.reference import embedding_gate_reference, radial_mlp_reference, tensor_embedding_reference
from ..ops.tensors import part_rows
from .plan import ExecutionPlan


def scatter_sum(values: Tensor, index: Tensor, num_atoms: int) -> Tensor:
    """Sum rows of ``values [E, ...]`` into ``[num_atoms, ...]`` at ``index [E]``."""
    out = torch.zeros((num_atoms,) + values.shape[1:], dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)


class TensorEmbedding(nn.Module):
    """Initial per-atom tensors ``X_i = sum_j f(d_ij, Z_i, Z_j) (I-, A-, S-parts of u_ij)``, then channel mixing.

    For an edge ``(i, j)`` with unit vector ``u`` (zero on TensorNet's self-loop ``j = i``), the three edge tensors
    are ``Id``, ``[u]_x`` and ``u u^T - Id / 3``. Each is weighted per channel by ``C(d) * W_pair [E(Z_i), E(Z_j)]``
    times a linear map of the radial basis. After summing over neighbours, the norms of ``X`` feed an MLP that
    scales the channel-mixed ``I``, ``A`` and ``S`` parts. Output: ``[N, 9, F]`` irreducible components.

    The pair linear acts on the concatenated embeddings, so it splits exactly into a receiver term and a sender
    term computed per atom; the radial weights depend on the distance only, so each unordered pair is evaluated
    once and serves both directions (``u`` flips sign, which flips the skew part only).
    """

    def __init__(
        self,
        hidden_channels: int,
        num_rbf: int,
        activation: str,
        cutoff_lower: float,
        cutoff_upper: float,
        max_z: int,
        dtype: torch.dtype,
    ):
        super().__init__()
        f = hidden_channels
        self.hidden_channels = f
        self.atom_embedding = nn.Embedding(max_z, f, dtype=dtype)
        self.pair_linear = nn.Linear(2 * f, f, dtype=dtype)
        self.radial_linear = nn.Linear(num_rbf, 3 * f, dtype=dtype)  # I, A and S weights side by side
        self.norm = nn.LayerNorm(f, dtype=dtype)
        self.scalar_mlp = nn.ModuleList([nn.Linear(f, 2 * f, dtype=dtype), nn.Linear(2 * f, 3 * f, dtype=dtype)])
        self.component_mix = nn.ModuleList([nn.Linear(f, f, bias=False, dtype=dtype) for _ in range(3)])
        self.activation_name = activation  # a name of choices.Activation
        # Inference constants for fixed atoms (see TensorNet.freeze_for_inference): receiver and sender terms, the
        # self-loop term and the stacked mixing matrices; empty = computed on every call.
        self.register_buffer("frozen_receiver", torch.zeros(0, dtype=dtype), persistent=False)
        self.register_buffer("frozen_sender", torch.zeros(0, dtype=dtype), persistent=False)
        self.register_buffer("frozen_loop", torch.zeros(0, dtype=dtype), persistent=False)
        self.register_buffer("frozen_mix", torch.zeros(0, dtype=dtype), persistent=False)

    def pair_terms(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        """The receiver and sender terms ``[N, F]`` of the pair linear (the embedding of each atom's element)."""
        f = self.hidden_channels
        atom_features = self.atom_embedding(z)
        weight = self.pair_linear.weight
        receiver_term = nn.functional.linear(atom_features, weight[:, :f], self.pair_linear.bias)
        return receiver_term, nn.functional.linear(atom_features, weight[:, f:])

    def loop_term(self, receiver_term: Tensor, sender_term: Tensor, rbf_zero: Tensor, cutoff_zero: Tensor) -> Tensor:
        """The identity component ``[N, F]`` of each atom's self-loop (distance 0, zero vector)."""
        loop = cutoff_zero.unsqueeze(1) * self.radial_linear(rbf_zero)[:, :self.hidden_channels]
        return (receiver_term + sender_term) * loop * math.sqrt(3.0)

    def weights_constant(self) -> bool:
        """Whether none of the weights needs a gradient (their whole-layer ops can run)."""
        return not (self.pair_linear.weight.requires_grad or self.atom_embedding.weight.requires_grad
                    or self.radial_linear.weight.requires_grad or self.component_mix[0].weight.requires_grad
                    or self.scalar_mlp[0].weight.requires_grad or self.scalar_mlp[1].weight.requires_grad
                    or self.norm.weight.requires_grad)

    def mix_weights(self) -> Tensor:
        return torch.stack((self.component_mix[0].weight, self.component_mix[1].weight, self.component_mix[2].weight))

    @torch.jit.ignore
    def freeze(self, z: Tensor, rbf_zero: Tensor, cutoff_zero: Tensor) -> None:
        """Store the inference constants for the atoms ``z`` (frozen weights only; cleared by ``unfreeze``)."""
        with torch.no_grad():
            receiver_term, sender_term = self.pair_terms(z)
            self.frozen_receiver, self.frozen_sender = receiver_term.clone(), sender_term.clone()
            self.frozen_loop = self.loop_term(receiver_term, sender_term, rbf_zero, cutoff_zero).clone()
            self.frozen_mix = part_rows(self.mix_weights()).contiguous()  # per component, [9, F, F]

    @torch.jit.ignore
    def unfreeze(self) -> None:
        empty = torch.zeros(0, dtype=self.norm.weight.dtype, device=self.norm.weight.device)
        self.frozen_receiver, self.frozen_sender = empty, empty.clone()
        self.frozen_loop, self.frozen_mix = empty.clone(), empty.clone()

    def forward(
        self, z: Tensor, pairs: Tensor, index: PairIndex, cutoff: Tensor, edge: Tensor, rbf: Tensor,
        rbf_zero: Tensor, cutoff_zero: Tensor, plan: ExecutionPlan,
    ) -> Tensor:
        """``pairs [2, P]`` half list (padding rows index 0 with zero weight; ``index`` holds the raw list and its
        CSR indices), ``cutoff [P]`` the cosine cutoff of the distances, ``edge [P, 9]`` the components of the edge
        tensors of each pair's unit vector (:func:`openmm_tensornet.ops.tensors.edge_components`), ``rbf [P, K]``, and
        ``rbf_zero [1, K]``, ``cutoff_zero [1]`` at distance 0 (the self-loops); ``plan`` says which implementations
        run."""
        f = self.hidden_channels
        if plan.frozen_atoms:
            receiver_term, sender_term = self.frozen_receiver, self.frozen_sender
        else:
            receiver_term, sender_term = self.pair_terms(z)  # [N, F] each
        weights = [self.radial_linear.weight]
        biases = [self.radial_linear.bias]
        if plan.constant_weights:
            radial = torch.ops.openmm_tensornet.radial_mlp(rbf, cutoff, weights, biases, "none")
        else:
            radial = radial_mlp_reference(rbf, cutoff, weights, biases, "none")
        radial = radial.view(-1, 3, f)
        if plan.compiled:
            features = tensor_embedding(radial, edge, receiver_term, sender_term, index)
        else:
            features = tensor_embedding_reference(radial, edge, receiver_term, sender_term, pairs)
        # Self-loops: distance 0, zero vector -> the identity part only, component sqrt(3).
        if plan.frozen_atoms:
            loop_scalar, mix_weights = self.frozen_loop, self.frozen_mix
        else:
            loop_scalar = self.loop_term(receiver_term, sender_term, rbf_zero, cutoff_zero)
            mix_weights = self.mix_weights()
        first, second = self.scalar_mlp[0], self.scalar_mlp[1]
        if plan.constant_weights:
            return torch.ops.openmm_tensornet.embedding_gate(
                features, loop_scalar, self.norm.weight, self.norm.bias, self.norm.eps, first.weight, first.bias,
                second.weight, second.bias, self.activation_name, mix_weights)
        return embedding_gate_reference(features, loop_scalar, self.norm.weight, self.norm.bias, self.norm.eps,
                                        first.weight, first.bias, second.weight, second.bias, self.activation_name,
                                        mix_weights)


