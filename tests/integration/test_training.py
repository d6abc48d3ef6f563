"""Reference data (GFN2-xTB through tblite), the on-disk format and its readers, and training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from openmm_tensornet import load_model, save_model
from openmm_tensornet.io.data import DataError, Molecule, read_dataset, read_extxyz, read_molecule, write_molecule
from openmm_tensornet.training.datagen import XTB, generate_data, load_structures
from openmm_tensornet.training.trainer import (Batches, TrainingConfig, epoch_order, evaluate_errors, fit_atomrefs,
                                               annealed_lr, loss_terms, split_records, train,
                                               validation_subset, within_max_force)

pytest.importorskip("tblite")
pytest.importorskip("rdkit")

SMILES = "O water\nCO methanol\nC[NH3+] methylammonium\nCC(=O)[O-] acetate\nCF fluoromethane\nCCl chloromethane\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "molecules.smi").write_text(SMILES)
    generate_data([folder / "molecules.smi"], folder / "set", frames=6, stride=4, perturbations=3, workers=2,
                  log=lambda *_: None)
    return folder / "set"


def test_xtb_labels_are_consistent_forces_and_units():
    """Forces are minus the gradient of the energy (central differences), in eV and Å."""
    structure = load_structures_from_smiles("CO methanol")
    xtb = XTB(structure.z, structure.positions, structure.charge)
    energy, forces, dipole = xtb(structure.positions)
    step = 1e-4
    for atom, axis in ((0, 0), (2, 1), (5, 2)):
        moved = structure.positions.copy()
        moved[atom, axis] += step
        plus = xtb(moved)[0]
        moved[atom, axis] -= 2 * step
        minus = xtb(moved)[0]
        assert forces[atom, axis] == pytest.approx(-(plus - minus) / (2 * step), rel=1e-4, abs=1e-4)
    # GFN2-xTB total energy of methanol is about -8.24 hartree = -224 eV; its dipole is 1.5-1.9 D (0.3-0.4 e·Å).
    assert -230 < energy < -215
    assert 0.25 < np.linalg.norm(dipole) < 0.45


def load_structures_from_smiles(line, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "one.smi"
        path.write_text(line + "\n")
        return load_structures(path)[0]


def test_generated_data_set(dataset):
    molecules = read_dataset(dataset)
    assert sorted(m.name for m in molecules) == sorted(line.split()[1] for line in SMILES.splitlines())
    for molecule in molecules:
        assert len(molecule) == 6 * (1 + 3)
        assert molecule.method.startswith("GFN2-xTB (tblite")
        assert molecule.dipole.shape == (len(molecule), 3)
        assert np.ptp(molecule.energy) > 0.05  # the configurations really differ
    charges = {m.name: m.charge for m in molecules}
    assert charges["acetate"] == -1 and charges["methylammonium"] == 1 and charges["water"] == 0


def test_generation_resumes(dataset, tmp_path):
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(dataset, copy)
    (copy / "water.npz").unlink()
    (copy / "methanol.npz").write_bytes(b"truncated")
    before = read_molecule(copy / "acetate.npz")
    lines = []
    (tmp_path / "molecules.smi").write_text(SMILES)
    generate_data([tmp_path / "molecules.smi"], copy, frames=6, stride=4, perturbations=3, workers=1,
                  log=lines.append)
    assert sum("already done" in line for line in lines) == 4
    assert any(line.startswith("methanol: redoing an unreadable shard") for line in lines)
    assert len(read_molecule(copy / "water.npz")) == 24
    assert np.array_equal(read_molecule(copy / "acetate.npz").positions, before.positions)


def test_shards_and_extxyz_round_trip(dataset, tmp_path):
    from ase import Atoms
    from ase.io import write

    original = read_molecule(dataset / "acetate.npz")
    write_molecule(original, tmp_path / "copy.npz")
    again = read_molecule(tmp_path / "copy.npz")
    for key in ("z", "positions", "energy", "forces", "dipole"):
        assert np.array_equal(getattr(again, key), getattr(original, key))
    assert (again.name, again.charge, again.method) == (original.name, original.charge, original.method)

    frames = []
    for k in range(len(original)):
        atoms = Atoms(numbers=original.z, positions=original.positions[k])
        atoms.info["energy"] = original.energy[k] * 23.060547830619  # eV -> kcal/mol
        atoms.info["charge"] = -1
        atoms.arrays["forces"] = original.forces[k] * 23.060547830619
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames, format="extxyz")
    (read,) = read_extxyz(tmp_path / "data.extxyz", energy_unit="kcal/mol")
    np.testing.assert_allclose(read.energy, original.energy, rtol=1e-9)
    np.testing.assert_allclose(read.forces, original.forces, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(read.positions, original.positions, atol=1e-7)
    assert read.charge == -1


def test_bad_data_names_the_file_and_record(dataset, tmp_path):
    good = read_molecule(dataset / "water.npz")
    broken = Molecule(**{**good.__dict__, "source": ""})
    broken.forces = broken.forces.copy()
    broken.forces[7, 1, 2] = np.nan
    with pytest.raises(DataError, match="water: record 7 has NaN or infinite forces"):
        write_molecule(broken, tmp_path / "x.npz")
    np.savez(tmp_path / "shapes.npz", z=good.z, positions=good.positions, energy=good.energy,
             forces=good.forces[:, :2])
    with pytest.raises(DataError, match=r"shapes.npz: forces has shape \(24, 2, 3\) but 24 records of 3 atoms"):
        read_molecule(tmp_path / "shapes.npz")
    np.savez(tmp_path / "element.npz", z=np.array([8, 1, 0]), positions=good.positions, energy=good.energy,
             forces=good.forces)
    with pytest.raises(DataError, match=r"element.npz: unknown element\(s\) with atomic number \[0\]"):
        read_molecule(tmp_path / "element.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="junk.npz: cannot be read as a data shard"):
        read_molecule(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "missing")
    (tmp_path / "bad.smi").write_text("C1CC invalid\n")
    with pytest.raises(DataError, match="line 1: RDKit cannot parse"):
        load_structures(tmp_path / "bad.smi")


def test_a_subset_repeats_the_whole_runs_configurations(dataset, tmp_path):
    (tmp_path / "molecules.smi").write_text(SMILES)
    paths = generate_data([tmp_path / "molecules.smi"], tmp_path / "part", frames=6, stride=4, perturbations=3,
                          workers=1, only={"acetate", "chloromethane"}, log=lambda *_: None)
    assert sorted(p.name for p in paths) == ["acetate.npz", "chloromethane.npz"]
    assert sorted(p.name for p in (tmp_path / "part").glob("*.npz")) == ["acetate.npz", "chloromethane.npz"]
    for name in ("acetate", "chloromethane"):  # each keeps its seed in the whole list (acetate is 4th, not 1st)
        whole, part = read_molecule(dataset / f"{name}.npz"), read_molecule(tmp_path / "part" / f"{name}.npz")
        np.testing.assert_allclose(part.positions, whole.positions, atol=1e-9)
        np.testing.assert_allclose(part.energy, whole.energy, atol=1e-9)
    with pytest.raises(DataError, match=r"only: 1 names are not molecules .*\['ethanol'\]"):
        generate_data([tmp_path / "molecules.smi"], tmp_path / "bad", only={"water", "ethanol"}, log=lambda *_: None)


def test_held_out_names_fix_the_validation_and_test_molecules(dataset, tmp_path):
    import json

    molecules = read_dataset(dataset)
    (tmp_path / "held.json").write_text(json.dumps({"validation": ["water", "absent"], "test": ["acetate"]}))
    (tmp_path / "c.yaml").write_text(f"data: {dataset}\nheld_out: held.json\n")
    config = TrainingConfig.from_yaml(tmp_path / "c.yaml")
    assert config.held_out == str(tmp_path / "held.json")  # relative to the config, like data
    parts = split_records(molecules, config)
    names = [{molecules[r.molecule].name for r in part} for part in parts]
    assert names == [{"methanol", "methylammonium", "fluoromethane", "chloromethane"}, {"water"}, {"acetate"}]
    assert sum(len(p) for p in parts) == sum(len(m) for m in molecules)
    (tmp_path / "both.json").write_text(json.dumps({"validation": ["water"], "test": ["water"]}))
    (tmp_path / "shape.json").write_text(json.dumps({"validation": ["water"]}))
    (tmp_path / "none.json").write_text(json.dumps({"validation": ["ethanol"], "test": []}))
    for file, message in (("both.json", "under both validation and test"), ("shape.json", "must hold"),
                          ("missing.json", "does not exist"), ("none.json", "no validation molecule of that file")):
        with pytest.raises(ValueError, match=message):
            train(tiny_config(dataset, tmp_path / "run", split_by="molecule", held_out=str(tmp_path / file)))
    with pytest.raises(ValueError, match="needs split_by: molecule"):
        train(tiny_config(dataset, tmp_path / "run", held_out=str(tmp_path / "held.json")))


def test_data_can_be_a_list_and_a_molecule_split_across_it_stays_together(dataset, tmp_path):
    import json
    import shutil

    extra = tmp_path / "extra"
    extra.mkdir()
    water = next(m for m in read_dataset(dataset) if m.name == "water")
    more = replace(water, positions=water.positions[:2], energy=water.energy[:2], forces=water.forces[:2],
                   dipole=None if water.dipole is None else water.dipole[:2])
    write_molecule(more, extra / "water.more.npz")  # more records of a molecule, elsewhere
    shutil.copy(next(p for p in dataset.glob("*.npz") if read_molecule(p).name == "acetate"), extra / "acetate.npz")
    (tmp_path / "held.json").write_text(json.dumps({"validation": ["water"], "test": ["acetate"]}))
    (tmp_path / "c.yaml").write_text(f"data: [{dataset}, extra]\nheld_out: held.json\nsplit_by: molecule\n")
    config = TrainingConfig.from_yaml(tmp_path / "c.yaml")
    assert config.data == [str(dataset), str(extra)]  # each relative path against the config's folder
    molecules = read_dataset(config.data)
    assert len(molecules) == len(read_dataset(dataset)) + 2
    parts = split_records(molecules, config)
    names = [{molecules[r.molecule].name for r in part} for part in parts]
    assert names[1:] == [{"water"}, {"acetate"}]  # both places' water validates, both acetates test
    assert sum(len(molecules[r.molecule]) == 2 for r in parts[1]) == 2
    for bad in ("[]", "[3, x]", "3", "{a: b}"):
        (tmp_path / "bad.yaml").write_text(f"data: {bad}\n")
        with pytest.raises(ValueError, match="non-empty list"):
            TrainingConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(DataError, match="empty list"):
        read_dataset([])


def test_split_keeps_molecules_together(dataset):
    molecules = read_dataset(dataset)
    config = TrainingConfig(data=str(dataset), split=(0.6, 0.2, 0.2))
    parts = split_records(molecules, config)
    names = [{molecules[r.molecule].name for r in part} for part in parts]
    assert all(names) and not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(len(p) for p in parts) == sum(len(m) for m in molecules)


def test_atomrefs_reproduce_exact_compositions():
    rng = np.random.default_rng(0)
    refs = {1: -13.6, 6: -1030.0, 8: -2040.0}
    molecules = []
    for name, z in (("a", [8, 1, 1]), ("b", [6, 1, 1, 1, 1]), ("c", [6, 8, 1, 1, 1, 1]), ("d", [6, 6, 1, 1])):
        energy = np.array([sum(refs[v] for v in z)] * 3)
        molecules.append(Molecule(name, np.array(z), rng.normal(size=(3, len(z), 3)), energy,
                                  np.zeros((3, len(z), 3))))
    from openmm_tensornet.training.trainer import Record

    records = [Record(m, r) for m in range(4) for r in range(3)]
    fitted = fit_atomrefs(molecules, records, 10)
    for z, value in refs.items():
        assert float(fitted[z]) == pytest.approx(value, rel=1e-9)


def tiny_config(dataset, output, **overrides):
    settings = dict(data=str(dataset), output=str(output), model=dict(hidden_channels=16, num_layers=1, num_rbf=8,
                                                                      cutoff_upper=4.0, max_z=18),
                    epochs=6, batch_size=8, lr=3e-3, warmup_steps=4, split_by="record", split=(0.7, 0.15, 0.15),
                    progress=False, threads=1, seed=3)
    settings.update(overrides)
    return TrainingConfig(**settings)


def test_training_lowers_the_validation_force_error(dataset, tmp_path):
    result = train(tiny_config(dataset, tmp_path / "run", epochs=12))
    first = result.history[0]["val_forces_mae_meV_per_A"]
    best = min(row["val_forces_mae_meV_per_A"] for row in result.history)
    assert best < 0.6 * first, (first, best)
    for name in ("model.pt", "last.ckpt", "metrics.md", "history.csv", "learning_curve.png"):
        assert (tmp_path / "run" / name).exists()
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.hparams["elements"] == [1, 6, 7, 8, 9, 17]
    assert model.hparams["energy_unit"] == "eV" and model.hparams["length_unit"] == "angstrom"
    assert "| test |" in (tmp_path / "run" / "metrics.md").read_text()


def test_resume_reproduces_the_uninterrupted_run(dataset, tmp_path):
    straight = train(tiny_config(dataset, tmp_path / "straight", epochs=4))
    train(tiny_config(dataset, tmp_path / "resumed", epochs=2))
    resumed = train(tiny_config(dataset, tmp_path / "resumed", epochs=4))
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny_config(dataset, tmp_path / "resumed", epochs=5, lr=1e-2))


def test_init_from_starts_where_the_checkpoint_left_off(dataset, tmp_path):
    """A run started from a checkpoint's weights validates, before any step, exactly as that checkpoint does on the
    same data (its first epoch at lr 0 keeps the weights); another architecture is refused with what differs."""
    first = train(tiny_config(dataset, tmp_path / "first", epochs=3))
    again = train(tiny_config(dataset, tmp_path / "again", epochs=1, lr=1e-12, warmup_steps=1,
                              init_from=str(tmp_path / "first" / "model.pt")))
    assert again.history[0]["val_loss"] == pytest.approx(min(row["val_loss"] for row in first.history), rel=1e-5)
    # Resumed, the run continues from its own last.ckpt: the checkpoint it started from is no longer needed.
    (tmp_path / "first" / "model.pt").rename(tmp_path / "first.pt")
    assert len(train(tiny_config(dataset, tmp_path / "again", epochs=2, lr=1e-12, warmup_steps=1,
                                 init_from=str(tmp_path / "first" / "model.pt"))).history) == 2
    (tmp_path / "first.pt").rename(tmp_path / "first" / "model.pt")
    fresh = train(tiny_config(dataset, tmp_path / "fresh", epochs=1, lr=1e-12, warmup_steps=1))
    assert fresh.history[0]["val_loss"] > 2 * again.history[0]["val_loss"]
    wider = dict(tiny_config(dataset, tmp_path).model, hidden_channels=24)
    with pytest.raises(ValueError, match=r"another architecture .*hidden_channels: 16 there, 24 here"):
        train(tiny_config(dataset, tmp_path / "wider", model=wider, init_from=str(tmp_path / "first" / "model.pt")))
    (tmp_path / "tune.yaml").write_text(f"data: {dataset}\ninit_from: default\n")
    tune = TrainingConfig.from_yaml(tmp_path / "tune.yaml")
    assert tune.init_from == "default"  # the shipped model, not a file next to the YAML
    with pytest.raises(ValueError, match="hidden_channels: 64 there, 16 here"):
        train(tiny_config(dataset, tmp_path / "tune", init_from="default"))
    save_model(load_model(tmp_path / "first" / "model.pt", energy_unit="kcal/mol"), tmp_path / "kcal.pt")
    with pytest.raises(ValueError, match="kcal.pt was trained in kcal/mol and angstrom, but training works in eV"):
        train(tiny_config(dataset, tmp_path / "kcal", init_from=str(tmp_path / "kcal.pt")))
    with pytest.raises(FileNotFoundError, match="init_from: .*gone.pt does not exist"):
        train(tiny_config(dataset, tmp_path / "gone", init_from=str(tmp_path / "gone.pt")))


def test_config_errors_are_clear(tmp_path, dataset):
    (tmp_path / "c.yaml").write_text("data: x\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        TrainingConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("epochs: 3\n")
    with pytest.raises(ValueError, match="'data' .* is required"):
        TrainingConfig.from_yaml(tmp_path / "d.yaml")
    with pytest.raises(ValueError, match="split_by must be"):
        train(tiny_config(dataset, tmp_path / "x", split_by="atom"))


def test_dipole_targets_train_the_dipole_head(dataset, tmp_path):
    result = train(tiny_config(dataset, tmp_path / "dipole", epochs=8, dipole_weight=5.0))
    assert result.model.dipole is not None
    first = result.history[0]["val_dipole_mae_eA"]
    best = min(row["val_dipole_mae_eA"] for row in result.history)
    assert best < 0.7 * first, (first, best)


def test_two_processes_give_the_run_of_one_with_the_same_global_batch(dataset, tmp_path):
    """torchrun with 2 CPU processes (gloo): each takes half of every global batch of 7 (uneven shares), the
    gradients are summed; the result equals one process with the same global batch."""
    import subprocess
    import sys
    from pathlib import Path

    settings = dict(epochs=2, batch_size=7, dtype="float64", device="cpu")
    single = train(tiny_config(dataset, tmp_path / "one", **settings))
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_training import tiny_config\n"
        "from openmm_tensornet.training.trainer import train\n"
        f"train(tiny_config({str(dataset)!r}, {str(tmp_path / 'two')!r}, **{settings!r}))\n")
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    parallel = load_model(tmp_path / "two" / "model.pt")
    for (name, a), (_, b) in zip(single.model.state_dict().items(), parallel.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), name
    history = (tmp_path / "two" / "history.csv").read_text().splitlines()
    assert len(history) == 3  # written once, by process 0 (header + 2 epochs)
    assert not torch.equal(single.model.state_dict()["readout_linear.weight"],
                           train(tiny_config(dataset, tmp_path / "other", **dict(settings, batch_size=3)))
                           .model.state_dict()["readout_linear.weight"])  # the batch size matters: the test can fail


def test_device_setting_is_checked(dataset, tmp_path):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        train(tiny_config(dataset, tmp_path / "x", device="gpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no GPU"):
            train(tiny_config(dataset, tmp_path / "y", device="cuda"))


def test_training_progress_reaches_logs_without_a_terminal(capsys):
    """Under nohup or a batch system (stderr is no terminal) a long epoch still reports progress, a line a minute."""
    from openmm_tensornet.training.trainer import _LogBar, _progress

    now = [0.0]
    bar = _LogBar(total=1000, desc="epoch 1/5", clock=lambda: now[0])
    bar.set_postfix(loss="0.5")
    bar.update(100)  # before a minute has passed: silent
    now[0] = 61.0
    bar.update(100)
    now[0] = 80.0
    bar.update(300)  # 19 s after the last line: silent
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["epoch 1/5: 200/1000 configurations, 3.3/s, about 4.1 min left, loss 0.5"]
    assert isinstance(_progress(TrainingConfig(data="x"))(total=1, desc="d"), _LogBar)  # pytest's stderr: no tty
    assert not isinstance(_progress(TrainingConfig(data="x", progress=False))(total=1, desc="d"), _LogBar)


def test_epochs_of_part_of_the_set_stream_through_fresh_permutations():
    whole = [epoch_order(10, epoch, seed=2) for epoch in range(3)]
    assert all(sorted(order) == list(range(10)) for order in whole)
    assert whole[0] != whole[1]
    parts = [epoch_order(10, epoch, seed=2, records_per_epoch=4) for epoch in range(5)]
    stream = [index for order in parts for index in order]
    assert stream == whole[0] + whole[1]  # 20 records: the first two passes, in their order
    assert epoch_order(10, 0, seed=2, records_per_epoch=25) == whole[0] + whole[1] + whole[2][:5]


def test_validation_subset_keeps_whole_molecules(dataset):
    molecules = read_dataset(dataset)
    config = TrainingConfig(data=str(dataset), split=(0.2, 0.8, 0.0))
    _, val, _ = split_records(molecules, config)
    chosen = validation_subset(molecules, val, 20, seed=0)
    assert 0 < len(chosen) < len(val)
    assert len(chosen) <= max(20, max(len(m) for m in molecules))
    for molecule in {r.molecule for r in chosen}:
        assert sum(r.molecule == molecule for r in chosen) == sum(r.molecule == molecule for r in val)
    assert validation_subset(molecules, val, None, seed=0) == val


def test_part_epochs_resume_exactly_and_validate_a_subset(dataset, tmp_path):
    settings = dict(records_per_epoch=12, validation_records=6, split_by="molecule", split=(0.5, 0.34, 0.16))
    straight = train(tiny_config(dataset, tmp_path / "straight", epochs=4, **settings))
    train(tiny_config(dataset, tmp_path / "resumed", epochs=1, **settings))
    resumed = train(tiny_config(dataset, tmp_path / "resumed", epochs=4, **settings))
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    report = (tmp_path / "straight" / "metrics.md").read_text()
    records = int(report.split("records train/validation/test ")[1].split("/")[1])
    molecules = read_dataset(dataset)
    _, val, _ = split_records(molecules, straight_config := tiny_config(dataset, tmp_path, **settings))
    assert records == len(validation_subset(molecules, val, 6, straight_config.seed)) < len(val)  # one molecule
    with pytest.raises(ValueError, match="records_per_epoch must be >= 1"):
        train(tiny_config(dataset, tmp_path / "x", records_per_epoch=0))


def test_annealing_set_on_resume_takes_the_rate_down_along_a_cosine(dataset, tmp_path):
    """A run of 2 epochs at the plateau's rate, resumed with epochs: 5 and anneal_epochs: 3 (allowed on resume):
    epochs 3-5 follow the cosine from the rate at epoch 2 down to min_lr, with no plateau step in between."""
    settings = dict(records_per_epoch=12, warmup_steps=1, batch_size=4, lr=2e-3, min_lr=1e-5)
    train(tiny_config(dataset, tmp_path / "run", epochs=2, **settings))
    result = train(tiny_config(dataset, tmp_path / "run", epochs=5, anneal_epochs=3, **settings))
    rates = [row["lr"] for row in result.history]
    assert rates[:2] == [2e-3, 2e-3]
    # 12 records in batches of 4: the last batch of the anneal's epoch k + 1 ends at (k + 1) / 3 of it.
    expected = [annealed_lr(2e-3, 1e-5, (k + 1) / 3) for k in range(3)]
    assert rates[2:] == pytest.approx(expected, rel=1e-12)
    assert rates[2] > rates[3] > rates[4] == pytest.approx(1e-5)
    # Extended after the anneal (or the anneal changed): it starts again from the current rate, no jump back up.
    longer = train(tiny_config(dataset, tmp_path / "run", epochs=7, anneal_epochs=3, **settings))
    assert [row["lr"] for row in longer.history[5:]] == pytest.approx([1e-5, 1e-5], rel=1e-9)
    assert annealed_lr(2e-3, 1e-5, 0.0) == 2e-3 and annealed_lr(2e-3, 1e-5, 1.5) == 1e-5
    with pytest.raises(ValueError, match="anneal_epochs must be between 1 and epochs"):
        train(tiny_config(dataset, tmp_path / "x", epochs=2, anneal_epochs=3))


def test_validation_loss_is_the_loss_of_the_whole_set(dataset, tmp_path):
    config = tiny_config(dataset, tmp_path / "loss", dipole_weight=2.0)
    result = train(replace(config, epochs=1))
    molecules = read_dataset(dataset)
    _, val, _ = split_records(molecules, config)
    batch = Batches(molecules, val, torch.float32).collate(val)  # one batch: the plain mean squared errors
    expected = float(loss_terms(result.model, batch, config)["loss"].detach())
    got = evaluate_errors(result.model, Batches(molecules, val, torch.float32), batch_size=5, config=config)["loss"]
    assert got == pytest.approx(expected, rel=1e-5)


def test_error_breakdown_matches_errors_computed_by_hand(dataset, tmp_path):
    from openmm_tensornet.training.error_breakdown import error_breakdown, markdown, parity_plot

    molecules = read_dataset(dataset)
    config = tiny_config(dataset, tmp_path / "run", epochs=1)
    model = train(config).model
    _, val, _ = split_records(molecules, config)
    result = error_breakdown(model, Batches(molecules, val, torch.float32), batch_size=7)
    expected_energy, expected_forces = [], {}
    for record in val:  # one configuration at a time, independent of the batching
        molecule = molecules[record.molecule]
        z = torch.as_tensor(molecule.z)
        pos = torch.as_tensor(molecule.positions[record.index], dtype=torch.float32)
        out = model(z, pos, torch.zeros_like(z), None, torch.tensor([molecule.charge]), compute_forces=True)
        expected_energy.append((float(out.energy[0].detach()) - molecule.energy[record.index], record.molecule,
                                len(z)))
        for element, error in zip(molecule.z, (out.forces.detach().numpy() - molecule.forces[record.index])):
            expected_forces.setdefault(int(element), []).extend(np.abs(error).tolist())
    assert result.by_element()["O"]["forces_mae_meV_per_A"] == pytest.approx(1000 * np.mean(expected_forces[8]),
                                                                              rel=1e-4)
    assert result.by_element()["H"]["atoms"] == len(expected_forces[1]) // 3
    errors = np.array([e for e, _, _ in expected_energy])
    which = np.array([m for _, m, _ in expected_energy])
    atoms = np.array([n for _, _, n in expected_energy])
    centred = np.concatenate([(errors[which == m] - errors[which == m].mean()) / atoms[which == m]
                              for m in np.unique(which)])
    assert result.index == [record.index for record in val] and result.molecule == [r.molecule for r in val]
    by_charge = result.table(lambda r: result.charge[r])
    assert sum(row["records"] for row in by_charge.values()) == len(val)
    overall = result.table(lambda r: "all")["all"]
    assert overall["conformational_energy_mae_meV_per_atom"] == pytest.approx(1000 * np.abs(centred).mean(), rel=1e-4)
    assert "| O |" in "\n".join(markdown(result.by_element(), "element", ["atoms", "forces_mae_meV_per_A"]))
    parity_plot(result, tmp_path / "parity.png")
    assert (tmp_path / "parity.png").stat().st_size > 10_000


def test_records_above_max_force_are_left_out_and_reported(dataset, tmp_path, capsys):
    molecules = read_dataset(dataset)
    largest = max(float(np.abs(m.forces).max()) for m in molecules)
    molecules[2].forces[5] = molecules[2].forces[5] * 0 + 10 * largest  # a clash or a failed label
    molecules[4].forces[0, 0, 0] = -10 * largest
    config = tiny_config(dataset, tmp_path / "run", epochs=1, max_force=2 * largest, progress=True)
    train(config, molecules=molecules)
    said = capsys.readouterr().err
    assert "left out 2 records with a force component above max_force" in said
    assert molecules[2].name in said and molecules[4].name in said
    assert "2 records left out" in (tmp_path / "run" / "metrics.md").read_text()
    kept, dropped = within_max_force(molecules, split_records(molecules, config)[0], 2 * largest)
    assert all(float(np.abs(molecules[r.molecule].forces[r.index]).max()) <= 2 * largest for r in kept)
    with pytest.raises(ValueError, match="max_force must be > 0"):
        train(tiny_config(dataset, tmp_path / "x", max_force=0.0))
