"""Pure-torch neighbour list: the reference oracle and the fallback of the compiled op.

Convention (see ``docs/conventions.md``): an edge ``(i, j)`` carries the minimum-image displacement
``vectors = positions[i] - positions[j]`` and its length. The list is *full*: both ``(i, j)`` and ``(j, i)``
appear, self-pairs never do. Box vectors are the rows ``a, b, c`` of OpenMM's reduced triclinic form
(``a_y = a_z = b_z = 0``, ``a_x >= 2|b_x|``, ``a_x >= 2|c_x|``, ``b_y >= 2|c_y|``), and the cutoff may be at most
half of each of ``a_x, b_y, c_z`` so that the minimum image is unique.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch
from torch import Tensor


class NeighborPairs(NamedTuple):
    """Pairs within the cutoff. ``E`` is the number of (ordered) pairs."""

    indices: Tensor  # [2, E] int64: receiving atom i, neighbour j
    vectors: Tensor  # [E, 3] positions[i] - positions[j] (minimum image), same dtype as positions
    distances: Tensor  # [E] lengths of ``vectors``
    num_pairs: Tensor  # [] int64: number of valid pairs (== E here; padded lists may hold more rows)


def minimum_image(vectors: Tensor, box: Tensor) -> Tensor:
    """Wrap displacement ``vectors [E, 3]`` to the nearest image in a reduced triclinic ``box [3, 3]`` (rows)."""
    vectors = vectors - torch.round(vectors[:, 2:3] / box[2, 2]) * box[2]
    vectors = vectors - torch.round(vectors[:, 1:2] / box[1, 1]) * box[1]
    return vectors - torch.round(vectors[:, 0:1] / box[0, 0]) * box[0]


def check_box(box: Tensor, cutoff: float) -> None:
    """Raise ``ValueError`` unless ``box`` is a finite reduced triclinic box at least twice the cutoff wide."""
    if box.dim() != 2 or box.shape[0] != 3 or box.shape[1] != 3:
        raise ValueError("box must have shape [3, 3] (rows a, b, c); got " + str(list(box.shape)) + ".")
    if not bool(torch.isfinite(box).all()):
        raise ValueError("box vectors contain NaN or infinity.")
    if bool(box[0, 1] != 0) or bool(box[0, 2] != 0) or bool(box[1, 2] != 0):
        first: List[float] = box[0].tolist()
        second: List[float] = box[1].tolist()
        raise ValueError(
            "box must be in OpenMM's reduced triclinic form (a_y = a_z = b_z = 0); got a = "
            + str(first) + ", b = " + str(second)
            + ". Use the box vectors that OpenMM reports (State.getPeriodicBoxVectors)."
        )
    widths = torch.stack((box[0, 0], box[1, 1], box[2, 2]))
    if bool((widths < 2.0 * cutoff).any()):
        width_list: List[float] = widths.tolist()
        raise ValueError(
            "the periodic box is too small for the cutoff: a_x, b_y, c_z = " + str(width_list)
            + " must each be at least twice the cutoff (" + str(cutoff)
            + "). Use a larger box (more solvent padding) or a model with a shorter cutoff."
        )


def neighbor_pairs_reference(
    positions: Tensor, cutoff: float, box: Optional[Tensor] = None, batch: Optional[Tensor] = None
) -> NeighborPairs:
    """All ordered pairs ``i != j`` with distance ``< cutoff``, by brute force in row blocks.

    Parameters
    ----------
    positions : Tensor [N, 3]
        Coordinates (any length unit, the same as ``cutoff`` and ``box``).
    cutoff : float
        Pairs closer than this are returned (strictly less than).
    box : Tensor [3, 3], optional
        Periodic box vectors as rows, reduced triclinic form; ``None`` for no periodicity.
    batch : Tensor [N], optional
        Molecule index of every atom; no pair is formed across molecules.

    Gradients flow to ``positions`` and ``box`` through ``vectors`` and ``distances``.
    """
    num_atoms = positions.shape[0]
    device = positions.device
    if box is not None:
        check_box(box, cutoff)
    found_i: List[Tensor] = []
    found_j: List[Tensor] = []
    block = max(1, (1 << 22) // max(num_atoms, 1))
    with torch.no_grad():
        columns = torch.arange(num_atoms, device=device)
        for start in range(0, num_atoms, block):
            rows = torch.arange(start, min(num_atoms, start + block), device=device)
            delta = (positions[rows].unsqueeze(1) - positions.unsqueeze(0)).reshape(-1, 3)
            if box is not None:
                delta = minimum_image(delta, box)
            keep = (delta * delta).sum(-1).view(rows.shape[0], num_atoms) < cutoff * cutoff
            keep = keep & (rows.unsqueeze(1) != columns.unsqueeze(0))
            if batch is not None:
                keep = keep & (batch[rows].unsqueeze(1) == batch.unsqueeze(0))
            local = torch.nonzero(keep)
            found_i.append(rows[local[:, 0]])
            found_j.append(local[:, 1])
    if len(found_i) > 0:
        index_i = torch.cat(found_i)
        index_j = torch.cat(found_j)
    else:
        index_i = torch.zeros(0, dtype=torch.long, device=device)
        index_j = torch.zeros(0, dtype=torch.long, device=device)
    vectors = positions[index_i] - positions[index_j]
    if box is not None:
        vectors = minimum_image(vectors, box)
    distances = torch.linalg.vector_norm(vectors, dim=-1)
    indices = torch.stack((index_i, index_j))
    return NeighborPairs(indices, vectors, distances, torch.tensor(index_i.shape[0], device=device))
