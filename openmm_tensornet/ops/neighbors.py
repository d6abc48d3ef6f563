"""Neighbour lists: the typed wrapper of the compiled op and the pure-torch reference (oracle and fallback).

Convention (see ``docs/conventions.md``): an edge ``(i, j)`` carries the minimum-image displacement
``vectors = positions[i] - positions[j] - shifts . box`` and its length; ``shifts`` are the integer cell shifts found
by the search. By default the list is *full*: both ``(i, j)`` and ``(j, i)`` appear, self-pairs never do; ``half=True``
keeps ``j < i`` only. Box vectors are the rows ``a, b, c`` of OpenMM's reduced triclinic form
(``a_y = a_z = b_z = 0``, ``a_x >= 2|b_x|``, ``a_x >= 2|c_x|``, ``b_y >= 2|c_y|``), and the cutoff may be at most
half of each of ``a_x, b_y, c_z`` (OpenMM's own rule) so that the minimum image is unique.

Fixed capacity (``max_pairs``, for CUDA graphs): the outputs then have exactly ``max_pairs`` rows; unused rows have
indices ``-1``, zero vectors and zero distances, and ``num_pairs`` holds the true count. A count above the capacity is
an error (``RuntimeError``), never a silently shortened list.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .library import require_ops


class NeighborPairs(NamedTuple):
    """Pairs within the cutoff. ``E`` is the number of (ordered) pairs."""

    indices: Tensor  # [2, E] int64: receiving atom i, neighbour j
    vectors: Tensor  # [E, 3] positions[i] - positions[j] (minimum image), same dtype as positions
    distances: Tensor  # [E] lengths of ``vectors``
    num_pairs: Tensor  # [] int64: number of valid pairs (rows beyond it, if any, are padding)


def minimum_image(vectors: Tensor, box: Tensor) -> Tensor:
    """Wrap displacement ``vectors [E, 3]`` to the nearest image in a reduced triclinic ``box [3, 3]`` (rows)."""
    vectors = vectors - torch.round(vectors[:, 2:3] / box[2, 2]) * box[2]
    vectors = vectors - torch.round(vectors[:, 1:2] / box[1, 1]) * box[1]
    return vectors - torch.round(vectors[:, 0:1] / box[0, 0]) * box[0]


def box_problem(box: Tensor, cutoff: float) -> str:
    """Why ``box`` is not a finite reduced triclinic box at least twice the cutoff wide, or ``""`` when it is."""
    if box.dim() != 2 or box.shape[0] != 3 or box.shape[1] != 3:
        return "box must have shape [3, 3] (rows a, b, c); got " + str(list(box.shape)) + "."
    if not bool(torch.isfinite(box).all()):
        return "box vectors contain NaN or infinity."
    if bool(box[0, 1] != 0) or bool(box[0, 2] != 0) or bool(box[1, 2] != 0):
        first: List[float] = box[0].tolist()
        second: List[float] = box[1].tolist()
        return ("box must be in OpenMM's reduced triclinic form (a_y = a_z = b_z = 0); got a = "
                + str(first) + ", b = " + str(second)
                + ". Use the box vectors that OpenMM reports (State.getPeriodicBoxVectors).")
    slack = 1.0 + 1e-5  # the same relative tolerance as the compiled op (plugin/neighbors/checks.cpp)
    tilts = torch.stack((box[1, 0].abs() / box[0, 0], box[2, 0].abs() / box[0, 0], box[2, 1].abs() / box[1, 1]))
    if bool((2.0 * tilts > slack).any()):
        return ("box must be in OpenMM's reduced triclinic form (|b_x|, |c_x| <= a_x / 2 and |c_y| <= b_y / 2); got "
                + "b_x = " + str(float(box[1, 0])) + ", c_x = " + str(float(box[2, 0])) + ", c_y = "
                + str(float(box[2, 1])) + ". Use the box vectors that OpenMM reports (State.getPeriodicBoxVectors).")
    widths = torch.stack((box[0, 0], box[1, 1], box[2, 2]))
    if bool((widths < 2.0 * cutoff).any()):
        width_list: List[float] = widths.tolist()
        return ("the periodic box is too small for the cutoff: a_x, b_y, c_z = " + str(width_list)
                + " must each be at least twice the cutoff (" + str(cutoff)
                + "). Use a larger box (more solvent padding) or a model with a shorter cutoff.")
    return ""


def check_box(box: Tensor, cutoff: float) -> None:
    """Raise ``ValueError`` unless ``box`` is a finite reduced triclinic box at least twice the cutoff wide."""
    problem = box_problem(box, cutoff)
    if problem != "":
        raise ValueError(problem)


def nonfinite_positions_problem(positions: Tensor) -> str:
    """Which atoms have NaN or infinite coordinates, or ``""`` when none."""
    if bool(torch.isfinite(positions).all()):
        return ""
    bad: List[int] = torch.nonzero(~torch.isfinite(positions).all(dim=1))[:, 0].tolist()
    return ("positions of atoms " + str(bad[:10]) + " contain NaN or infinity "
            + "(the simulation may have become unstable).")


def _shape_problem(positions: Tensor, cutoff: float) -> str:
    """Positions that are not a float ``[N, 3]`` tensor, or a bad cutoff; ``""`` when both are fine."""
    if positions.dim() != 2 or positions.shape[1] != 3:
        return "positions must have shape [N, 3]; got " + str(list(positions.shape)) + "."
    if positions.dtype != torch.float32 and positions.dtype != torch.float64:
        return "positions must be float32 or float64; got " + str(positions.dtype) + "."
    if not cutoff > 0.0 or cutoff == float("inf"):
        return "cutoff must be a positive finite number; got " + str(cutoff) + "."
    return ""


def check_positions(positions: Tensor, cutoff: float) -> None:
    """Raise ``ValueError`` for positions that are not a finite float ``[N, 3]`` tensor or a bad cutoff."""
    problem = _shape_problem(positions, cutoff)
    if problem == "":
        problem = nonfinite_positions_problem(positions)
    if problem != "":
        raise ValueError(problem)


def search_arguments_problem(positions: Tensor, box: Optional[Tensor], batch: Optional[Tensor], cutoff: float,
                             max_pairs: int, algorithm: str) -> str:
    """What the compiled ``neighbor_pairs`` op would refuse (plugin/neighbors/checks.cpp), or ``""``: the same checks
    for the pure-torch fallback, so a caller without the Python wrapper gets the same clear errors."""
    problem = _shape_problem(positions, cutoff)
    if problem != "":
        return problem
    if max_pairs < -1:
        return "max_pairs must be -1 (no fixed capacity) or >= 0; got " + str(max_pairs)
    if box is not None:
        if box.dtype != positions.dtype:
            return "box must have the dtype of positions (" + str(positions.dtype) + "); got " + str(box.dtype)
        problem = box_problem(box, cutoff)
        if problem != "":
            return problem
    if batch is not None:
        if batch.dim() != 1 or batch.shape[0] != positions.shape[0]:
            return ("batch must have shape [N] with N = " + str(positions.shape[0]) + " atoms; got "
                    + str(list(batch.shape)))
        if batch.dtype != torch.long:
            return "batch must be int64; got " + str(batch.dtype)
    if algorithm not in ("auto", "brute", "cells"):
        return "algorithm must be 'auto', 'brute' or 'cells'; got '" + algorithm + "'"
    return nonfinite_positions_problem(positions)


def vectors_from_shifts(
    positions: Tensor, indices: Tensor, shifts: Tensor, box: Optional[Tensor], padded: bool = True
) -> Tensor:
    """``positions[i] - positions[j] - shifts @ box`` for every row of ``indices [2, E]``; padding rows give 0.

    Differentiable with respect to ``positions`` and ``box``. (The search decides "inside the cutoff" with the same
    expression in its own rounding order, so a pair right at the cutoff may get a distance within an ulp of it.)
    """
    if positions.shape[0] == 0:  # only padding rows can exist
        return torch.zeros((indices.shape[1], 3), dtype=positions.dtype, device=positions.device)
    if not padded:  # every row is a pair (``padded=False`` is only for lists without a fixed capacity)
        vectors = positions.index_select(0, indices[0]) - positions.index_select(0, indices[1])
        return vectors if box is None else vectors - shifts.to(positions.dtype) @ box
    padding = indices[0] < 0
    vectors = positions.index_select(0, indices[0].clamp(min=0)) - positions.index_select(0, indices[1].clamp(min=0))
    if box is not None:
        vectors = vectors - shifts.to(positions.dtype) @ box
    return torch.where(padding.unsqueeze(1), torch.zeros_like(vectors), vectors)


def _pad(indices: Tensor, shifts: Tensor, max_pairs: int) -> Tuple[Tensor, Tensor]:
    kept = min(int(indices.shape[1]), max_pairs)
    padded_indices = torch.full((2, max_pairs), -1, dtype=indices.dtype, device=indices.device)
    padded_shifts = torch.zeros((max_pairs, 3), dtype=shifts.dtype, device=shifts.device)
    padded_indices[:, :kept] = indices[:, :kept]
    padded_shifts[:kept] = shifts[:kept]
    return padded_indices, padded_shifts


def neighbor_search_reference(
    positions: Tensor,
    cutoff: float,
    box: Optional[Tensor] = None,
    batch: Optional[Tensor] = None,
    max_pairs: int = -1,
    half: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Brute-force pair search with the compiled op's outputs: ``(indices [2, P], shifts [P, 3] int32, num_pairs)``.

    Pairs are sorted by ``i`` then ``j``. The minimum image is found by rounding along ``c``, ``b`` and ``a`` in
    turn, which is exact for OpenMM's reduced form when the cutoff is at most half of ``a_x``, ``b_y``, ``c_z``.
    No gradients flow through this function (see :func:`vectors_from_shifts`).
    """
    num_atoms = positions.shape[0]
    device = positions.device
    if box is not None:
        check_box(box, cutoff)
    found_i: List[Tensor] = []
    found_j: List[Tensor] = []
    found_shift: List[Tensor] = []
    block = max(1, (1 << 21) // max(num_atoms, 1))
    with torch.no_grad():
        positions = positions.detach()
        columns = torch.arange(num_atoms, device=device)
        cutoff2 = torch.tensor(cutoff * cutoff, dtype=positions.dtype)
        for start in range(0, num_atoms, block):
            rows = torch.arange(start, min(num_atoms, start + block), device=device)
            index_i = rows.unsqueeze(1).expand(-1, num_atoms).reshape(-1)
            index_j = columns.repeat(rows.shape[0])
            candidates = torch.stack((index_i, index_j))
            shifts = torch.zeros((index_i.shape[0], 3), dtype=torch.int32, device=device)
            if box is not None:
                delta = positions[index_i] - positions[index_j]
                rounded: List[Tensor] = [torch.zeros_like(delta[:, 0])] * 3
                for axis in (2, 1, 0):
                    count = torch.round(delta[:, axis] / box[axis, axis])
                    delta = delta - count.unsqueeze(1) * box[axis]
                    rounded[axis] = count
                shifts = torch.stack(rounded, dim=1).to(torch.int32)
            vectors = vectors_from_shifts(positions, candidates, shifts, box)
            keep = (vectors * vectors).sum(-1) < cutoff2
            keep = keep & (index_j < index_i if half else index_j != index_i)
            if batch is not None:
                keep = keep & (batch[index_i] == batch[index_j])
            found_i.append(index_i[keep])
            found_j.append(index_j[keep])
            found_shift.append(shifts[keep])
    if len(found_i) > 0:
        indices = torch.stack((torch.cat(found_i), torch.cat(found_j)))
        shifts = torch.cat(found_shift)
    else:
        indices = torch.zeros((2, 0), dtype=torch.long, device=device)
        shifts = torch.zeros((0, 3), dtype=torch.int32, device=device)
    num_pairs = torch.tensor(indices.shape[1], dtype=torch.long, device=device)
    if max_pairs >= 0:
        indices, shifts = _pad(indices, shifts, max_pairs)
    return indices, shifts, num_pairs


def _assemble(positions: Tensor, indices: Tensor, shifts: Tensor, num_pairs: Tensor, box: Optional[Tensor],
              max_pairs: Optional[int], check_overflow: bool, fused: bool = False) -> NeighborPairs:
    if check_overflow and max_pairs is not None:
        found = int(num_pairs)
        if found > max_pairs:
            raise RuntimeError(
                "neighbour list overflow: " + str(found) + " pairs are within the cutoff but max_pairs is "
                + str(max_pairs) + "; no pair was dropped silently, the call failed instead. Increase max_pairs "
                + "(at least " + str(found) + ", better with a margin for density fluctuations) or pass None."
            )
    box_grad = box is not None and box.requires_grad
    if fused and positions.device.type == "cpu" and not box_grad:
        # One compiled pass (vectors and distances, analytic backward to positions); the twin below otherwise.
        vectors, distances = torch.ops.openmm_tensornet.pair_vectors(positions, indices, shifts, box)
        return NeighborPairs(indices, vectors, distances, num_pairs)
    vectors = vectors_from_shifts(positions, indices, shifts, box, padded=max_pairs is not None)
    return NeighborPairs(indices, vectors, torch.linalg.vector_norm(vectors, dim=-1), num_pairs)


def neighbor_pairs_reference(positions: Tensor, cutoff: float, box: Optional[Tensor] = None,
                             batch: Optional[Tensor] = None, max_pairs: Optional[int] = None, half: bool = False,
                             check_overflow: bool = True) -> NeighborPairs:
    """All pairs ``i != j`` with distance ``< cutoff``, by brute force in pure torch (the test oracle).

    Same arguments and result as :func:`neighbor_pairs`. Gradients flow to ``positions`` and ``box`` through
    ``vectors`` and ``distances``.
    """
    capacity = -1 if max_pairs is None else max_pairs
    indices, shifts, num_pairs = neighbor_search_reference(positions, cutoff, box, batch, capacity, half)
    return _assemble(positions, indices, shifts, num_pairs, box, max_pairs, check_overflow)


def neighbor_pairs(positions: Tensor, cutoff: float, box: Optional[Tensor] = None, batch: Optional[Tensor] = None,
                   max_pairs: Optional[int] = None, half: bool = False, algorithm: str = "auto",
                   check_inputs: bool = True, check_overflow: bool = True, fused: bool = False) -> NeighborPairs:
    """Pairs closer than ``cutoff`` under the minimum-image convention, from the compiled op (TorchScript-able).

    Parameters
    ----------
    positions : Tensor [N, 3]
        Coordinates, float32 or float64 (any length unit, the same as ``cutoff`` and ``box``).
    cutoff : float
        Pairs strictly closer than this are returned.
    box : Tensor [3, 3], optional
        Periodic box vectors as rows in OpenMM's reduced triclinic form; each of ``a_x, b_y, c_z`` at least
        ``2 * cutoff``. Positions need not be wrapped into the box.
    batch : Tensor [N] int64, optional
        Molecule index of every atom; no pair is formed across molecules.
    max_pairs : int, optional
        Fixed capacity: the outputs have exactly this many rows (padding: index -1, zero vector, zero distance).
        ``None`` returns exactly the pairs found.
    half : bool
        Keep only ``j < i`` (each unordered pair once).
    algorithm : str
        ``"auto"`` (brute force for small systems, cell list for large ones), ``"brute"`` or ``"cells"``.
    check_inputs : bool
        Check values (finite positions, box form and size); costs a device synchronisation on GPUs.
    check_overflow : bool
        Raise ``RuntimeError`` when more than ``max_pairs`` pairs exist. Turning it off (for CUDA graphs) leaves the
        check to the caller through ``num_pairs``.
    fused : bool
        On the CPU, compute vectors and distances in one compiled pass (``pair_vectors``): faster, but first
        derivatives only, with respect to positions only (when the box requires gradients the plain path is used).

    Returns
    -------
    NeighborPairs
        ``indices [2, P]``, ``vectors [P, 3] = positions[i] - positions[j]`` (minimum image), ``distances [P]``,
        ``num_pairs []``. Gradients flow to ``positions`` and ``box``.
    """
    if not torch.jit.is_scripting():
        require_ops()
    if check_inputs:
        check_positions(positions, cutoff)
        if box is not None:
            check_box(box, cutoff)
        if max_pairs is not None and max_pairs < 0:
            raise ValueError("max_pairs must be None or >= 0; got " + str(max_pairs) + ".")
    capacity = -1 if max_pairs is None else max_pairs
    detached_box: Optional[Tensor] = None
    if box is not None:
        detached_box = box.detach()
    indices, shifts, num_pairs = torch.ops.openmm_tensornet.neighbor_pairs(
        positions.detach(), detached_box, batch, cutoff, capacity, half, algorithm
    )
    return _assemble(positions, indices, shifts, num_pairs, box, max_pairs, check_overflow, fused)
