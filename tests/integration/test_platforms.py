"""Choosing the OpenMM platform and telling a GPU user what is missing (GPU machines simulated here)."""

from __future__ import annotations

import pytest

from openmm_tensornet.openmm import platforms
from openmm_tensornet.openmm.platforms import Probe, choose_platform


def fake(monkeypatch, names, working=(), gpu=False):
    monkeypatch.setattr(platforms, "available_platforms", lambda: list(names))
    monkeypatch.setattr(platforms, "gpu_visible", lambda: gpu)
    calls = []

    def probe(name, precision=None):
        calls.append((name, precision))
        if name in working:
            return Probe(1.0, 1.0, "")
        return Probe(None, 1.0, "There is no registered Platform called TorchForce kernel")

    monkeypatch.setattr(platforms, "probe_torch_force", probe)
    return calls


def test_this_machine_runs_on_the_cpu_platform():
    choice = choose_platform()
    assert choice.name == "CPU" and choice.properties == {}


def test_auto_prefers_cuda_then_opencl_with_mixed_precision(monkeypatch):
    fake(monkeypatch, ["Reference", "CPU", "OpenCL", "CUDA"], working=("CUDA", "OpenCL"))
    assert choose_platform() == ("CUDA", {"Precision": "mixed"}, "the fastest available")
    assert choose_platform(precision="double").properties == {"Precision": "double"}
    fake(monkeypatch, ["Reference", "CPU", "OpenCL"], working=("OpenCL",))
    assert choose_platform().name == "OpenCL"


def test_a_gpu_platform_that_cannot_run_the_torchforce_is_skipped_and_said(monkeypatch):
    calls = fake(monkeypatch, ["Reference", "CPU", "CUDA"], working=())
    choice = choose_platform()
    assert choice.name == "CPU" and "skipped CUDA" in choice.reason and "TorchForce" in choice.reason
    assert calls == [("CUDA", "mixed")]


def test_requested_platforms_and_bad_requests(monkeypatch):
    fake(monkeypatch, ["Reference", "CPU"])
    assert choose_platform("Reference").name == "Reference"
    with pytest.raises(ValueError, match=r"'CUDA' is not available.*openmm-tensornet\[cuda\]"):
        choose_platform("CUDA")
    with pytest.raises(ValueError, match="precision applies to the CUDA and OpenCL platforms"):
        choose_platform("CPU", precision="mixed")
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_platform(precision="half")


def test_doctor_names_the_cuda_wheels_when_a_gpu_has_no_cuda_platform(monkeypatch):
    from openmm_tensornet.app.doctor import _gpu_check

    fake(monkeypatch, ["Reference", "CPU"], gpu=True)
    check = _gpu_check(["Reference", "CPU"])
    assert not check.ok and "openmm-cuda-12==8.6.1" in check.fix and "openmm-torch-cuda-12==1.5" in check.fix
    fake(monkeypatch, ["Reference", "CPU", "CUDA"], gpu=True)
    assert _gpu_check(["Reference", "CPU", "CUDA"]).ok
    fake(monkeypatch, ["Reference", "CPU"], gpu=False)
    check = _gpu_check(["Reference", "CPU"])
    assert check.ok and "none visible" in check.detail


def test_doctor_names_the_torch_plugin_when_cuda_cannot_run_the_torchforce(monkeypatch):
    from openmm_tensornet.app import doctor

    fake(monkeypatch, ["Reference", "CPU", "CUDA"], working=(), gpu=True)
    check = doctor._try_platform("CUDA")
    assert not check.ok and "openmm-torch-cuda-12==1.5" in check.fix


def test_the_cuda_extra_pins_the_wheels_of_the_pinned_versions():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["cuda"]
    pins = {requirement.split("==")[0]: requirement.split("==")[1] for requirement in extra}
    assert pins == {"openmm-cuda-12": "8.6.1", "openmm-torch-cuda-12": "1.5"}
    assert "openmm>=8.6.1,<8.7" in project["dependencies"] and "openmmtorch==1.5" in project["dependencies"]
