"""TensorNet's interaction layer: normalise, decompose, mix, pass messages, combine by matrix products."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..ops.pairs import PairIndex, pair_index
from ..ops.reference import interaction_reference, radial_mlp_reference
from ..ops.tensors import basis, part_rows
from .plan import ExecutionPlan


class Interaction(nn.Module):
    """One interaction layer on ``X [N, 9, F]`` (irreducible components, see :mod:`openmm_tensornet.ops.tensors`).

    ``X <- X / (|X|^2 + 1)``; ``Y = mix(I) + mix(A) + mix(S)``; messages ``M_i = sum_j f_ij * (I_j, A_j, S_j)`` with
    radial weights ``f`` (an MLP of the radial basis times the cosine cutoff, separately for the I, A and S parts;
    the sum includes the self-loop ``j = i`` at distance 0); ``C = (1 + 0.1 q) (Y M + M Y)`` for O(3),
    ``C = 2 Y M`` for SO(3); ``C``'s parts divided by ``|C|^2 + 1`` and mixed again into ``dX``;
    ``X <- X + dX + (1 + 0.1 q) dX dX``. ``q`` is the molecule's total charge.

    With ``charge_channels > 0`` (torchmd-net's ``tensornet2``) the radial MLP also takes the predicted charges of
    the receiving and the sending atom (``[rbf, q_i, q_j]``), so the weights of a pair differ by direction, and the
    total-charge factors are 1 (the charges carry the total charge instead).
    """

    def __init__(
        self,
        num_rbf: int,
        hidden_channels: int,
        activation: str,
        equivariance_group: str,
        dtype: torch.dtype,
        charge_channels: int = 0,
    ):
        super().__init__()
        self.charge_channels = charge_channels
        self.activation_name = activation  # a name of choices.Activation (the radial MLP takes it by name)
        f = hidden_channels
        self.hidden_channels = f
        self.so3 = equivariance_group == "SO(3)"
        self.radial_mlp = nn.ModuleList(
            [nn.Linear(num_rbf + 2 * charge_channels, f, dtype=dtype), nn.Linear(f, 2 * f, dtype=dtype), nn.Linear(2 * f, 3 * f, dtype=dtype)]
        )
        self.mix_in = nn.ModuleList([nn.Linear(f, f, bias=False, dtype=dtype) for _ in range(3)])
        self.mix_out = nn.ModuleList([nn.Linear(f, f, bias=False, dtype=dtype) for _ in range(3)])
        self.register_buffer("basis_matrix", basis(dtype).reshape(9, 9), persistent=False)
        # Inference constants (see TensorNet.freeze_for_inference): the self-loop weights and the stacked mixing
        # matrices; empty = computed on every call.
        self.register_buffer("frozen_loop", torch.zeros(0, dtype=dtype), persistent=False)
        self.register_buffer("frozen_mix_in", torch.zeros(0, dtype=dtype), persistent=False)
        self.register_buffer("frozen_mix_out", torch.zeros(0, dtype=dtype), persistent=False)

    @torch.jit.ignore
    def freeze(self, rbf_zero: Tensor, cutoff_zero: Tensor) -> None:
        """Store the inference constants (frozen weights only; cleared by ``unfreeze``)."""
        with torch.no_grad():
            if self.charge_channels == 0:  # with charges the self-loop weights depend on them
                self.frozen_loop = part_rows(self.radial_weights(rbf_zero, cutoff_zero, False)[0]).contiguous()
            mix_in, mix_out = self.mix_weights()
            self.frozen_mix_in = part_rows(mix_in).contiguous()  # per component, [9, F, F]
            self.frozen_mix_out = part_rows(mix_out).contiguous()

    @torch.jit.ignore
    def unfreeze(self) -> None:
        empty = torch.zeros(0, dtype=self.basis_matrix.dtype, device=self.basis_matrix.device)
        self.frozen_loop, self.frozen_mix_in, self.frozen_mix_out = empty, empty.clone(), empty.clone()

    def weights_constant(self) -> bool:
        """Whether none of the weights needs a gradient (the whole-layer op can run)."""
        return not (self.radial_mlp[0].weight.requires_grad or self.radial_mlp[1].weight.requires_grad
                    or self.radial_mlp[2].weight.requires_grad or self.mix_in[0].weight.requires_grad
                    or self.mix_out[0].weight.requires_grad)

    def mix_weights(self) -> Tuple[Tensor, Tensor]:
        """The I, A and S mixing matrices before and after the messages, each stacked as ``[3, F, F]``."""
        mix_in = torch.stack((self.mix_in[0].weight, self.mix_in[1].weight, self.mix_in[2].weight))
        return mix_in, torch.stack((self.mix_out[0].weight, self.mix_out[1].weight, self.mix_out[2].weight))

    def radial_weights(self, rbf: Tensor, cutoff: Tensor, fused: bool) -> Tensor:
        """``[P, 3, F]`` weights of the I, A and S messages from the radial basis ``rbf [P, K]`` and the cosine
        cutoff ``[P]`` of the distances (``fused``: the compiled inference op)."""
        weights: List[Tensor] = []
        biases: List[Tensor] = []
        for linear in self.radial_mlp:
            weights.append(linear.weight)
            biases.append(linear.bias)
        if fused:
            radial = torch.ops.openmm_tensornet.radial_mlp(rbf, cutoff, weights, biases, self.activation_name)
        else:
            radial = radial_mlp_reference(rbf, cutoff, weights, biases, self.activation_name)
        return radial.view(-1, 3, self.hidden_channels)

    def forward(
        self, features: Tensor, pairs: Tensor, index: PairIndex, cutoff: Tensor, rbf: Tensor, rbf_zero: Tensor,
        cutoff_zero: Tensor, charge_factor: Tensor, plan: ExecutionPlan, charges: Optional[Tensor] = None,
    ) -> Tensor:
        """``cutoff [P]``: the cosine cutoff of the pair distances; ``rbf_zero``, ``cutoff_zero``: both at distance
        0 (the self-loop). ``plan``: which implementations run (the whole layer is one op with constant weights).
        ``charges [N, q]``: the predicted charge channels (``charge_channels > 0`` only)."""
        if charges is not None:
            return self._forward_with_charges(features, pairs, index, cutoff, rbf, rbf_zero, cutoff_zero,
                                              charge_factor, plan, charges)
        fused = plan.constant_weights
        radial = self.radial_weights(rbf, cutoff, fused)
        if plan.frozen_atoms:
            loop, mix_in, mix_out = self.frozen_loop, self.frozen_mix_in, self.frozen_mix_out
        else:
            loop = self.radial_weights(rbf_zero, cutoff_zero, fused)[0]  # [3, F]
            mix_in, mix_out = self.mix_weights()
        if fused:
            return torch.ops.openmm_tensornet.tensor_interaction(
                features, radial, loop, charge_factor, mix_in, mix_out, index.pairs, index.first_ptr,
                index.second_order, index.second_ptr, self.so3,
            )
        return interaction_reference(features, radial, loop, charge_factor, mix_in, mix_out, pairs, index, self.so3,
                                     self.basis_matrix, plan.compiled)

    def _forward_with_charges(
        self, features: Tensor, pairs: Tensor, index: PairIndex, cutoff: Tensor, rbf: Tensor, rbf_zero: Tensor,
        cutoff_zero: Tensor, charge_factor: Tensor, plan: ExecutionPlan, charges: Tensor,
    ) -> Tensor:
        fused = plan.constant_weights
        first, second = charges.index_select(0, pairs[0]), charges.index_select(0, pairs[1])
        to_first = self.radial_weights(torch.cat((rbf, first, second), dim=1), cutoff, fused)
        to_second = self.radial_weights(torch.cat((rbf, second, first), dim=1), cutoff, fused)
        num_atoms = charges.shape[0]
        loop_input = torch.cat((rbf_zero.expand(num_atoms, -1), charges, charges), dim=1)
        loop = self.radial_weights(loop_input, cutoff_zero.expand(num_atoms), fused)  # [N, 3, F], per atom
        if plan.frozen_atoms:
            mix_in, mix_out = self.frozen_mix_in, self.frozen_mix_out
        else:
            mix_in, mix_out = self.mix_weights()
        if fused:
            return self._fused_directed(features, pairs, to_first, to_second, loop, mix_in, mix_out)
        return interaction_reference(features, to_first, loop, charge_factor, mix_in, mix_out, pairs, index, self.so3,
                                     self.basis_matrix, plan.compiled, to_second)

    def _fused_directed(self, features: Tensor, pairs: Tensor, to_first: Tensor, to_second: Tensor, loop: Tensor,
                        mix_in: Tensor, mix_out: Tensor) -> Tensor:
        """The fused layer op with direction-dependent weights: each directed pair ``j -> i`` (and each self-loop)
        becomes the half-list pair ``(i, j + N)`` of a doubled atom set whose second half copies the features, so
        the op's sums into atom ``i`` are exactly the directed ones; what it sums into the copies is discarded
        (their outputs get no gradient). The op's own self-loop weights are then zero."""
        num_atoms = features.shape[0]
        atoms = torch.arange(num_atoms, dtype=pairs.dtype, device=pairs.device)
        receivers = torch.cat((pairs[0], pairs[1], atoms))
        senders = torch.cat((pairs[1], pairs[0], atoms)) + num_atoms
        order = torch.argsort(receivers, stable=True)  # the op wants its half list sorted by first atom
        directed = torch.stack((receivers.index_select(0, order), senders.index_select(0, order)))
        weights = torch.cat((to_first, to_second, loop)).index_select(0, order)
        doubled = pair_index(directed, 2 * num_atoms, True)
        no_loop = torch.zeros(3, features.shape[2], dtype=features.dtype, device=features.device)
        ones = torch.ones(2 * num_atoms, dtype=features.dtype, device=features.device)
        out = torch.ops.openmm_tensornet.tensor_interaction(
            torch.cat((features, features)), weights, no_loop, ones, mix_in, mix_out, doubled.pairs,
            doubled.first_ptr, doubled.second_order, doubled.second_ptr, self.so3)
        return out[:num_atoms]


