"""Neighbour capacity (static shapes for CUDA graphs, overflow errors naming the atom) and mechanical-embedding
edge cases: the region kept one molecule under wrapping, virtual sites, folded regions, input checks, offsets."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch
from conftest import random_molecule, small_model
from test_openmm_integration import alanine_dipeptide, evaluate

from openmm_tensornet import TensorNetPotential, create_torch_force, export_torchscript
from openmm_tensornet.openmm.export import estimate_neighbor_capacity

KJ = unit.kilojoule_per_mole


def water_like_box(num_atoms: int, seed: int, density_per_nm3: float = 100.0):
    """Random atoms at liquid-water atom density (0.1 / A^3) with no two closer than 0.09 nm."""
    z, positions = random_molecule(num_atoms, seed, min_distance=0.9, density=density_per_nm3 / 1000.0)
    side = (num_atoms / density_per_nm3) ** (1.0 / 3.0)
    return z.tolist(), positions.numpy() / 10.0, side


@pytest.mark.parametrize("static", [False, True])
def test_capacity_gives_the_same_energy_and_forces(static):
    model = small_model(11)
    z, positions, side = water_like_box(150, 1)
    box = torch.eye(3, dtype=torch.float64) * side
    x = torch.tensor(positions, dtype=torch.float64)
    free = export_torchscript(model, z, periodic=True)
    capacity = estimate_neighbor_capacity(len(z), model.cutoff_upper / 10.0, side**3)
    bounded = export_torchscript(model, z, periodic=True, neighbor_capacity=capacity, static_shapes=static)
    results = []
    for module in (free, bounded):
        pos = x.clone().requires_grad_(True)
        energy = module(pos, box)
        (gradient,) = torch.autograd.grad(energy, pos)
        results.append((float(energy.detach()), gradient))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-10, atol=1e-10)


def test_estimated_capacity_bounds_the_real_count():
    model = small_model(12)
    cutoff_nm = model.cutoff_upper / 10.0
    for seed in range(3):
        z, positions, side = water_like_box(400, seed)
        pairs = torch.ops.openmm_tensornet.neighbor_pairs(
            torch.tensor(positions) * 10, torch.eye(3, dtype=torch.float64) * side * 10, None,
            model.cutoff_upper, -1, False, "auto")
        found = int(pairs[2])
        capacity = estimate_neighbor_capacity(len(z), cutoff_nm, side**3)
        assert found < capacity < 1.6 * found + 64
    # A molecule: never more than every possible pair.
    assert estimate_neighbor_capacity(10, 0.5) == 90


def test_overflow_inside_openmm_names_the_atom_and_the_capacity():
    model = small_model(13)
    z, positions, side = water_like_box(120, 4)
    capacity = estimate_neighbor_capacity(len(z), model.cutoff_upper / 10.0, side**3)
    system = openmm.System()
    for _ in z:
        system.addParticle(12.0)
    box = [openmm.Vec3(side, 0, 0), openmm.Vec3(0, side, 0), openmm.Vec3(0, 0, side)]
    system.setDefaultPeriodicBoxVectors(*box)
    force = create_torch_force(model, z, periodic=True, cuda_graphs=True, box_vectors=box)
    assert force.getProperties()["useCUDAGraphs"] == "true"
    system.addForce(force)
    energy, _ = evaluate(system, positions)
    assert np.isfinite(energy)
    # Squeeze the atoms of one corner together: the list outgrows the capacity.
    crowded = positions.copy()
    crowded[:60] *= 0.35
    with pytest.raises(openmm.OpenMMException) as error:
        evaluate(system, crowded)
    message = str(error.value)
    assert f"the neighbour capacity is {capacity}" in message
    assert "No pair was dropped" in message
    counts = np.zeros(len(z), dtype=int)
    pairs = torch.ops.openmm_tensornet.neighbor_pairs(torch.tensor(crowded) * 10,
                                                      torch.eye(3, dtype=torch.float64) * side * 10, None,
                                                      model.cutoff_upper, -1, False, "auto")
    np.add.at(counts, pairs[0][0].numpy(), 1)
    assert f"Atom {int(counts.argmax())} has the most neighbours ({counts.max()};" in message


def test_overflow_names_the_system_particle_of_a_region():
    topology, system, positions = alanine_dipeptide(explicit=True)
    region = list(range(22))
    model = small_model(14)
    mixed = TensorNetPotential(model).createMixedSystem(topology, system, region, neighborCapacity=30)
    with pytest.raises(openmm.OpenMMException, match=r"neighbour capacity is 30\. Atom \d+ has the most"):
        evaluate(mixed, positions)
    with pytest.raises(ValueError, match="capacity must be None or an integer >= 0"):
        model.set_neighbor_capacity(-3)


def test_a_wrapped_region_keeps_its_energy():
    """Without constraints or bonds, region hydrogens would be molecules of their own and wrapped apart."""
    topology, system, positions = alanine_dipeptide(explicit=True)
    region = list(range(22))
    mixed = TensorNetPotential(small_model(15)).createMixedSystem(topology, system, region)
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    shifted = positions.copy()
    shifted[:22] += -0.05 - positions[:22].mean(0)  # the peptide's centre just outside the box corner
    context.setPositions(shifted)
    before = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    wrapped = context.getState(getPositions=True, enforcePeriodicBox=True).getPositions(asNumpy=True)
    moved = np.abs(wrapped.value_in_unit(unit.nanometer) - shifted)[:22].max()
    assert moved > 1.0  # the wrap did move the region ...
    context.setPositions(wrapped)
    after = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    assert after == pytest.approx(before, rel=1e-9, abs=1e-6)  # ... as one piece


def tip4p_pair():
    forcefield = app.ForceField("tip4pew.xml")
    topology = app.Topology()
    chain = topology.addChain()
    coordinates = []
    for k in range(2):
        residue = topology.addResidue("HOH", chain)
        oxygen = topology.addAtom("O", app.element.oxygen, residue)
        for name in ("H1", "H2"):
            topology.addBond(oxygen, topology.addAtom(name, app.element.hydrogen, residue))
        origin = np.array([0.3 * k, 0.05 * k, 0.0])
        coordinates += [origin, origin + [0.0957, 0, 0], origin + [-0.024, 0.0927, 0]]
    modeller = app.Modeller(topology, coordinates * unit.nanometer)
    modeller.addExtraParticles(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, rigidWater=False)
    positions = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    return modeller.topology, system, positions


def test_virtual_sites_of_the_region_lose_their_interactions_with_it():
    topology, system, positions = tip4p_pair()
    real = [a.index for a in topology.atoms() if a.element is not None]
    sites = [a.index for a in topology.atoms() if a.element is None]
    assert len(real) == 6 and len(sites) == 2
    potential = TensorNetPotential(small_model(16))
    mixed = potential.createMixedSystem(topology, system, real, forceGroup=1)
    for force in mixed.getForces():
        if not force.getName().startswith("TorchForce") and type(force).__name__ != "Force":
            force.setForceGroup(0)
    # Every interaction is inside the region, so the MM part must be exactly zero wherever the second water goes.
    for shift in (0.0, 0.1, 0.3, 0.6):
        moved = positions.copy()
        moved[4:] += np.array([shift, 0.0, 0.0])
        system_positions = [openmm.Vec3(*p) for p in moved]
        context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(system_positions)
        context.computeVirtualSites()
        mm = context.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(KJ)
        assert mm == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="is a virtual site; leave it out of atoms"):
        potential.createMixedSystem(topology, system, real + sites[:1])
    with pytest.raises(ValueError, match="some inside the ML region and some outside"):
        potential.createMixedSystem(topology, system, real[:2])


def test_a_region_longer_than_half_the_box_is_refused_not_folded():
    # No bonds given: the atoms hang from the first one by the nearest image (with bonds, any length is fine:
    # test_openmm_integration.py::test_a_region_longer_than_half_the_box_is_made_whole_along_its_bonds).
    model = small_model(17)
    chain = np.array([[0.1 + 0.13 * k, 0.3, 0.3] for k in range(7)])  # 0.78 nm along x
    system = openmm.System()
    for _ in range(8):
        system.addParticle(12.0)
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(1.5, 0, 0), openmm.Vec3(0, 1.5, 0), openmm.Vec3(0, 0, 1.5))
    system.addForce(create_torch_force(model, [6] * 7, list(range(7)), uses_box=True, num_particles=8))
    positions = np.vstack([chain, [[1.2, 1.2, 1.2]]])
    with pytest.raises(openmm.OpenMMException, match="7 parts that no bond joins.*less than half"):
        evaluate(system, positions)
    positions[:7, 0] = 0.1 + 0.11 * np.arange(7)  # 0.66 nm: fine, and wrapping it changes nothing
    energy, _ = evaluate(system, positions)
    positions[3:7, 0] += 1.5
    assert evaluate(system, positions)[0] == pytest.approx(energy, rel=1e-10)


def test_atoms_are_validated_before_anything_is_built():
    topology, system, positions = alanine_dipeptide()
    potential = TensorNetPotential(small_model(18))
    mixed = potential.createMixedSystem(topology, system, iter(range(22)))  # any iterable, used once
    assert mixed.getNumForces() == system.getNumForces() + 2
    with pytest.raises(TypeError, match="integer particle indices; got 6.7"):
        potential.createMixedSystem(topology, system, [0, 1, 6.7])
    with pytest.raises(ValueError, match=r"duplicate indices: \[1\]"):
        potential.createMixedSystem(topology, system, [0, 1, 1])


def test_exception_offsets_inside_the_region_are_zeroed_and_restraints_kept():
    topology, system, positions = alanine_dipeptide()
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded.addGlobalParameter("lam", 1.0)
    exception = nonbonded.addException(0, 21, 0.0, 0.3, 0.0, True)
    nonbonded.addExceptionParameterOffset("lam", exception, 0.5, 0.0, 2.0)
    restraint = openmm.CustomExternalForce("100*(x-x0)^2")
    restraint.addPerParticleParameter("x0")
    restraint.addParticle(3, [0.0])
    restraint.setForceGroup(5)
    system.addForce(restraint)
    cmap = openmm.CMAPTorsionForce()
    cmap.setName("my cmap")
    cmap.addMap(4, list(np.linspace(-1.0, 1.0, 16)))
    cmap.addTorsion(0, 4, 6, 8, 14, 6, 8, 14, 16)
    system.addForce(cmap)
    region = list(range(22))
    mixed = TensorNetPotential(small_model(19)).createMixedSystem(topology, system, region, forceGroup=1)
    names = [f.getName() for f in mixed.getForces()]
    assert names[:system.getNumForces()] == [f.getName() for f in system.getForces()]
    # Everything MM left inside the region is zero (the restraint, group 5, is the user's and stays); the offset
    # exception and the CMAP term would both contribute if they had survived.
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    mm_inside = context.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(KJ)
    assert mm_inside == pytest.approx(0.0, abs=1e-9)  # the whole molecule is the region
    kept = context.getState(getEnergy=True, groups={5}).getPotentialEnergy().value_in_unit(KJ)
    assert kept == pytest.approx(100 * positions[3, 0] ** 2, rel=1e-9)


def test_a_torchforce_already_in_the_system_is_named():
    topology, system, positions = alanine_dipeptide()
    model = small_model(20)
    mixed = TensorNetPotential(model).createMixedSystem(topology, system, list(range(5)))
    with pytest.raises(ValueError, match="A plugin force \\(e.g. a TorchForce\\) is in the MM system"):
        TensorNetPotential(model).createMixedSystem(topology, mixed, list(range(5, 10)))


def test_dipole_of_massless_elements_is_finite():
    model = small_model(21, max_z=128, dipole_head=True)
    z = torch.tensor([118, 120, 125])
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.7, 0.2]], dtype=torch.float64)
    out = model(z, pos, total_charge=torch.tensor([1.0], dtype=torch.float64))
    assert bool(torch.isfinite(out.dipole).all())
    # About the geometric centre: charges (summing to 1) times positions relative to it, plus atomic dipoles.
    shifted = model(z, pos + 3.0, total_charge=torch.tensor([1.0], dtype=torch.float64))
    torch.testing.assert_close(shifted.dipole, out.dipole, rtol=1e-10, atol=1e-10)


def test_the_region_never_interacts_with_its_own_images():
    """A box so small that the region's images lie within the cutoff: the energy must still be the isolated one.

    The periodic energy (the central copy's atomic energies in a 5x5x5 supercell, deep enough for two interaction
    layers) differs, so a region evaluated with images would fail this test."""
    model = small_model(22)  # cutoff 4 A, 2 layers
    positions = np.array([[0.20, 0.20, 0.20], [0.33, 0.22, 0.20], [0.25, 0.30, 0.31]])  # nm
    side = 0.5  # nm: the region spans < half of it, yet its images come within the 0.4 nm cutoff
    z = [6, 8, 7]
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(side, 0, 0), openmm.Vec3(0, side, 0), openmm.Vec3(0, 0, side))
    system.addForce(create_torch_force(model, z, [0, 1, 2], uses_box=True, num_particles=4))
    all_positions = np.vstack([positions, [[0.5, 0.5, 0.5]]])
    energy, _ = evaluate(system, all_positions)

    kj = 96.48533212331002  # eV -> kJ/mol
    x = torch.tensor(positions * 10, dtype=torch.float64)
    isolated = float(model(torch.tensor(z), x).energy.sum()) * kj
    shifts = torch.tensor([[i, j, k] for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)],
                          dtype=torch.float64) * side * 10
    supercell = (x.unsqueeze(0) + shifts.unsqueeze(1)).reshape(-1, 3)
    centre = int(((shifts == 0).all(dim=1)).nonzero()) * 3
    atoms = model(torch.tensor(z * len(shifts)), supercell).atom_energy
    periodic = float(atoms[centre:centre + 3].sum()) * kj
    image_distance = side * 10 - float(torch.cdist(x, x).max())
    assert image_distance < model.cutoff_upper  # images are inside the cutoff ...
    assert abs(periodic - isolated) > 1.0  # ... and would change the energy
    assert energy == pytest.approx(isolated, rel=1e-10)
