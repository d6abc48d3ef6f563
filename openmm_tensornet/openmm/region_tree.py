"""How a TorchForce makes an ML region whole inside a periodic box: a tree along the region's bonds.

OpenMM hands the force the positions it integrates, which may be wrapped (a PDB written from a periodic run) or
drift across the box. The region is made whole by placing every atom at the nearest image of its parent in a tree
whose edges are the region's bonds: a bond is always far shorter than half the box, so this is exact for a
molecule of any length. Parts of the region that no bond joins (or a region given without bonds) hang from the
region's first atom at its nearest image, which is right only when the region spans less than half the box
(the force checks that for a region of several parts).

The tree is fixed when the force is made. At each step the position of an atom relative to the first one is the sum
of the minimum-image bond vectors along its path, summed by pointer jumping in ceil(log2(depth)) gathers.
"""

from __future__ import annotations

from collections import deque
from typing import List, Sequence, Tuple

__all__ = ["RegionTree", "region_tree"]


class RegionTree:
    """``parent[i]``: the atom that atom ``i`` hangs from (``parent[0] == 0``); ``jumps[k]``: the ancestor
    ``2**k`` levels up (the root's is the root); ``anchors``: atom 0 and the first atom of every other part, the
    atoms placed by the nearest image of atom 0 rather than along a bond."""

    def __init__(self, parent: List[int], jumps: List[List[int]], anchors: List[int]):
        self.parent, self.jumps, self.anchors = parent, jumps, anchors


def region_tree(count: int, bonds: Sequence[Tuple[int, int]] = ()) -> RegionTree:
    """The tree of a region of ``count`` atoms with ``bonds`` (pairs of positions within the region, 0-based)."""
    neighbours: List[List[int]] = [[] for _ in range(count)]
    for first, second in bonds:
        if not (0 <= first < count and 0 <= second < count) or first == second:
            raise ValueError(f"bond ({first}, {second}) does not join two different atoms of the {count}-atom region.")
        neighbours[first].append(second)
        neighbours[second].append(first)
    parent = [-1] * count
    depth = [0] * count
    anchors: List[int] = []
    for start in range(count):
        if parent[start] != -1:
            continue
        anchors.append(start)
        parent[start] = 0  # atom 0 is its own parent; other parts hang from atom 0 by the nearest image
        depth[start] = 0 if start == 0 else 1
        queue = deque([start])
        while queue:
            atom = queue.popleft()
            for other in neighbours[atom]:
                if parent[other] == -1 and other != 0:
                    parent[other] = atom
                    depth[other] = depth[atom] + 1
                    queue.append(other)
    jumps: List[List[int]] = []
    ancestor = list(parent)
    reach = 1
    while reach < max(depth, default=0):
        jumps.append(ancestor)
        ancestor = [ancestor[a] for a in ancestor]
        reach *= 2
    return RegionTree(parent, jumps, anchors)
