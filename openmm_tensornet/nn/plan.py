"""Which implementation each step of a TensorNet forward pass uses, decided once per call.

:meth:`openmm_tensornet.nn.model.TensorNet.plan` makes the decision from the mode, the device and whether the
weights can change; the embedding and every interaction layer receive the plan instead of deciding again.
"""

from __future__ import annotations

from typing import NamedTuple


class ExecutionPlan(NamedTuple):
    """``compiled``: the compiled ops for the neighbour list, its CSR index and the messages (eval mode; the
    pure-torch twins in training, which need gradients of gradients). ``constant_weights``: ``compiled`` and no
    weight needs a gradient, so whole-layer ops run (radial MLPs, the interaction layer, the embedding gate, the
    readout), which give gradients to positions but not to weights. ``frozen_atoms``: ``constant_weights`` and the
    model was frozen for these atoms (``freeze_for_inference``), so per-atom terms, self-loop weights and stacked
    mixing matrices are precomputed constants. ``fused_geometry``: one compiled pass for the radial basis, the
    cutoff and the edge components of every pair (CPU inference with a fixed basis)."""

    compiled: bool
    constant_weights: bool
    frozen_atoms: bool
    fused_geometry: bool
