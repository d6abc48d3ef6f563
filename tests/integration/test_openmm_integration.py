"""TensorNet inside OpenMM: TorchForce energies and forces, System XML, NVE, mixed ML/MM identities, bad input."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from conftest import random_molecule, small_model

from openmm_tensornet import (TensorNetPotential, create_torch_force, deserialize_system, energy_report,
                              serialize_system)
from openmm_tensornet.units import KJ_PER_MOL

KJ = unit.kilojoule_per_mole
ONE_4PI_EPS0 = 138.935456  # kJ/mol nm / e^2, OpenMM's value (ONE_4PI_EPS0 in SimTKOpenMMRealType.h)
TOLERANCE = {torch.float64: 1e-5, torch.float32: 1e-4}


def alanine_dipeptide(explicit: bool = False):
    from openmmtools import testsystems

    test = testsystems.AlanineDipeptideExplicit() if explicit else testsystems.AlanineDipeptideVacuum()
    return test.topology, test.system, np.asarray(test.positions.value_in_unit(unit.nanometer))


def evaluate(system, positions, group=None, platform="Reference"):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, **({} if group is None else {"groups": {group}}))
    return state.getPotentialEnergy().value_in_unit(KJ), np.asarray(state.getForces(asNumpy=True).value_in_unit(
        KJ / unit.nanometer))


def direct(model, z, positions_nm, box_nm=None, charge=0.0):
    """The model evaluated directly (float64 reference path), in kJ/mol and kJ/mol/nm."""
    dtype = model.energy_mean.dtype
    x = torch.tensor(np.asarray(positions_nm, dtype=np.float32), dtype=dtype).mul(10).requires_grad_(True)
    box = None if box_nm is None else torch.tensor(np.asarray(box_nm, dtype=np.float32), dtype=dtype) * 10
    out = model(torch.tensor(z), x, None, box, torch.tensor([charge], dtype=dtype))
    (gradient,) = torch.autograd.grad(out.energy.sum(), x)
    scale = KJ_PER_MOL["eV"]
    return float(out.energy.sum().detach()) * scale, -gradient.numpy() * scale * 10


def pure_system(model, z, box=None):
    system = openmm.System()
    for _ in z:
        system.addParticle(12.0)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
    system.addForce(create_torch_force(model, list(z), periodic=box is not None))
    return system


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_torchforce_equals_direct_evaluation_molecule(dtype, platform):
    model = small_model(dtype=dtype)
    z, pos = random_molecule(16, seed=4)
    energy, forces = evaluate(pure_system(model, z.tolist()), pos.numpy() / 10, platform=platform)
    expected_energy, expected_forces = direct(model, z.tolist(), pos.numpy() / 10)
    tolerance = TOLERANCE[model.energy_mean.dtype]
    assert energy == pytest.approx(expected_energy, rel=tolerance)
    assert np.abs(forces - expected_forces).max() <= tolerance * np.abs(expected_forces).max()
    assert np.abs(expected_forces).max() > 1.0


BOXES_NM = {
    "rectangular": [[1.0, 0.0, 0.0], [0.0, 1.1, 0.0], [0.0, 0.0, 0.9]],
    "triclinic": [[1.0, 0.0, 0.0], [0.3, 0.95, 0.0], [-0.4, 0.45, 0.9]],
}


@pytest.mark.parametrize("box_name", list(BOXES_NM))
def test_torchforce_periodic_wrapped_and_unwrapped(box_name):
    """A periodic all-ML system: equals the model with the box, and moving atoms by box vectors changes nothing."""
    model = small_model(cutoff_upper=4.0)
    box = np.array(BOXES_NM[box_name])
    generator = np.random.default_rng(0)
    fractions = generator.random((40, 3))
    positions = fractions @ box
    z = [int(a) for a in generator.choice([1, 6, 7, 8], 40)]
    system = pure_system(model, z, box)
    energy, forces = evaluate(system, positions)
    expected_energy, expected_forces = direct(model, z, positions, box)
    assert energy == pytest.approx(expected_energy, rel=1e-5)
    assert np.abs(forces - expected_forces).max() <= 1e-5 * np.abs(expected_forces).max()
    moved = positions + generator.integers(-3, 4, (40, 1)) * box[0] + generator.integers(-3, 4, (40, 1)) * box[2]
    moved_energy, moved_forces = evaluate(system, moved)
    assert moved_energy == pytest.approx(energy, rel=1e-5)
    assert np.abs(moved_forces - forces).max() <= 1e-4 * np.abs(forces).max()
    # and it is really periodic: without the box the energy differs
    assert abs(direct(model, z, positions)[0] - energy) > 1e-3 * abs(energy)


def test_system_xml_round_trip_in_a_fresh_process(tmp_path):
    """serialize_system / deserialize_system: a new process gets the same energy from the XML alone."""
    model = small_model()
    z, pos = random_molecule(10, seed=8)
    system = pure_system(model, z.tolist())
    energy, _ = evaluate(system, pos.numpy() / 10)
    (tmp_path / "system.xml").write_text(serialize_system(system))
    np.save(tmp_path / "positions.npy", pos.numpy() / 10)
    script = (
        "import numpy as np, openmm, openmm_tensornet\n"
        f"system = openmm_tensornet.deserialize_system(open(r'{tmp_path / 'system.xml'}').read())\n"
        "context = openmm.Context(system, openmm.VerletIntegrator(0.001), "
        "openmm.Platform.getPlatformByName('Reference'))\n"
        f"context.setPositions(np.load(r'{tmp_path / 'positions.npy'}'))\n"
        "print(repr(context.getState(getEnergy=True).getPotentialEnergy()._value))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(energy, rel=1e-12)
    assert "simtk" not in result.stderr


def test_creating_a_system_prints_no_simtk_deprecation_line():
    """openmmtorch 1.5 imports simtk.openmm, whose shim logs a deprecation line on the root logger; a user who
    never imported simtk must not see it. The user's own root-logger lines still pass."""
    script = (
        "import logging, openmm.app as app, openmm_tensornet\n"
        "topology = app.Topology()\n"
        "residue = topology.addResidue('HOH', topology.addChain())\n"
        "for name in ('O', 'H', 'H'):\n"
        "    topology.addAtom(name, app.Element.getBySymbol(name), residue)\n"
        "system = openmm_tensornet.TensorNetPotential().createSystem(topology)\n"
        "print(system.getNumForces())\n"
        "logging.getLogger().warning('a line of the user')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 1
    assert "simtk" not in result.stderr
    assert "a line of the user" in result.stderr


def test_mixed_system_xml_keeps_force_order_and_groups():
    topology, system, positions = alanine_dipeptide()
    region = [a.index for a in topology.atoms() if a.residue.name == "ALA"]
    mixed = TensorNetPotential(small_model(cutoff_upper=5.0)).createMixedSystem(topology, system, region, forceGroup=3)
    restored = deserialize_system(serialize_system(mixed))
    assert [f.getForceGroup() for f in restored.getForces()] == [f.getForceGroup() for f in mixed.getForces()]
    for group in (None, 3):
        assert evaluate(restored, positions, group)[0] == pytest.approx(evaluate(mixed, positions, group)[0],
                                                                        rel=1e-12)


def test_upstream_deserializer_still_crashes(tmp_path):
    """Why deserialize_system / install_safe_copies exist: with the openmm 8.6.1 + openmmtorch 1.5 wheels,
    XmlSerializer.deserialize of any TorchForce kills the process. When the first half fails, upstream is fixed and
    the workaround can go; the second half shows that after ``import openmm_tensornet`` the same call works."""
    script = """
import sys, torch, openmm, openmmtorch
class Energy(torch.nn.Module):
    def forward(self, positions):
        return (positions ** 2).sum()
system = openmm.System(); system.addParticle(1.0)
system.addForce(openmmtorch.TorchForce(torch.jit.script(Energy())))
xml = openmm.XmlSerializer.serialize(system)
if sys.argv[1] == "fixed":
    import openmm_tensornet
copy = openmm.XmlSerializer.deserialize(xml)
context = openmm.Context(copy, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
context.setPositions([openmm.Vec3(0.1, 0.2, 0.3)])
print(context.getState(getEnergy=True).getPotentialEnergy()._value)
"""
    path = tmp_path / "deserialize.py"  # (TorchScript needs the source in a file)
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path), "upstream"], capture_output=True, text=True)
    assert result.returncode == -11, result.stderr[-2000:]
    result = subprocess.run([sys.executable, str(path), "fixed"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) == pytest.approx(0.14, rel=1e-6)


def test_nve_energy_is_conserved():
    """Pure-ML alanine dipeptide, velocity Verlet at 0.25 fs for 400 steps: total energy stays put."""
    topology, _, positions = alanine_dipeptide()
    model = small_model(cutoff_upper=5.0, dtype="float64")
    system = TensorNetPotential(model).createSystem(topology, removeCMMotion=False)
    integrator = openmm.VerletIntegrator(0.25 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    totals, kinetic = [], []
    for _ in range(20):
        integrator.step(20)
        state = context.getState(getEnergy=True)
        kinetic.append(state.getKineticEnergy().value_in_unit(KJ))
        totals.append(kinetic[-1] + state.getPotentialEnergy().value_in_unit(KJ))
    drift = max(totals) - min(totals)
    print(f"NVE: total-energy spread {drift:.4f} kJ/mol over 100 fs, mean kinetic energy {np.mean(kinetic):.2f}")
    assert np.std(kinetic) > 0.5  # the system really moves
    assert drift < 0.01 * np.mean(kinetic)


def mm_internal_energy(system, positions, region):
    """Independent MM energy of the interactions *within* ``region`` (NoCutoff systems): bonded terms whose atoms
    all lie in the region plus Coulomb/LJ over region pairs (exceptions honoured)."""
    inside = set(region)
    partial = openmm.System()
    for k in range(system.getNumParticles()):
        partial.addParticle(system.getParticleMass(k))
    for force in system.getForces():
        name = type(force).__name__
        if name == "HarmonicBondForce":
            copy = openmm.HarmonicBondForce()
            for k in range(force.getNumBonds()):
                p = force.getBondParameters(k)
                if {p[0], p[1]} <= inside:
                    copy.addBond(*p)
        elif name == "HarmonicAngleForce":
            copy = openmm.HarmonicAngleForce()
            for k in range(force.getNumAngles()):
                p = force.getAngleParameters(k)
                if set(p[:3]) <= inside:
                    copy.addAngle(*p)
        elif name == "PeriodicTorsionForce":
            copy = openmm.PeriodicTorsionForce()
            for k in range(force.getNumTorsions()):
                p = force.getTorsionParameters(k)
                if set(p[:4]) <= inside:
                    copy.addTorsion(*p)
        else:
            continue
        partial.addForce(copy)
    bonded, _ = evaluate(partial, positions)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    exceptions = {}
    for k in range(nonbonded.getNumExceptions()):
        i, j, qq, sigma, epsilon = nonbonded.getExceptionParameters(k)
        exceptions[(min(i, j), max(i, j))] = (qq.value_in_unit(unit.elementary_charge ** 2),
                                              sigma.value_in_unit(unit.nanometer), epsilon.value_in_unit(KJ))
    parameters = [nonbonded.getParticleParameters(k) for k in range(system.getNumParticles())]
    total = 0.0
    region = sorted(region)
    for a, i in enumerate(region):
        for j in region[a + 1:]:
            if (i, j) in exceptions:
                qq, sigma, epsilon = exceptions[(i, j)]
            else:
                qi, si, ei = [x._value for x in parameters[i]]
                qj, sj, ej = [x._value for x in parameters[j]]
                qq, sigma, epsilon = qi * qj, 0.5 * (si + sj), np.sqrt(ei * ej)
            r = np.linalg.norm(positions[i] - positions[j])
            total += ONE_4PI_EPS0 * qq / r + 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)
    return bonded + total


@pytest.mark.parametrize("region_name", ["alanine residue", "whole peptide"])
def test_mixed_system_identity(region_name):
    """E_mixed = E_MM(all) - E_MM(region internal) + E_ML(region), on OpenMM's Reference platform."""
    topology, system, positions = alanine_dipeptide()
    region = [a.index for a in topology.atoms() if region_name == "whole peptide" or a.residue.name == "ALA"]
    model = small_model(cutoff_upper=5.0)
    potential = TensorNetPotential(model)
    mixed = potential.createMixedSystem(topology, system, region, forceGroup=1)
    e_mixed, _ = evaluate(mixed, positions)
    e_ml, _ = evaluate(mixed, positions, group=1)
    e_mm_all, _ = evaluate(system, positions)
    z = [a.element.atomic_number for a in topology.atoms() if a.index in set(region)]
    expected_ml, _ = direct(model, z, positions[region])
    assert e_ml == pytest.approx(expected_ml, rel=1e-5)
    internal = mm_internal_energy(system, positions, region)
    assert e_mixed == pytest.approx(e_mm_all - internal + e_ml, abs=1e-3)
    assert abs(internal) > 1.0  # the identity is not trivially satisfied


def test_mixed_system_does_not_depend_on_atom_order_and_removes_constraints():
    topology, system, positions = alanine_dipeptide()
    region = [a.index for a in topology.atoms() if a.residue.name == "ALA"]
    shuffled = region[:]
    random.Random(3).shuffle(shuffled)
    potential = TensorNetPotential(small_model(cutoff_upper=5.0))
    ordered = potential.createMixedSystem(topology, system, region)
    permuted = potential.createMixedSystem(topology, system, shuffled)
    e1, f1 = evaluate(ordered, positions)
    e2, f2 = evaluate(permuted, positions)
    assert e1 == e2 and np.array_equal(f1, f2)
    inside = set(region)

    def internal_constraints(s):
        return sum(1 for k in range(s.getNumConstraints()) if set(s.getConstraintParameters(k)[:2]) <= inside)

    assert internal_constraints(system) > 0
    assert internal_constraints(ordered) == 0
    assert ordered.getNumConstraints() == system.getNumConstraints() - internal_constraints(system)
    kept = potential.createMixedSystem(topology, system, region, removeConstraints=False)
    assert kept.getNumConstraints() == system.getNumConstraints()


def test_mixed_region_in_a_periodic_box_never_sees_its_images():
    """Solvated peptide as the ML region: the ML energy is the isolated-molecule energy, also when the peptide is
    split across the box boundary (wrapped coordinates)."""
    topology, system, positions = alanine_dipeptide(explicit=True)
    region = [a.index for a in topology.atoms() if a.residue.name in ("ACE", "ALA", "NME")]
    model = small_model(cutoff_upper=5.0)
    mixed = TensorNetPotential(model).createMixedSystem(topology, system, region, forceGroup=2)
    z = [a.element.atomic_number for a in topology.atoms() if a.index in set(region)]
    expected, _ = direct(model, z, positions[region])
    box = np.array([v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    split = positions.copy()
    split[region] -= positions[region][0] - np.array([0.01, 0.01, 0.01])  # put the peptide at the box corner
    wrapped = split - np.floor(split / np.diag(box)) * np.diag(box)  # rectangular box: wrap each atom
    assert (wrapped[region] != split[region]).any()  # the molecule really is split
    for coordinates in (positions, wrapped):
        e_ml, _ = evaluate(mixed, coordinates, group=2)
        assert e_ml == pytest.approx(expected, rel=1e-5)


def long_chain_in_a_box(count: int = 16, side: float = 2.4):
    """A zig-zag chain of ``count`` carbons (1.5 Å bonds, about 1.9 nm long: more than half of a ``side`` nm box)
    and one MM particle, with the topology's bonds and a periodic nonbonded force."""
    import openmm.app as app

    x = np.arange(count) * 0.125
    chain = np.stack([x, 0.03 * (np.arange(count) % 2), np.zeros(count)], axis=1) + 0.2
    positions = np.vstack([chain, [[1.6, 1.6, 1.6]]])
    topology = app.Topology()
    residue = topology.addResidue("LIG", topology.addChain())
    atoms = [topology.addAtom(f"C{k}", app.Element.getBySymbol("C"), residue) for k in range(count)]
    for first, second in zip(atoms[:-1], atoms[1:]):
        topology.addBond(first, second)
    topology.addAtom("AR", app.Element.getBySymbol("Ar"), topology.addResidue("AR", topology.addChain()))
    topology.setPeriodicBoxVectors(np.eye(3) * side * unit.nanometer)
    system = openmm.System()
    nonbonded = openmm.NonbondedForce()
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nonbonded.setCutoffDistance(1.0)
    for _ in range(count + 1):
        system.addParticle(12.0)
        nonbonded.addParticle(0.0, 0.3, 0.0)
    system.addForce(nonbonded)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * side))
    return topology, system, positions, list(range(count))


def test_a_region_longer_than_half_the_box_is_made_whole_along_its_bonds():
    """A ligand longer than half the box (a drug in a 1 nm-padded water box, turned along a box vector): the ML
    energy is the isolated molecule's, whole or wrapped atom by atom, because the region is made whole along the
    topology's bonds. (Made whole around its first atom, it came out folded and the force stopped MD.)"""
    topology, system, positions, region = long_chain_in_a_box()
    model = small_model(cutoff_upper=5.0)
    mixed = TensorNetPotential(model).createMixedSystem(topology, system, region, forceGroup=2)
    expected, _ = direct(model, [6] * len(region), positions[region])
    side = 2.4
    assert np.ptp(positions[region, 0]) / side > 0.75  # longer than half the box
    wrapped = positions - np.floor(positions / side) * side
    shifted = positions + np.array([1.0, 0.0, 0.0])  # the chain now crosses the box edge
    wrapped_shifted = shifted - np.floor(shifted / side) * side
    assert (wrapped_shifted[region] != shifted[region]).any()  # the molecule really is split
    for coordinates in (positions, wrapped, shifted, wrapped_shifted):
        e_ml, forces = evaluate(mixed, coordinates, group=2)
        assert e_ml == pytest.approx(expected, rel=1e-5)
    _, reference_forces = evaluate(mixed, positions, group=2)
    np.testing.assert_allclose(forces, reference_forces, rtol=1e-4, atol=1e-3)


def test_a_long_region_without_bonds_is_refused_with_a_way_out():
    """Without bonds the region's atoms hang from its first atom by the nearest image, which is ambiguous past half
    the box: an error that says so and names the fix, never a folded molecule."""
    topology, system, positions, region = long_chain_in_a_box()
    model = small_model(cutoff_upper=5.0)
    system.addForce(create_torch_force(model, [6] * len(region), region, uses_box=True,
                                       num_particles=system.getNumParticles(), force_group=2))
    with pytest.raises(openmm.OpenMMException, match="no bond joins.*give its bonds .in the topology, or bonds="):
        evaluate(system, positions, group=2)
    # The same force with the bonds is fine.
    bonded = openmm.XmlSerializer.clone(system)
    bonded.removeForce(bonded.getNumForces() - 1)
    pairs = [(b.atom1.index, b.atom2.index) for b in topology.bonds()]
    bonded.addForce(create_torch_force(model, [6] * len(region), region, uses_box=True,
                                       num_particles=system.getNumParticles(), force_group=2, bonds=pairs))
    expected, _ = direct(model, [6] * len(region), positions[region])
    assert evaluate(bonded, positions, group=2)[0] == pytest.approx(expected, rel=1e-5)


def test_a_region_of_several_molecules_still_spans_less_than_half_the_box():
    """Bonded chain + an unbonded atom 1.65 nm from the chain's first atom in a 3 nm box: the atom's nearest image
    is on the other side, so the region is refused, not evaluated with the atom misplaced."""
    model = small_model(cutoff_upper=5.0)
    system = openmm.System()
    for _ in range(6):
        system.addParticle(12.0)
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3))
    system.addForce(create_torch_force(model, [6, 6, 6, 6, 18], [0, 1, 2, 3, 4], uses_box=True, num_particles=6,
                                       bonds=[(0, 1), (1, 2), (2, 3)]))
    positions = np.array([[0.5, 1.0, 1.0], [0.65, 1.0, 1.0], [0.8, 1.0, 1.0], [0.95, 1.0, 1.0], [2.15, 1.0, 1.0],
                          [2.5, 2.5, 2.5]])
    with pytest.raises(openmm.OpenMMException, match="the ML region is 2 parts that no bond joins"):
        evaluate(system, positions)
    positions[4, 0] = 1.5  # 1.0 nm from the first atom: unambiguous
    expected, _ = direct(model, [6, 6, 6, 6, 18], positions[:5])
    assert evaluate(system, positions)[0] == pytest.approx(expected, rel=1e-5)


def test_bad_input_is_reported():
    topology, system, positions = alanine_dipeptide()
    potential = TensorNetPotential(small_model(cutoff_upper=5.0))
    with pytest.raises(ValueError, match="atoms is empty"):
        potential.createMixedSystem(topology, system, [])
    with pytest.raises(ValueError, match=r"particle indices in \[0, 22\)"):
        potential.createMixedSystem(topology, system, [0, 1, 22])
    with pytest.raises(ValueError, match="duplicate"):
        potential.createMixedSystem(topology, system, [0, 1, 1])
    with pytest.raises(ValueError, match="outside the model's range"):
        TensorNetPotential(small_model(max_z=7)).createSystem(topology)
    with pytest.raises(TypeError, match="must be a TensorNet or a checkpoint path"):
        TensorNetPotential(42)
    model = small_model(cutoff_upper=5.0)
    small_box = [[0.8, 0, 0], [0, 0.8, 0], [0, 0, 0.8]]  # 8 Å < 2 x 5 Å
    with pytest.raises(openmm.OpenMMException, match="box is too small for the cutoff"):
        evaluate(pure_system(model, [6, 8], small_box), np.array([[0.1, 0.1, 0.1], [0.2, 0.1, 0.1]]))


def test_energy_report_splits_a_mixed_system(capsys):
    topology, system, positions = alanine_dipeptide()
    region = [a.index for a in topology.atoms() if a.residue.name == "ALA"]
    model = small_model(cutoff_upper=5.0)
    mixed = TensorNetPotential(model).createMixedSystem(topology, system, region, forceGroup=1)
    report = energy_report(mixed, positions)
    table = capsys.readouterr().out
    torch_rows = [label for label in report if "TorchForce" in label]
    assert len(torch_rows) == 1 and "TorchForce" in table and "NonbondedForce" in table
    assert report[torch_rows[0]] == pytest.approx(evaluate(mixed, positions, group=1)[0], rel=1e-12)
    parts = sum(value for label, value in report.items() if label != "total")
    assert parts == pytest.approx(report["total"], rel=1e-9)
    assert report["total"] == pytest.approx(evaluate(mixed, positions)[0], rel=1e-12)
    assert [f.getForceGroup() for f in mixed.getForces()].count(1) == 1  # the input system is untouched


@pytest.mark.parametrize("energy_unit, length_unit", [("eV", "angstrom"), ("kcal/mol", "nm"), ("hartree", "bohr")])
def test_units_are_converted_with_openmm_constants(energy_unit, length_unit):
    """Expected values from openmm.unit, not from the package's own tables."""
    to_kj = {"eV": (1.0 * unit.elementary_charge * unit.volt * unit.AVOGADRO_CONSTANT_NA).value_in_unit(KJ),
             "kcal/mol": (1.0 * unit.kilocalorie_per_mole).value_in_unit(KJ),
             "hartree": (4.3597447222071e-18 * unit.joule * unit.AVOGADRO_CONSTANT_NA).value_in_unit(KJ)}[energy_unit]
    per_nm = {"angstrom": (1.0 * unit.nanometer).value_in_unit(unit.angstrom), "nm": 1.0,
              "bohr": 1.0 / 0.0529177210903}[length_unit]
    model = small_model(23, energy_unit=energy_unit, length_unit=length_unit, cutoff_upper=4.0 / 10 * per_nm)
    z, positions_angstrom = random_molecule(9, seed=3)
    positions = positions_angstrom.numpy() / 10.0
    energy, forces = evaluate(pure_system(model, z.tolist()), positions)
    x = torch.tensor(positions * per_nm, dtype=torch.float64, requires_grad=True)
    out = model(z, x)
    (gradient,) = torch.autograd.grad(out.energy.sum(), x)
    assert energy == pytest.approx(float(out.energy.sum()) * to_kj, rel=1e-10)
    np.testing.assert_allclose(forces, -gradient.numpy() * to_kj * per_nm, rtol=1e-8, atol=1e-8 * np.abs(forces).max())
