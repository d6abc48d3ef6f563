"""interpolate=True: lambda_interpolate = 0 is the MM system exactly, 1 the mechanically embedded ML/MM system,
linear in between, with dE/dlambda from OpenMM's energy-parameter derivatives; every NonbondedForce method."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import pytest
from conftest import small_model
from test_openmm_integration import alanine_dipeptide

from openmm_tensornet import TensorNetPotential, deserialize_system, serialize_system

KJ = unit.kilojoule_per_mole
LAMBDA = "lambda_interpolate"
REGION = list(range(22))  # the dipeptide; in the explicit system the water stays MM
METHODS = {
    "NoCutoff": (False, openmm.NonbondedForce.NoCutoff, False),
    "CutoffNonPeriodic": (False, openmm.NonbondedForce.CutoffNonPeriodic, False),
    "CutoffPeriodic": (True, openmm.NonbondedForce.CutoffPeriodic, False),
    "Ewald": (True, openmm.NonbondedForce.Ewald, False),
    "PME": (True, openmm.NonbondedForce.PME, False),
    "PME+switch+dispersion": (True, openmm.NonbondedForce.PME, True),
}


def evaluate(system, positions, lam=None, platform="Reference"):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    if lam is not None:
        context.setParameter(LAMBDA, lam)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=lam is not None)
    derivative = state.getEnergyParameterDerivatives()[LAMBDA] if lam is not None else None
    return (state.getPotentialEnergy().value_in_unit(KJ),
            np.asarray(state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)), derivative)


def extra_mm_terms(system, positions):
    """Add what Amber lacks so every mirrored force type is exercised: RB torsions, CMAP on phi/psi, and a
    CustomNonbondedForce (soft-core-like, per-particle parameters, a tabulated function, switching)."""
    rb = openmm.RBTorsionForce()
    rb.addTorsion(4, 6, 8, 14, 0.3, -0.2, 0.5, 0.1, -0.05, 0.02)  # phi-like, inside the region
    rb.addTorsion(1, 4, 6, 8, 0.1, 0.2, -0.3, 0.0, 0.0, 0.0)
    system.addForce(rb)
    cmap = openmm.CMAPTorsionForce()
    size = 24
    grid = np.random.default_rng(3).normal(scale=2.0, size=size * size)
    cmap.addMap(size, list(grid))
    cmap.addTorsion(0, 4, 6, 8, 14, 6, 8, 14, 16)
    system.addForce(cmap)
    periodic = system.usesPeriodicBoundaryConditions()
    custom = openmm.CustomNonbondedForce("scale*g(r)*a1*a2/(r^2+b1*b2)")
    custom.addGlobalParameter("scale", 0.7)
    custom.addPerParticleParameter("a")
    custom.addPerParticleParameter("b")
    custom.addTabulatedFunction("g", openmm.Continuous1DFunction([1.0, 0.9, 0.8, 0.75, 0.7], 0.0, 2.0))
    custom.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic if periodic
                              else openmm.CustomNonbondedForce.NoCutoff)
    custom.setCutoffDistance(0.9)
    custom.setUseSwitchingFunction(periodic)
    custom.setSwitchingDistance(0.7)
    rng = np.random.default_rng(4)
    for _ in range(system.getNumParticles()):
        custom.addParticle([float(rng.uniform(0.1, 1.0)), float(rng.uniform(0.1, 0.5))])
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    for k in range(nonbonded.getNumExceptions()):  # the CPU platform wants the same exclusions everywhere
        custom.addExclusion(*nonbonded.getExceptionParameters(k)[:2])
    system.addForce(custom)


def build(name):
    periodic, method, switching = METHODS[name]
    topology, system, positions = alanine_dipeptide(explicit=periodic)
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setNonbondedMethod(method)
            force.setCutoffDistance(0.9)
            force.setUseSwitchingFunction(switching)
            force.setSwitchingDistance(0.75)
            force.setUseDispersionCorrection(switching)
            force.setReactionFieldDielectric(78.3)
    extra_mm_terms(system, positions)
    return topology, system, positions


@pytest.mark.parametrize("name", list(METHODS))
def test_lambda_interpolates_exactly_between_mm_and_ml(name):
    topology, system, positions = build(name)
    potential = TensorNetPotential(small_model(5))
    embedded = potential.createMixedSystem(topology, system, REGION, removeConstraints=False)
    interpolating = potential.createMixedSystem(topology, system, REGION, removeConstraints=False, interpolate=True)

    e_mm, f_mm, _ = evaluate(system, positions)
    e_embedded, f_embedded, _ = evaluate(embedded, positions)
    e0, f0, d0 = evaluate(interpolating, positions, 0.0)
    e1, f1, d1 = evaluate(interpolating, positions, 1.0)
    e_mid, f_mid, d_mid = evaluate(interpolating, positions, 0.3)

    # lambda = 0: the MM system bit for bit.
    assert e0 == e_mm
    assert np.array_equal(f0, f_mm)
    # lambda = 1: the mechanical embedding (a different but equivalent sum of terms).
    assert abs(e1 - e_embedded) <= 1e-9 * max(1.0, abs(e_embedded))
    assert np.abs(f1 - f_embedded).max() <= 1e-8 * np.abs(f_embedded).max()
    # The ML and MM descriptions of the region really differ, so the checks above can fail.
    assert abs(e1 - e0) > 1.0
    # Linear in lambda; dE/dlambda = E(1) - E(0) at every lambda.
    assert e_mid == pytest.approx(e0 + 0.3 * (e1 - e0), rel=1e-11, abs=1e-9)
    assert np.abs(f_mid - (f0 + 0.3 * (f1 - f0))).max() <= 1e-9 * np.abs(f1).max()
    for derivative in (d0, d_mid, d1):
        assert derivative == pytest.approx(e1 - e0, rel=1e-9, abs=1e-8)


def test_lambda_zero_is_mm_on_the_cpu_platform_and_survives_xml():
    topology, system, positions = build("PME")
    potential = TensorNetPotential(small_model(6, dtype="float32"))
    interpolating = potential.createMixedSystem(topology, system, REGION, removeConstraints=False, interpolate=True)
    e_mm, f_mm, _ = evaluate(system, positions, platform="CPU")
    e0, f0, _ = evaluate(interpolating, positions, 0.0, platform="CPU")
    assert e0 == pytest.approx(e_mm, rel=1e-12)
    # The CPU platform accumulates forces in float32, in an order that depends on the other forces present.
    assert np.abs(f0 - f_mm).max() <= 1e-5 * np.abs(f_mm).max()

    copy = deserialize_system(serialize_system(interpolating))
    for lam in (0.0, 0.6):
        before = evaluate(interpolating, positions, lam)
        after = evaluate(copy, positions, lam)
        assert after[0] == pytest.approx(before[0], rel=1e-12)
        assert after[2] == pytest.approx(before[2], rel=1e-12)


def test_removed_constraints_without_bond_terms_are_reported():
    topology, system, positions = alanine_dipeptide()
    assert system.getNumConstraints() == 12
    potential = TensorNetPotential(small_model(7))
    with pytest.warns(UserWarning, match="12 constraints inside the ML region were removed"):
        interpolating = potential.createMixedSystem(topology, system, REGION, interpolate=True)
    assert interpolating.getNumConstraints() == 0


def test_interpolation_refuses_what_it_cannot_split():
    topology, system, positions = alanine_dipeptide(explicit=True)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.LJPME)
    potential = TensorNetPotential(small_model(8))
    with pytest.raises(NotImplementedError, match="LJPME"):
        potential.createMixedSystem(topology, system, REGION, interpolate=True)
    potential.createMixedSystem(topology, system, REGION, interpolate=False)  # the plain embedding handles LJPME

    nonbonded.setNonbondedMethod(openmm.NonbondedForce.PME)
    nonbonded.addGlobalParameter("lambda_elec", 1.0)
    nonbonded.addParticleParameterOffset("lambda_elec", 0, 0.1, 0.0, 0.0)
    with pytest.raises(NotImplementedError, match="parameter offsets"):
        potential.createMixedSystem(topology, system, REGION, interpolate=True)
