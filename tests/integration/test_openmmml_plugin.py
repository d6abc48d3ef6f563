"""openmm-ml: MLPotential("tensornet", modelPath=...) with our checkpoints and torchmd-net's, the same energies as
the facade; and copies of Systems/TorchForces (clone, deepcopy, deserialize) that no longer crash."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import openmm
import pytest
from conftest import small_model
from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint
from test_openmm_integration import alanine_dipeptide, evaluate

from openmm_tensornet import TensorNetPotential, load_model, save_model

openmmml = pytest.importorskip("openmmml")
MLPotential = openmmml.MLPotential
REGION = list(range(22))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tensornet.pt"
    save_model(small_model(31), path)
    return path


def test_the_entry_point_is_registered():
    from importlib.metadata import entry_points

    names = {entry.name: entry.value for entry in entry_points(group="openmmml.potentials")}
    assert names["tensornet"] == "openmm_tensornet.openmm.openmmml_entry:TensorNetPotentialImplFactory"


@pytest.mark.parametrize("first", ["openmm_tensornet.openmm.openmmml_plugin", "openmmml", "openmm_tensornet"])
def test_any_import_order_works(first):
    """openmm-ml loads entry points while it is being imported; importing the plugin module first must not make
    that a circular import."""
    script = (f"import {first}\nfrom openmmml import MLPotential\nimport openmm_tensornet.openmm.openmmml_plugin as p\n"
              "assert p.TensorNetPotentialImplFactory is not None\nprint(type(MLPotential._implFactories['tensornet']))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TensorNetPotentialImplFactory" in result.stdout


def test_create_system_matches_the_facade(checkpoint):
    topology, system, positions = alanine_dipeptide()
    ours = TensorNetPotential(checkpoint).createSystem(topology, charge=0.0)
    theirs = MLPotential("tensornet", modelPath=str(checkpoint)).createSystem(topology)
    e_ours, f_ours = evaluate(ours, positions)
    e_theirs, f_theirs = evaluate(theirs, positions)
    assert e_theirs == e_ours
    assert np.array_equal(f_theirs, f_ours)


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("interpolate", [False, True])
def test_create_mixed_system_matches_the_facade(checkpoint, explicit, interpolate):
    topology, system, positions = alanine_dipeptide(explicit)
    ours = TensorNetPotential(checkpoint).createMixedSystem(topology, system, REGION, interpolate=interpolate)
    theirs = MLPotential("tensornet", modelPath=str(checkpoint)).createMixedSystem(
        topology, system, REGION, interpolate=interpolate)
    assert theirs.getNumConstraints() == ours.getNumConstraints() == system.getNumConstraints() - 12
    for lam in ([0.0, 0.4, 1.0] if interpolate else [None]):
        e_ours, f_ours = _energy(ours, positions, lam)
        e_theirs, f_theirs = _energy(theirs, positions, lam)
        assert e_theirs == pytest.approx(e_ours, rel=1e-12)
        assert np.abs(f_theirs - f_ours).max() <= 1e-9 * np.abs(f_ours).max()
    if interpolate:
        assert _energy(theirs, positions, 0.0)[0] == evaluate(system, positions)[0]


def _energy(system, positions, lam):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    if lam is not None:
        context.setParameter("lambda_interpolate", lam)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy()._value, np.asarray(state.getForces(asNumpy=True)._value))


def test_a_torchmdnet_checkpoint_through_openmmml(tmp_path):
    pytest.importorskip("torchmdnet")
    args = torchmdnet_args(num_layers=1)
    path = tmp_path / "tensornet.ckpt"
    write_checkpoint(random_torchmdnet_model(args, seed=2), args, path)
    topology, system, positions = alanine_dipeptide()
    theirs = MLPotential("tensornet", modelPath=str(path)).createSystem(topology)
    ours = TensorNetPotential(load_model(path)).createSystem(topology)
    assert evaluate(theirs, positions)[0] == evaluate(ours, positions)[0]
    # ... and that energy is torchmd-net's own (eV -> kJ/mol, nm -> A).
    import torch
    from torchmdnet.models.model import load_model as torchmdnet_load

    reference = torchmdnet_load(str(path))
    z = torch.tensor([atom.element.atomic_number for atom in topology.atoms()])
    dtype = next(reference.parameters()).dtype
    energy, _ = reference(z, torch.tensor(positions * 10, dtype=dtype))
    assert evaluate(theirs, positions)[0] == pytest.approx(float(energy.sum()) * 96.48533212331002, rel=1e-4)


def test_bad_arguments_are_named(checkpoint, tmp_path):
    import torch

    future = torch.load(checkpoint, weights_only=True)
    future["format_version"] = 99
    torch.save(future, tmp_path / "future.pt")
    for make in (lambda: MLPotential("tensornet", modelPath=str(tmp_path / "future.pt")),
                 lambda: TensorNetPotential(tmp_path / "future.pt")):
        with pytest.raises(ValueError, match="format version 99 .* upgrade openmm-tensornet"):
            make()
    topology, system, positions = alanine_dipeptide()
    with pytest.raises(TypeError, match=r"unexpected arguments \['precision'\]"):
        MLPotential("tensornet", modelPath=str(checkpoint)).createSystem(topology, precision="double")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MLPotential("tensornet", modelPath="missing.pt")
    with pytest.raises(TypeError, match="takes modelPath, energyUnit and lengthUnit"):
        MLPotential("tensornet", modelPath=str(checkpoint), scale=2.0)


def test_copies_of_torchforces_work(checkpoint):
    topology, system, positions = alanine_dipeptide()
    mixed = TensorNetPotential(checkpoint).createMixedSystem(topology, system, REGION, interpolate=True)
    expected = evaluate(mixed, positions)[0]
    clones = [copy.deepcopy(mixed), copy.copy(mixed), openmm.XmlSerializer.clone(mixed),
              openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(mixed)),
              openmm.XmlSerializer.deserializeSystem(openmm.XmlSerializer.serializeSystem(mixed))]
    for clone in clones:
        assert evaluate(clone, positions)[0] == expected
    torch_force = mixed.getForce(mixed.getNumForces() - 1)
    alone = openmm.System()
    for _ in range(22):
        alone.addParticle(1.0)
    alone.addForce(copy.deepcopy(torch_force))
    assert np.isfinite(evaluate(alone, positions)[0])


def test_without_the_fix_deepcopy_still_fails_upstream(checkpoint):
    """Guards the workaround: when a fixed openmm-torch makes it unnecessary, this test says so."""
    script = """
import copy, torch, openmm, openmmtorch
force = openmmtorch.TorchForce(torch.jit.script(torch.nn.Identity()))
system = openmm.System(); system.addParticle(1.0); system.addForce(force)
try:
    copy.deepcopy(system)
    print("NO-FAILURE")
except Exception as error:
    print("FAILED", error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "NO-FAILURE" not in result.stdout, "openmm-torch copies TorchForces now: drop install_safe_copies"
