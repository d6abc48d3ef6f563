"""Bad input gives clear errors; checkpoints round-trip; hyper-parameters are validated."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, random_molecule, small_model

from openmm_tensornet import TensorNet, load_model, neighbor_pairs_reference, save_model


@pytest.fixture
def model():
    return small_model(max_z=20)


@pytest.fixture
def inputs():
    return random_molecule(6, seed=1)


def test_atomic_number_at_or_above_max_z(model, inputs):
    z, pos = inputs
    z = z.clone()
    z[2] = 20
    with pytest.raises(ValueError, match=r"atomic numbers must lie in \[1, 19\].*got \[20\]"):
        model(z, pos)
    z[2] = 0
    with pytest.raises(ValueError, match="got \\[0\\]"):
        model(z, pos)


def test_nan_positions_name_the_atom(model, inputs):
    z, pos = inputs
    pos = pos.clone()
    pos[4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"positions of atoms \[4\] contain NaN or infinity"):
        model(z, pos)


def test_coincident_atoms(model, inputs):
    z, pos = inputs
    pos = pos.clone()
    pos[3] = pos[1]
    with pytest.raises(ValueError, match="atoms 1 and 3 are at the same position"):
        model(z, pos)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda z, p: (z, p[:-1]), ValueError, r"pos must have shape \[N, 3\] with N = len\(z\) = 6"),
        (lambda z, p: (z, p[:, :2]), ValueError, r"got \[6, 2\]"),
        (lambda z, p: (z.float(), p), TypeError, "z must be a 1-D int64 tensor"),
        (lambda z, p: (z[None], p), TypeError, "z must be a 1-D int64 tensor"),
        (lambda z, p: (z, p.float()), TypeError, "pos has dtype torch.float32 but the model's parameters are torch.float64"),
    ],
)
def test_mismatched_shapes_and_dtypes(model, inputs, change, error, message):
    z, pos = change(*inputs)
    with pytest.raises(error, match=message):
        model(z, pos)


def test_bad_batch_charge_and_box(model, inputs):
    z, pos = inputs
    with pytest.raises(ValueError, match=r"batch must be an int64 tensor of shape \[N\]"):
        model(z, pos, batch=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="sorted"):
        model(z, pos, batch=torch.tensor([0, 1, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="total_charge has 2 values but the batch holds 1 molecules"):
        model(z, pos, total_charge=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="box is too small for the cutoff"):
        model(z, pos, box=torch.eye(3, dtype=torch.float64) * 7.0)
    with pytest.raises(ValueError, match="reduced triclinic"):
        model(z, pos, box=torch.tensor([[20.0, 1.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]], dtype=torch.float64))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(rbf_type="bessel"), r"rbf_type='bessel' is not supported; choose one of 'expnorm', 'gauss'"),
        (dict(activation="relu"), "activation='relu'"),
        (dict(equivariance_group="SE(3)"), "'O\\(3\\)', 'SO\\(3\\)'"),
        (dict(dtype="float16"), "dtype='float16'"),
        (dict(cutoff_lower=5.0, cutoff_upper=4.0), "cutoff_lower < cutoff_upper"),
        (dict(num_layers=-1), "num_layers must be an integer >= 0"),
        (dict(hidden_channels=12.5), "hidden_channels must be an integer"),
        (dict(energy_unit="Ry"), "energy_unit='Ry'"),
    ],
)
def test_bad_hyper_parameters(settings, message):
    with pytest.raises(ValueError, match=message):
        TensorNet(**settings)


def test_empty_and_single_atom_inputs(model):
    empty = model(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.float64), compute_forces=True)
    # no atoms, no energy: the standardisation mean is carried by a molecule's atoms
    assert empty.energy.shape == (1,) and float(empty.energy.detach()) == 0.0 and empty.forces.shape == (0, 3)
    one = model(torch.tensor([6]), torch.zeros(1, 3, dtype=torch.float64), compute_forces=True)
    assert torch.equal(one.forces, torch.zeros(1, 3, dtype=torch.float64))


@pytest.mark.parametrize("heads", [False, True])
def test_checkpoint_round_trip(tmp_path, heads):
    model = small_model(dipole_head=heads, polarizability_head=heads, equivariance_group="SO(3)")
    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.hparams == model.hparams and not loaded.training
    z, pos = random_molecule(9, seed=2)
    a, b = model(z, pos, compute_forces=True), loaded(z, pos, compute_forces=True)
    for name in ("energy", "forces") + (("dipole", "polarizability") if heads else ()):
        assert_close(getattr(b, name), getattr(a, name), 0.0, name)
    assert load_model(path, energy_unit="kcal/mol").energy_unit == "kcal/mol"


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a model checkpoint"):
        load_model(path)
    model = small_model()
    save_model(model, path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["format_version"] = 99
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="format version 99 .* upgrade openmm-tensornet"):
        load_model(path)
    with pytest.raises(TypeError, match="expects an openmm_tensornet.TensorNet"):
        save_model(torch.nn.Linear(2, 2), path)


def test_reference_neighbour_list_against_a_double_loop():
    """The pure-torch list used by the model: every pair within the cutoff, minimum image, no self-pairs."""
    z, pos = random_molecule(40, seed=3, density=0.1)
    box = torch.tensor([[8.0, 0.0, 0.0], [1.5, 8.2, 0.0], [-2.0, 1.0, 8.4]], dtype=torch.float64)
    cutoff = 3.9
    pairs = neighbor_pairs_reference(pos, cutoff, box=box)
    found = {(int(i), int(j)) for i, j in pairs.indices.T}
    expected = set()
    shifts = torch.tensor([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=torch.float64)
    for i in range(40):
        for j in range(40):
            if i != j and float(((pos[i] - pos[j] + shifts @ box).norm(dim=-1)).min()) < cutoff:
                expected.add((i, j))
    assert found == expected and int(pairs.num_pairs) == len(expected)
    nearest = torch.stack([(pos[i] - pos[j] + shifts @ box).norm(dim=-1).min() for i, j in pairs.indices.T])
    assert_close(pairs.distances, nearest, 1e-12, "minimum-image distances")
