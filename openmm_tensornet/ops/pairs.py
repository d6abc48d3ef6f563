"""A half neighbour list with its CSR indices (by first and by second atom): what the message and interaction ops
take. :func:`pair_index` calls the compiled ``pair_csr`` op on the CPU and :func:`pair_index_reference` (the math of
its twin, :func:`openmm_tensornet.ops.reference.pair_csr`) elsewhere.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class PairIndex(NamedTuple):
    """A half list (padding rows -1) with its CSR indices: by first atom (``first_ptr``) and by second atom
    (``second_order``, ``second_ptr``)."""

    pairs: Tensor  # [2, P]
    first_ptr: Tensor  # [N + 1]
    second_order: Tensor  # [P]
    second_ptr: Tensor  # [N + 1]


def pair_index(pairs: Tensor, num_atoms: int, compiled: bool = True) -> PairIndex:
    """CSR indices of a half list ``pairs [2, P]`` (padding rows ``-1`` are left out): the compiled ``pair_csr`` op
    on the CPU, :func:`pair_index_reference` otherwise (no host synchronisation there)."""
    if compiled and pairs.device.type == "cpu":
        first_ptr, second_order, second_ptr = torch.ops.openmm_tensornet.pair_csr(pairs, num_atoms)
        return PairIndex(pairs, first_ptr, second_order, second_ptr)
    return pair_index_reference(pairs, num_atoms)


def _csr_pointer(index: Tensor, num_atoms: int) -> Tensor:
    counts = torch.zeros(num_atoms + 1, dtype=torch.long, device=index.device)
    counts = counts.index_add(0, index + 1, torch.ones_like(index))  # padding (-1) lands in slot 0, dropped below
    counts[0] = 0
    return torch.cumsum(counts, 0)


def pair_index_reference(pairs: Tensor, num_atoms: int) -> PairIndex:
    """The pure-torch twin of :func:`pair_index`."""
    first, second = pairs[0], pairs[1]
    # Padding sorts last: give it the key num_atoms.
    key = torch.where(second >= 0, second, torch.full_like(second, num_atoms))
    order = torch.argsort(key, stable=True)
    return PairIndex(pairs, _csr_pointer(first, num_atoms), order, _csr_pointer(second, num_atoms))
