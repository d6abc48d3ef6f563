"""Import-time guard against a torch that the installed openmmtorch was not compiled for.

openmmtorch's pip wheels link against one torch release series. With another torch they import fine and then
fail on every force evaluation (e.g. "set_stride is not allowed on a Tensor created from .data" with torch 2.14),
or crash with undefined symbols. We turn that into one clear error at ``import openmm_tensornet``.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Optional

# openmmtorch wheel version on PyPI -> the torch release series it was compiled against.
OPENMMTORCH_TORCH_SERIES = {"1.5": "2.9"}
SKIP_VARIABLE = "OPENMM_TENSORNET_SKIP_ABI_CHECK"


def torch_series(version: str) -> str:
    """``'2.9.1+cu128'`` -> ``'2.9'``."""
    return ".".join(version.split("+")[0].split(".")[:2])


def abi_problem(torch_version: str, openmmtorch_version: Optional[str]) -> Optional[str]:
    """The error message for an incompatible pair of versions, or ``None`` when they fit (or are unknown)."""
    if openmmtorch_version is None:
        return None
    expected = OPENMMTORCH_TORCH_SERIES.get(openmmtorch_version)
    if expected is None or torch_series(torch_version) == expected:
        return None
    return (
        f"openmmtorch {openmmtorch_version} from PyPI is compiled against torch {expected}.x, but torch "
        f"{torch_version} is installed; every TorchForce evaluation would fail. Fix: "
        f"pip install 'torch=={expected}.*' (or reinstall openmm-tensornet, which pins it). "
        f"If you built openmmtorch yourself against this torch, set {SKIP_VARIABLE}=1."
    )


def _installed_version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_torch_abi() -> None:
    """Raise ``ImportError`` if the installed torch does not match the installed openmmtorch wheel."""
    if os.environ.get(SKIP_VARIABLE, "") not in ("", "0"):
        return
    import torch

    message = abi_problem(torch.__version__, _installed_version("openmmtorch"))
    if message is not None:
        raise ImportError(message)
