"""Physics suite applied to every model variant and dtype: symmetries, forces, smoothness, batching."""

from __future__ import annotations

import pytest
import torch

from conftest import TOLERANCES, assert_close, random_molecule, random_rotation, small_model

VARIANTS = [
    pytest.param(dict(num_layers=layers, equivariance_group=group, dtype=dtype), id=f"{group}-L{layers}-{dtype}")
    for group in ("O(3)", "SO(3)")
    for layers in (0, 1, 2)
    for dtype in ("float64", "float32")
]
HEADS = dict(dipole_head=True, polarizability_head=True)


def _dtype(settings) -> torch.dtype:
    return torch.float64 if settings["dtype"] == "float64" else torch.float32


def _evaluate(model, z, pos, **kwargs):
    return model(z, pos, compute_forces=True, **kwargs)


@pytest.mark.parametrize("settings", VARIANTS)
def test_rotation_invariance_and_equivariance(settings):
    dtype = _dtype(settings)
    tol = TOLERANCES[dtype]
    model = small_model(**settings, **HEADS)
    z, pos = random_molecule(11, seed=1, dtype=dtype)
    rotation = random_rotation(seed=7).to(dtype)
    plain = _evaluate(model, z, pos)
    turned = _evaluate(model, z, pos @ rotation.T)
    assert_close(turned.energy, plain.energy, tol["energy"], "energy under rotation")
    assert_close(turned.forces, plain.forces @ rotation.T, tol["forces"], "forces under rotation")
    assert_close(turned.dipole, plain.dipole @ rotation.T, tol["tensor"], "dipole under rotation")
    assert_close(turned.polarizability, rotation @ plain.polarizability @ rotation.T, tol["tensor"], "polarisability")


@pytest.mark.parametrize("settings", [v for v in VARIANTS if "O(3)-" in v.id and not v.id.startswith("SO")])
def test_o3_model_is_invariant_under_reflections(settings):
    dtype = _dtype(settings)
    tol = TOLERANCES[dtype]
    model = small_model(**settings, **HEADS)
    z, pos = random_molecule(11, seed=2, dtype=dtype)
    mirror = random_rotation(seed=8, proper=False).to(dtype)
    plain = _evaluate(model, z, pos)
    mirrored = _evaluate(model, z, pos @ mirror.T)
    assert_close(mirrored.energy, plain.energy, tol["energy"], "energy under reflection")
    assert_close(mirrored.forces, plain.forces @ mirror.T, tol["forces"], "forces under reflection")
    # The dipole is a true (polar) vector and the polarisability a true rank-2 tensor.
    assert_close(mirrored.dipole, plain.dipole @ mirror.T, tol["tensor"], "dipole under reflection")
    assert_close(mirrored.polarizability, mirror @ plain.polarizability @ mirror.T, tol["tensor"], "polarisability")


@pytest.mark.parametrize("layers", [1, 2])
def test_so3_model_tells_enantiomers_apart(layers):
    """An SO(3) model sees chirality: the mirror image has another energy, but every mirror image the same one."""
    model = small_model(num_layers=layers, equivariance_group="SO(3)")
    z, pos = random_molecule(11, seed=4)
    energy = model(z, pos).energy.detach()
    mirror_a = random_rotation(seed=9, proper=False)
    mirror_b = random_rotation(seed=10, proper=False)
    image_a = model(z, pos @ mirror_a.T).energy.detach()
    image_b = model(z, pos @ mirror_b.T).energy
    # small random weights give a small chirality signal (~1e-6 relative), far above float64 noise (~1e-15)
    assert float((image_a - energy).abs()) > 1e-7 * float(energy.abs().detach()), "SO(3) energy should depend on chirality"
    assert_close(image_b, image_a, 1e-10, "two mirror images differ only by a rotation")


def test_so3_model_without_interactions_is_reflection_invariant():
    """With no interaction layer, no product couples the skew part, so even an SO(3) model is achiral."""
    model = small_model(num_layers=0, equivariance_group="SO(3)")
    z, pos = random_molecule(11, seed=4)
    mirror = random_rotation(seed=9, proper=False)
    assert_close(model(z, pos @ mirror.T).energy, model(z, pos).energy, 1e-10, "energy")


@pytest.mark.parametrize("settings", VARIANTS)
def test_translation_and_permutation_invariance(settings):
    dtype = _dtype(settings)
    tol = TOLERANCES[dtype]
    model = small_model(**settings)
    z, pos = random_molecule(10, seed=5, dtype=dtype)
    plain = _evaluate(model, z, pos)
    shifted = _evaluate(model, z, pos + torch.tensor([3.7, -12.2, 100.5], dtype=dtype))
    assert_close(shifted.energy, plain.energy, tol["energy"] * 10, "energy under translation")
    assert_close(shifted.forces, plain.forces, tol["forces"] * 10, "forces under translation")
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    permuted = _evaluate(model, z[order], pos[order])
    assert_close(permuted.energy, plain.energy, tol["energy"], "energy under permutation")
    assert_close(permuted.forces, plain.forces[order], tol["forces"], "forces under permutation")
    assert_close(permuted.atom_energy, plain.atom_energy[order], tol["energy"], "atomic energies under permutation")


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
@pytest.mark.parametrize("rbf_type", ["expnorm", "gauss"])
def test_forces_match_finite_differences(group, rbf_type):
    model = small_model(equivariance_group=group, rbf_type=rbf_type, cutoff_lower=0.3 if rbf_type == "gauss" else 0.0)
    z, pos = random_molecule(8, seed=6)
    total_charge = torch.tensor([1.0], dtype=torch.float64)
    forces = model(z, pos, total_charge=total_charge, compute_forces=True).forces
    step = 1e-5
    numeric = torch.zeros_like(pos)
    for atom in range(pos.shape[0]):
        for axis in range(3):
            plus, minus = pos.clone(), pos.clone()
            plus[atom, axis] += step
            minus[atom, axis] -= step
            e_plus = model(z, plus, total_charge=total_charge).energy
            e_minus = model(z, minus, total_charge=total_charge).energy
            numeric[atom, axis] = -(e_plus - e_minus).item() / (2 * step)
    assert_close(forces, numeric, 1e-6, "autograd forces vs central differences")


@pytest.mark.parametrize("cutoff_lower", [0.0, 0.8])
def test_energy_continuous_when_a_neighbour_crosses_the_cutoff(cutoff_lower):
    """Approaching the cutoff, the neighbour's influence vanishes smoothly (value and force)."""
    model = small_model(cutoff_lower=cutoff_lower)
    cutoff = model.cutoff_upper
    z = torch.tensor([6, 8, 1, 7])
    # atoms 1 and 2 lie at x <= 0, so atom 3 on the +x axis is always closer to atom 0 than to them
    core = torch.tensor([[0.0, 0.0, 0.0], [-1.2, 0.0, 0.0], [-0.5, 0.9, 0.0]], dtype=torch.float64)

    def energy_and_force(distance: float):
        pos = torch.cat((core, torch.tensor([[distance, 0.0, 0.0]], dtype=torch.float64)))
        out = model(z, pos, compute_forces=True)
        return float(out.energy.detach()), out.forces[3].clone()

    far_energy, far_force = energy_and_force(cutoff + 1e-3)
    assert float(far_force.abs().max()) == 0.0
    isolated = model(z[:3], core).energy + model(z[3:], torch.zeros(1, 3, dtype=torch.float64)).energy
    isolated = isolated - model.energy_mean  # the standardisation mean is a per-molecule constant, counted once
    assert abs(far_energy - float(isolated.detach())) < 1e-12, "beyond the cutoff the neighbour does not interact"
    for gap in (1e-2, 1e-3, 1e-4):
        near_energy, near_force = energy_and_force(cutoff - gap)
        # cosine cutoff: energy deviates as O(gap^2), force as O(gap)
        assert abs(near_energy - far_energy) < 50.0 * gap * gap
        assert float(near_force.abs().max()) < 50.0 * gap


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
def test_batch_gives_the_same_results_as_each_molecule_alone(group):
    model = small_model(equivariance_group=group, **HEADS)
    molecules = [random_molecule(n, seed=20 + n) for n in (5, 9, 7)]  # overlapping in space on purpose
    charges = torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
    z = torch.cat([m[0] for m in molecules])
    pos = torch.cat([m[1] for m in molecules])
    batch = torch.cat([torch.full((len(m[0]),), i) for i, m in enumerate(molecules)])
    together = model(z, pos, batch=batch, total_charge=charges, compute_forces=True)
    start = 0
    for index, (zi, posi) in enumerate(molecules):
        alone = model(zi, posi, total_charge=charges[index : index + 1], compute_forces=True)
        rows = slice(start, start + len(zi))
        assert_close(together.energy[index : index + 1], alone.energy, 1e-12, "energy")
        assert_close(together.forces[rows], alone.forces, 1e-10, "forces")
        assert_close(together.dipole[index], alone.dipole[0], 1e-10, "dipole")
        assert_close(together.polarizability[index], alone.polarizability[0], 1e-10, "polarisability")
        assert_close(together.charges[rows], alone.charges, 1e-10, "charges")
        start += len(zi)


def test_atomic_energies_sum_to_the_molecular_energy_and_charges_to_the_total_charge():
    model = small_model(**HEADS)
    z, pos = random_molecule(9, seed=11)
    out = model(z, pos, total_charge=torch.tensor([-2.0], dtype=torch.float64))
    assert_close(out.atom_energy.sum().reshape(1), out.energy, 1e-12, "sum of atomic energies")
    assert abs(float(out.charges.sum().detach()) + 2.0) < 1e-12


def test_total_charge_changes_the_energy():
    model = small_model()
    z, pos = random_molecule(9, seed=12)
    neutral = model(z, pos).energy
    cation = model(z, pos, total_charge=torch.tensor([1.0], dtype=torch.float64)).energy
    assert float((cation - neutral).abs().detach()) > 1e-6


def test_periodic_images_are_equivalent():
    """Moving an atom by a box vector, or wrapping it, leaves energy and forces unchanged (triclinic box)."""
    model = small_model()
    z, pos = random_molecule(14, seed=13, density=0.05)
    box = torch.tensor([[9.5, 0.0, 0.0], [2.0, 9.0, 0.0], [-1.5, 3.0, 8.7]], dtype=torch.float64)
    plain = model(z, pos, box=box, compute_forces=True)
    moved = pos.clone()
    moved[0] += box[1] - 2 * box[2]
    moved[5] -= box[0]
    image = model(z, moved, box=box, compute_forces=True)
    assert_close(image.energy, plain.energy, 1e-12, "energy")
    assert_close(image.forces, plain.forces, 1e-10, "forces")
    isolated = model(z, pos).energy
    gap = float((plain.energy - isolated).abs().detach())
    assert gap > 1e-3 * float(isolated.abs().detach()), "the box adds interactions across the boundary"


def test_scripted_model_gives_the_same_results():
    model = small_model(**HEADS)
    scripted = torch.jit.script(model)
    z, pos = random_molecule(9, seed=14)
    eager = model(z, pos, compute_forces=True)
    script = scripted(z, pos, compute_forces=True)
    for name in ("energy", "forces", "dipole", "polarizability"):
        assert_close(getattr(script, name), getattr(eager, name), 1e-12, name)


def test_heads_are_trainable():
    model = small_model(**HEADS).train()
    z, pos = random_molecule(7, seed=15)
    out = model(z, pos, compute_forces=True)
    loss = out.energy.sum() + out.forces.pow(2).sum() + out.dipole.pow(2).sum() + out.polarizability.pow(2).sum()
    loss.backward()
    for head in (model.energy_head, model.dipole, model.polarizability, model.embedding):
        grads = [p.grad for p in head.parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
