"""Shared fixtures: seeded molecules, tolerances per dtype, small model factories."""

from __future__ import annotations

from typing import Dict

import pytest
import torch

from openmm_tensornet import TensorNet, load_ops


# Importing never compiles the ops. Load (compiling once, into the cache) before the test modules are collected:
# their `skipif(not ops_status().compiled)` marks are evaluated at collection, and on a fresh machine (CI) a
# session fixture would come too late and skip every compiled-op test.
OPS = load_ops()

# One tolerance table per dtype (relative unless named otherwise).
TOLERANCES: Dict[torch.dtype, Dict[str, float]] = {
    torch.float64: {"energy": 1e-10, "forces": 1e-9, "tensor": 1e-9},
    torch.float32: {"energy": 2e-5, "forces": 5e-4, "tensor": 5e-4},
}


def random_molecule(num_atoms: int, seed: int, dtype=torch.float64, min_distance: float = 0.95, density: float = 0.08):
    """Atomic numbers (H, C, N, O, F, S) and positions (Å) with no two atoms closer than ``min_distance``."""
    generator = torch.Generator().manual_seed(seed)
    side = (num_atoms / density) ** (1.0 / 3.0)
    points = []
    while len(points) < num_atoms:
        candidate = torch.rand(3, generator=generator, dtype=torch.float64) * side
        if all(float((candidate - p).norm()) >= min_distance for p in points):
            points.append(candidate)
    elements = torch.tensor([1, 6, 7, 8, 9, 16])
    z = elements[torch.randint(0, len(elements), (num_atoms,), generator=generator)]
    return z, torch.stack(points).to(dtype)


def random_rotation(seed: int, proper: bool = True) -> torch.Tensor:
    """A random orthogonal 3x3 matrix (float64) with determinant +1 (``proper``) or -1."""
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def small_model(seed: int = 0, **kwargs) -> TensorNet:
    """A small randomly initialised TensorNet with non-trivial biases and norms (eval mode)."""
    settings = dict(hidden_channels=16, num_layers=2, num_rbf=8, cutoff_upper=4.0, max_z=20, dtype="float64")
    settings.update(kwargs)
    torch.manual_seed(seed)
    model = TensorNet(**settings)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.add_(0.2 * torch.randn_like(parameter))
        model.energy_std.fill_(1.3)
        model.energy_mean.fill_(-2.0)
        model.atomref.copy_(torch.randn_like(model.atomref))
    return model.eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """Relative agreement measured against the size of ``expected`` (robust for vectors with small entries)."""
    actual, expected = actual.detach(), expected.detach()
    scale = max(float(expected.abs().max()), 1e-12)
    error = float((actual - expected).abs().max())
    assert error <= rtol * scale, f"{what}: max |diff| = {error:.3e} exceeds {rtol:.1e} x {scale:.3e}"


@pytest.fixture
def molecule():
    return random_molecule(12, seed=3)

