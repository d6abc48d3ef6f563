"""Which OpenMM platform runs a simulation: the fastest one on which a TensorNet ``TorchForce`` works, in OpenMM's
own order (CUDA > OpenCL > CPU > Reference), with mixed precision on GPUs; and what a GPU machine lacks.

The CUDA platforms are separate wheels on PyPI (``openmm-cuda-12`` for OpenMM, ``openmm-torch-cuda-12`` for
openmm-torch's TorchForce): ``pip install "openmm-tensornet[cuda]"`` brings both, matched to the pinned versions.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

PREFERENCE = ("CUDA", "OpenCL", "CPU", "Reference")
GPU_PLATFORMS = ("CUDA", "OpenCL")
PRECISIONS = ("single", "mixed", "double")
CUDA_EXTRA = ('pip install "openmm-tensornet[cuda]" (or: pip install openmm-cuda-12==8.6.1 '
              "openmm-torch-cuda-12==1.5)")


class PlatformChoice(NamedTuple):
    name: str  # OpenMM platform name
    properties: Dict[str, str]  # platform properties (Precision on GPUs)
    reason: str  # why this one, for logs


class Probe(NamedTuple):
    energy: Optional[float]  # kJ/mol from the platform; None when it failed
    expected: float  # the direct evaluation of the same model
    error: str  # the failure, or ""


def available_platforms() -> List[str]:
    import openmm

    return [openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())]


def gpu_visible() -> bool:
    """An NVIDIA GPU on this machine (torch sees it, or the driver's device files or tool are there)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except Exception:  # noqa: BLE001
        pass
    return any(Path("/dev").glob("nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def probe_torch_force(name: str, precision: Optional[str] = None) -> Probe:
    """A three-atom TensorNet TorchForce on platform ``name`` against the direct evaluation of the model."""
    import numpy as np
    import openmm
    import openmm.unit as unit
    import torch

    from ..nn.model import TensorNet
    from ..units import KJ_PER_MOL
    from .export import create_torch_force

    torch.manual_seed(0)
    model = TensorNet(hidden_channels=8, num_layers=1, num_rbf=4, cutoff_upper=4.0, max_z=10, dtype="float32")
    positions = np.array([[0.0, 0.0, 0.0], [0.12, 0.0, 0.0], [-0.05, 0.09, 0.0]])
    output = model(torch.tensor([6, 8, 1]), torch.tensor(positions * 10, dtype=torch.float32))
    expected = float(output.energy.sum().detach()) * KJ_PER_MOL["eV"]
    try:
        system = openmm.System()
        for _ in range(3):
            system.addParticle(12.0)
        system.addForce(create_torch_force(model, [6, 8, 1]))
        properties = {"Precision": precision} if precision else {}
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(name),
                                 properties)
        context.setPositions(positions)
        energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        return Probe(energy, expected, "")
    except Exception as error:  # noqa: BLE001
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        return Probe(None, expected, message[:300])


def choose_platform(requested: str = "auto", precision: Optional[str] = None) -> PlatformChoice:
    """``requested`` "auto": the first of CUDA, OpenCL, CPU, Reference that is installed and runs a TorchForce
    (GPU platforms are probed once with a tiny model); otherwise that platform by name. ``precision`` (GPUs
    only) defaults to "mixed" there, OpenMM's recommendation for MD."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; got {precision!r}.")
    names = available_platforms()
    if requested != "auto":
        if requested not in names:
            hint = f" For CUDA: {CUDA_EXTRA}." if requested == "CUDA" else ""
            raise ValueError(f"OpenMM platform {requested!r} is not available; available: {names}.{hint}")
        if precision is not None and requested not in GPU_PLATFORMS:
            raise ValueError(f"precision applies to the CUDA and OpenCL platforms, not {requested}.")
        return PlatformChoice(requested, _properties(requested, precision), "as requested")
    skipped = []
    for name in PREFERENCE:
        if name not in names:
            continue
        if name in GPU_PLATFORMS:
            probe = probe_torch_force(name, precision or "mixed")
            if probe.energy is None:
                skipped.append(f"{name} ({probe.error})")
                continue
        elif precision is not None:
            skipped.append(f"{name} (precision={precision} is for GPU platforms)")
            continue
        reason = "the fastest available" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
        return PlatformChoice(name, _properties(name, precision), reason)
    raise ValueError(f"no OpenMM platform can run a TorchForce here ({'; '.join(skipped) or names}); run "
                     "'openmm-tensornet doctor'.")


def _properties(name: str, precision: Optional[str]) -> Dict[str, str]:
    if name in GPU_PLATFORMS:
        return {"Precision": precision or "mixed"}
    return {}
