"""``openmm-tensornet doctor``: check the installation end to end and say how to fix what is broken.

Prints the versions of Python, torch, OpenMM, openmmtorch and openmm-tensornet; whether the compiled neighbour ops
are loaded; the OpenMM platforms and torch devices; then evaluates a tiny TensorNet TorchForce on every OpenMM
platform and compares it with the direct model evaluation. Every problem comes with its fix (most installation
failures are binary mismatches between torch and the openmmtorch build).
"""

from __future__ import annotations

import platform as python_platform
import re
import traceback
from dataclasses import dataclass
from typing import Callable, List


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _checks() -> List[Check]:
    checks: List[Check] = []
    checks.append(Check("python", True, python_platform.python_version()))
    try:
        import torch
    except Exception as error:  # noqa: BLE001
        return checks + [Check("torch", False, f"cannot import torch: {error}", "pip install 'torch==2.9.*'")]
    checks.append(Check("torch", True, f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})"))
    try:
        import openmm
    except Exception as error:  # noqa: BLE001
        return checks + [Check("openmm", False, f"cannot import openmm: {error}", "pip install 'openmm==8.6.1'")]
    checks.append(Check("openmm", True, openmm.__version__))
    try:
        import openmm_tensornet
        from openmm_tensornet.ops.abi import _installed_version
    except ImportError as error:
        return checks + [Check("openmm-tensornet", False, str(error), "follow the fix in the message above")]
    checks.append(Check("openmm-tensornet", True, openmm_tensornet.__version__))
    try:
        from ..openmm.openmmtorch_module import import_openmmtorch

        import_openmmtorch()

        checks.append(Check("openmmtorch", True, _installed_version("openmmtorch") or "?"))
    except Exception as error:  # noqa: BLE001
        checks.append(Check("openmmtorch", False, f"cannot import openmmtorch: {error}",
                            "pip install openmmtorch==1.5 (it needs torch 2.9.x; import torch before openmmtorch)"))
        return checks
    status = openmm_tensornet.load_ops()
    checks.append(Check("compiled ops", status.compiled,
                        f"loaded from {status.library}" if status.compiled else status.reason,
                        "" if status.compiled else "install g++ and ninja (pip install ninja), then run "
                        "'openmm-tensornet build-ops' to see the compiler's messages"))
    failures = [f for f in openmm.Platform.getPluginLoadFailures() if "Torch" in f]
    # GPU variants fail to load on machines without that driver: informational. The TorchForce checks below
    # test the platforms that are present.
    driverless = [f for f in failures if re.search(r"lib(OpenCL|cuda|nvrtc)\S*: cannot open", f)]
    serious = [f for f in failures if f not in driverless and not _reloaded(f)]
    if driverless:
        names = sorted({m.group(1) for f in driverless for m in [re.search(r"(libOpenMMTorch\w+)\.so", f)] if m})
        checks.append(Check("openmm-torch GPU plugins", True, f"not loaded, no driver on this machine: {names}"))
    checks.append(Check("openmm-torch plugins", not serious, "loaded" if not serious else "; ".join(serious)[:400],
                        "" if not serious else "reinstall openmmtorch for this torch (a binary mismatch)"))
    from openmm_tensornet.openmm.platforms import available_platforms

    platforms = available_platforms()
    checks.append(Check("OpenMM platforms", True, ", ".join(platforms)))
    devices = ["cpu"] + ([f"cuda ({torch.cuda.get_device_name(0)})"] if torch.cuda.is_available() else [])
    checks.append(Check("torch devices", True, ", ".join(devices)))
    checks.append(_gpu_check(platforms))
    for name in platforms:
        checks.append(_try_platform(name))
    return checks


def _reloaded(failure: str) -> bool:
    """Failures that ``ensure_torch_plugins`` repaired (openmm imported before torch)."""
    from openmm_tensornet.openmm.export import _reloaded_plugins

    return any(path in failure for path in _reloaded_plugins)


def _try_platform(name: str) -> Check:
    """A three-atom TensorNet TorchForce on ``name`` against the direct evaluation."""
    from openmm_tensornet.openmm.platforms import CUDA_EXTRA, probe_torch_force

    try:
        probe = probe_torch_force(name)
    except Exception as error:  # noqa: BLE001 (the model itself failed: not a platform problem)
        return Check(f"TorchForce on {name}", False, str(error)[:300] or traceback.format_exc(limit=1),
                     "see the error; 'openmm-tensornet build-ops' shows compiler problems")
    if probe.energy is not None:
        ok = abs(probe.energy - probe.expected) <= 1e-4 * max(1.0, abs(probe.expected))
        return Check(f"TorchForce on {name}", ok, f"{probe.energy:.6f} kJ/mol (direct {probe.expected:.6f})",
                     "" if ok else "the platform gives another energy than the model: report this with the output")
    if "set_stride" in probe.error or "undefined symbol" in probe.error:
        fix = "torch and openmmtorch do not match: pip install 'torch==2.9.*' openmmtorch==1.5"
    elif name == "CUDA" and re.search(r"kernel|TorchForce|plugin", probe.error, re.IGNORECASE):
        fix = f"OpenMM's CUDA platform is there but openmm-torch's CUDA plugin is not: {CUDA_EXTRA}"
    elif name in ("CUDA", "OpenCL"):
        fix = f"the {name} platform is present but not usable here (driver/toolkit); use CPU or fix the driver"
    else:
        fix = "see the error; 'openmm-tensornet build-ops' shows compiler problems"
    return Check(f"TorchForce on {name}", False, probe.error, fix)


def _gpu_check(platforms: List[str]) -> Check:
    """A GPU that OpenMM cannot use because the CUDA platform wheels are missing."""
    from openmm_tensornet.openmm.platforms import CUDA_EXTRA, gpu_visible

    visible = gpu_visible()
    if not visible:
        return Check("GPU", True, "none visible: the CPU platform runs the simulations")
    if "CUDA" not in platforms:
        return Check("GPU", False, "an NVIDIA GPU is visible but OpenMM has no CUDA platform (PyPI ships it as a "
                     "separate wheel)", CUDA_EXTRA)
    return Check("GPU", True, "visible; OpenMM's CUDA platform is installed")


def doctor(show: Callable[[str], None] = print) -> int:
    """Run every check, print them, return the number of problems."""
    checks = _checks()
    width = max(len(c.name) for c in checks)
    problems = 0
    for check in checks:
        mark = "ok " if check.ok else "BAD"
        show(f"[{mark}] {check.name.ljust(width)}  {check.detail}")
        if not check.ok:
            problems += 1
            if check.fix:
                show(f"      fix: {check.fix}")
    show("no problems found" if problems == 0 else f"{problems} problem(s) found")
    return problems
