"""The PythonForce backend (``backend="PythonForce"``) against the TorchForce backend: same energies and forces,
interpolation scaling, serialisation, torch.compile, and clear errors for unsupported combinations."""

from __future__ import annotations

import copy

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from conftest import small_model
from test_openmm_integration import alanine_dipeptide, evaluate

from openmm_tensornet import (TensorNet, TensorNetPotential, create_python_force, create_torch_force, deserialize_system,
                              serialize_system)

KJ = unit.kilojoule_per_mole


def test_pure_ml_system_matches_the_torchforce_backend():
    topology, _, positions = alanine_dipeptide()
    potential = TensorNetPotential(small_model(5))
    results = []
    for backend in ("TorchForce", "PythonForce"):
        system = potential.createSystem(topology, backend=backend)
        results.append(evaluate(system, positions))
    (e_torch, f_torch), (e_python, f_python) = results
    assert e_python == pytest.approx(e_torch, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(f_python, f_torch, rtol=1e-7, atol=1e-7 * np.abs(f_torch).max())
    assert abs(e_torch) > 1.0


@pytest.mark.parametrize("interpolate", [False, True])
def test_mixed_periodic_system_matches_the_torchforce_backend(interpolate):
    topology, system, positions = alanine_dipeptide(explicit=True)
    potential = TensorNetPotential(small_model(6))
    region = list(range(22))
    results = []
    for backend in ("TorchForce", "PythonForce"):
        mixed = potential.createMixedSystem(topology, system, region, interpolate=interpolate, backend=backend)
        context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(positions)
        energies = []
        for value in ((0.0, 0.4, 1.0) if interpolate else (1.0,)):
            if interpolate:
                context.setParameter("lambda_interpolate", value)
            state = context.getState(getEnergy=True, getForces=True)
            energies.append((state.getPotentialEnergy().value_in_unit(KJ),
                             np.asarray(state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))))
        results.append(energies)
    for (e_torch, f_torch), (e_python, f_python) in zip(*results):
        assert e_python == pytest.approx(e_torch, rel=1e-9)
        np.testing.assert_allclose(f_python, f_torch, rtol=1e-6, atol=1e-6 * np.abs(f_torch).max())
    if interpolate:  # linear in lambda: the 0.4 point lies on the line through 0 and 1
        (e0, _), (e4, _), (e1, _) = results[1]
        assert e4 == pytest.approx(e0 + 0.4 * (e1 - e0), rel=1e-9)
        assert abs(e1 - e0) > 1.0


def test_python_force_survives_xml_and_deepcopy():
    topology, _, positions = alanine_dipeptide()
    system = TensorNetPotential(small_model(7)).createSystem(topology, backend="PythonForce")
    expected, _ = evaluate(system, positions)
    restored = deserialize_system(serialize_system(system))
    assert evaluate(restored, positions)[0] == pytest.approx(expected, rel=1e-12)
    assert evaluate(copy.deepcopy(system), positions)[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_torch_compile_backend_matches_eager():
    topology, _, positions = alanine_dipeptide()
    model = small_model(8, dtype="float32")
    numbers = [atom.element.atomic_number for atom in topology.atoms()]
    values = []
    for compiled in (False, True):
        system = openmm.System()
        for atom in topology.atoms():
            system.addParticle(atom.element.mass)
        system.addForce(create_python_force(model, numbers, compile=compiled))
        context = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(positions)
        context.setVelocitiesToTemperature(300, 1)
        context.getIntegrator().step(3)  # a few steps: the compiled module is reused, not recompiled per step
        state = context.getState(getEnergy=True, getForces=True)
        values.append((state.getPotentialEnergy().value_in_unit(KJ), np.asarray(state.getForces(asNumpy=True)._value)))
    assert values[1][0] == pytest.approx(values[0][0], rel=1e-5)
    np.testing.assert_allclose(values[1][1], values[0][1], rtol=1e-3, atol=1e-3 * np.abs(values[0][1]).max())


def test_unsupported_combinations_are_clear_errors():
    topology, system, _ = alanine_dipeptide()
    potential = TensorNetPotential(small_model(9))
    with pytest.raises(ValueError, match="backend must be one of"):
        potential.createSystem(topology, backend="torchscript")
    with pytest.raises(ValueError, match="cudaGraphs needs backend='TorchForce'"):
        potential.createSystem(topology, backend="PythonForce", cudaGraphs=True)
    with pytest.raises(ValueError, match="torchCompile applies to backend='PythonForce'"):
        potential.createMixedSystem(topology, system, range(22), torchCompile=True)


def test_the_python_force_runs_where_the_model_is():
    from openmm_tensornet import ForceSpec
    from openmm_tensornet.openmm.export import force_module
    from openmm_tensornet.openmm.python_force import TensorNetComputation

    spec = ForceSpec((8, 1, 1))
    module = force_module(small_model(), spec, False, "")
    assert TensorNetComputation(module, spec.box_input, None, False).device() == torch.device("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_python_force_of_a_gpu_model_equals_the_cpu_one():
    positions = [[0.0, 0.0, 0.0], [0.096, 0.0, 0.0], [-0.024, 0.093, 0.0]]
    energies = []
    for model in (small_model(), small_model().to("cuda")):
        system = openmm.System()
        for _ in range(3):
            system.addParticle(12.0)
        system.addForce(create_python_force(model, [8, 1, 1]))
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(positions)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy()._value)
    assert energies[0] == pytest.approx(energies[1], rel=1e-9)


def test_both_backends_build_the_same_energy_from_one_spec():
    import openmm

    openmmtorch = pytest.importorskip("openmmtorch")
    del openmmtorch
    positions = [[0.0, 0.0, 0.0], [0.096, 0.0, 0.0], [-0.024, 0.093, 0.0]]
    energies = []
    for force in (create_torch_force(spec_model(), [8, 1, 1], force_group=3),
                  create_python_force(spec_model(), [8, 1, 1], force_group=3)):
        assert force.getForceGroup() == 3
        system = openmm.System()
        for _ in range(3):
            system.addParticle(12.0)
        system.addForce(force)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(positions)
        energies.append(context.getState(getEnergy=True, groups={3}).getPotentialEnergy()._value)
    assert energies[0] == pytest.approx(energies[1], rel=1e-5)
    assert energies[0] != 0.0


def spec_model():
    torch.manual_seed(0)
    return TensorNet(hidden_channels=8, num_layers=1, num_rbf=4, cutoff_upper=4.0, max_z=18, elements=[1, 6, 8])
