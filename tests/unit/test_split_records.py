"""split_records with a data place listed several times (to weight it): repeats train, held-out parts hold each
record once, no copy of a held-out record trains, and the training records keep the data's order."""
import json
import os
from collections import Counter

import numpy as np
import pytest

from openmm_tensornet.io.data import Molecule, read_dataset, write_molecule
from openmm_tensornet.training.trainer import TrainingConfig, split_records, train

NAMES = ["water", "methanol", "ethanol", "propanol", "butanol", "acetate", "formate", "ammonia"]


@pytest.fixture()
def places(tmp_path):
    """Two data places of shards: 'main' with the NAMES, 'extra' with 3 of them again (its own records)."""
    rng = np.random.default_rng(7)
    for place, names, records in (("main", NAMES, 5), ("extra", NAMES[:3], 4)):
        (tmp_path / place).mkdir()
        for name in names:
            atoms = 3 + len(name) % 3
            molecule = Molecule(name=name, z=np.full(atoms, 6), positions=rng.normal(size=(records, atoms, 3)),
                                energy=rng.normal(size=records), forces=rng.normal(size=(records, atoms, 3)))
            write_molecule(molecule, tmp_path / place / f"{name}.npz")
    (tmp_path / "held.json").write_text(json.dumps({"validation": ["water", "propanol"], "test": ["ethanol"]}))
    return tmp_path


def _settings(places, how):
    if how == "held_out":
        return dict(held_out=str(places / "held.json"), split_by="molecule", split=(0.5, 0.25, 0.25), seed=1)
    return dict(split_by=how, split=(0.5, 0.25, 0.25), seed=1)


def _keys(molecules, part):
    """(file, record index) of each record of a part: what identifies a record across repeated reads."""
    return [(os.path.realpath(molecules[r.molecule].source), r.index) for r in part]


def _in_data_order(molecules, names):
    """(molecule, record) of every record of these molecule names, in the data's order."""
    return [(k, r) for k, m in enumerate(molecules) if m.name in names for r in range(len(m))]


@pytest.mark.parametrize("how", ["held_out", "molecule", "record"])
def test_a_repeated_place_weights_training_only(places, how):
    once = [str(places / "extra"), str(places / "main")]
    # a repeat before another place (so training order is tested) and one spelled another way
    thrice = [once[0], once[0], once[1], str(places / "extra" / ".." / "extra")]
    plain, weighted = (read_dataset(data) for data in (once, thrice))
    parts_once = split_records(plain, TrainingConfig(data=once, **_settings(places, how)))
    parts = split_records(weighted, TrainingConfig(data=thrice, **_settings(places, how)))
    # validation and test: the same records as without the repeats, each once
    for k in (1, 2):
        assert sorted(_keys(weighted, parts[k])) == sorted(_keys(plain, parts_once[k]))
        assert max(Counter(_keys(weighted, parts[k])).values()) == 1
    # training: the records it had without the repeats, 'extra''s three times, and none of them is held out
    counts = Counter(_keys(weighted, parts[0]))
    assert set(counts) == set(_keys(plain, parts_once[0]))
    assert {key: n for key, n in counts.items() if n != 1} == {
        key: 3 for key in counts if key[0].startswith(os.path.realpath(places / "extra"))}
    held = set(_keys(weighted, parts[1])) | set(_keys(weighted, parts[2]))
    assert not held & set(counts)
    assert len(parts[0]) + len(parts[1]) + len(parts[2]) < sum(len(m) for m in weighted)
    if how != "record":  # whole molecules: training is every record of its names, repeats included, in data order
        trained = {weighted[r.molecule].name for r in parts[0]}
        assert [(r.molecule, r.index) for r in parts[0]] == _in_data_order(weighted, trained)
        assert [(r.molecule, r.index) for r in parts_once[0]] == _in_data_order(plain, trained)
    if how == "held_out":  # the names decide; 'extra' has water and ethanol, so its first read adds held-out records
        names = [{weighted[r.molecule].name for r in part} for part in parts]
        assert names[1:] == [{"water", "propanol"}, {"ethanol"}]
        assert Counter(weighted[r.molecule].name for r in parts[1]) == {"water": 5 + 4, "propanol": 5}


def test_the_same_molecules_passed_twice_in_memory_are_repeats(places):
    """Molecules given to train() directly: the same object twice is a repeat, as a place listed twice is."""
    molecules = read_dataset(places / "main")
    config = TrainingConfig(data="unused", split_by="record", split=(0.5, 0.25, 0.25), seed=1)
    parts = split_records(molecules + molecules, config)
    held = {(r.molecule % len(molecules), r.index) for part in parts[1:] for r in part}
    trained = [(r.molecule % len(molecules), r.index) for r in parts[0]]
    assert len(held) == sum(len(p) for p in parts[1:]) and not held & set(trained)
    assert sorted(Counter(trained).values()) == [2] * (len(trained) // 2)
    with pytest.raises(ValueError, match="no molecule outside it"):  # a held-out name's repeat cannot train
        train(TrainingConfig(data="unused", output=str(places / "run"), held_out=str(places / "held.json"),
                             split_by="molecule"), molecules=[m for m in molecules if m.name == "water"] * 2)


def test_without_repeats_every_record_lands_in_one_part(places):
    """Two places holding the same molecule names (their own records) are not repeats: nothing is dropped, and whole
    molecules train in the data's order."""
    data = [str(places / "main"), str(places / "extra")]
    molecules = read_dataset(data)
    for how in ("held_out", "molecule", "record"):
        parts = split_records(molecules, TrainingConfig(data=data, **_settings(places, how)))
        assert sum(len(p) for p in parts) == sum(len(m) for m in molecules)
        assert len({(r.molecule, r.index) for p in parts for r in p}) == sum(len(m) for m in molecules)
        if how != "record":
            trained = {molecules[r.molecule].name for r in parts[0]}
            assert [(r.molecule, r.index) for r in parts[0]] == _in_data_order(molecules, trained)
