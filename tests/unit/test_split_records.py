"""split_records with a data place listed several times (to weight it): repeats train, held-out parts hold each
record once, and no copy of a held-out record trains."""
import json
from collections import Counter

import numpy as np
import pytest

from openmm_tensornet.io.data import Molecule, read_dataset, write_molecule
from openmm_tensornet.training.trainer import TrainingConfig, split_records

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
    return tmp_path


def _keys(molecules, part):
    """(source, record index) of each record of a part: what identifies a record across repeated reads."""
    return [(molecules[r.molecule].source, r.index) for r in part]


@pytest.mark.parametrize("how", ["held_out", "molecule", "record"])
def test_a_repeated_place_weights_training_only(places, how):
    once = [str(places / "main"), str(places / "extra")]
    thrice = once + [str(places / "extra")] * 2
    settings = dict(split=(0.5, 0.25, 0.25), seed=1)
    if how == "held_out":
        (places / "held.json").write_text(json.dumps({"validation": ["water", "propanol"], "test": ["ethanol"]}))
        settings.update(held_out=str(places / "held.json"), split_by="molecule")
    else:
        settings.update(split_by=how)
    plain, weighted = (read_dataset(data) for data in (once, thrice))
    parts_once = split_records(plain, TrainingConfig(data=once, **settings))
    parts = split_records(weighted, TrainingConfig(data=thrice, **settings))
    # validation and test: the same records as without the repeats, each once
    for k in (1, 2):
        assert sorted(_keys(weighted, parts[k])) == sorted(_keys(plain, parts_once[k]))
        assert max(Counter(_keys(weighted, parts[k])).values()) == 1
    # training: the records it had without the repeats, 'extra''s three times, and none of them is held out
    counts = Counter(_keys(weighted, parts[0]))
    assert set(counts) == set(_keys(plain, parts_once[0]))
    assert {key: n for key, n in counts.items() if n != 1} == {
        key: 3 for key in counts if key[0].startswith(str(places / "extra"))}
    held = set(_keys(weighted, parts[1])) | set(_keys(weighted, parts[2]))
    assert not held & set(counts)
    assert len(parts[0]) + len(parts[1]) + len(parts[2]) < sum(len(m) for m in weighted)
    if how == "held_out":  # the names decide; 'extra' has water and ethanol, so its repeats add held-out molecules
        names = [{weighted[r.molecule].name for r in part} for part in parts]
        assert names[1:] == [{"water", "propanol"}, {"ethanol"}]
        assert Counter(name for name in (weighted[r.molecule].name for r in parts[1])) == {"water": 5 + 4,
                                                                                           "propanol": 5}


def test_without_repeats_every_record_lands_in_one_part(places):
    """Two places holding the same molecule names (their own records) are not repeats: nothing is dropped."""
    data = [str(places / "main"), str(places / "extra")]
    molecules = read_dataset(data)
    for how in ("molecule", "record"):
        parts = split_records(molecules, TrainingConfig(data=data, split_by=how, split=(0.6, 0.2, 0.2), seed=4))
        assert sum(len(p) for p in parts) == sum(len(m) for m in molecules)
        assert len({(r.molecule, r.index) for p in parts for r in p}) == sum(len(m) for m in molecules)
