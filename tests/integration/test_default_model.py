"""The shipped default model: loads with no download, refuses elements it does not know, agrees with GFN2-xTB on a
molecule it never saw, and runs stable MD inside OpenMM."""

from __future__ import annotations

import hashlib

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

import openmm_tensornet.io.checkpoint as checkpoint
from openmm_tensornet import TensorNetPotential, load_default_model

COVERED = [1, 6, 7, 8, 9, 16, 17]


def test_the_default_model_ships_and_covers_its_elements():
    model = load_default_model()
    assert model.hparams["elements"] == COVERED
    assert checkpoint.DEFAULT_MODEL.stat().st_size < 5_000_000
    # The metrics shipped next to the model describe this very file, and report held-out accuracy.
    metrics = (checkpoint.DEFAULT_MODEL.parent / "default-metrics.md").read_text()
    shipped = checkpoint.DEFAULT_MODEL.read_bytes()
    size, digest = round(len(shipped) / 1000), hashlib.sha256(shipped).hexdigest()[:12]
    assert f"default.pt` ({size} kB, sha256 {digest})" in metrics
    assert "## Held-out accuracy" in metrics
    potential = TensorNetPotential()
    topology = app.Topology()
    residue = topology.addResidue("BR", topology.addChain())
    topology.addAtom("C", app.element.carbon, residue)
    topology.addAtom("Br", app.element.bromine, residue)
    with pytest.raises(ValueError, match=r"elements Br \(35\) are not covered by this model, which was trained on "
                                         r"H \(1\), C \(6\), N \(7\), O \(8\), F \(9\), S \(16\), Cl \(17\)"):
        potential.createSystem(topology)


def test_a_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", tmp_path / "gone.pt")
    with pytest.raises(FileNotFoundError, match="default model .* is missing from this installation"):
        TensorNetPotential()


def test_agrees_with_gfn2_xtb_on_an_unseen_molecule(tmp_path):
    """N-benzylacetamide is not in the training set: forces correlate with GFN2-xTB (a random model's do not)."""
    pytest.importorskip("tblite")
    from openmm_tensornet.training.datagen import load_structures, sample_and_label

    (tmp_path / "m.smi").write_text("CC(=O)NCc1ccccc1 benzylacetamide\n")
    labelled = sample_and_label(load_structures(tmp_path / "m.smi")[0], frames=4, stride=10, perturbations=2,
                                temperature=300.0, seed=5)
    model = load_default_model()
    z = torch.as_tensor(labelled.z)
    predicted, reference = [], []
    energies = []
    for k in range(len(labelled)):
        pos = torch.as_tensor(labelled.positions[k], dtype=torch.float32)
        out = model(z, pos, compute_forces=True)
        predicted.append(out.forces.detach().numpy().ravel())
        reference.append(labelled.forces[k].ravel())
        energies.append(float(out.energy.detach()))
    predicted, reference = np.concatenate(predicted), np.concatenate(reference)
    correlation = np.corrcoef(predicted, reference)[0, 1]
    mae = np.abs(predicted - reference).mean()
    assert correlation > 0.9, correlation
    assert mae < 0.5, mae  # eV/Å
    relative = np.array(energies) - np.mean(energies)
    expected = labelled.energy - labelled.energy.mean()
    assert np.abs(relative - expected).mean() < 0.1 * len(labelled.z) ** 0.5  # conformational energies, eV


def test_pure_ml_md_of_alanine_dipeptide_is_stable():
    from openmmtools import testsystems

    test = testsystems.AlanineDipeptideVacuum()
    system = TensorNetPotential().createSystem(test.topology)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(test.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 100)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2)
    bonds = [(b.atom1.index, b.atom2.index) for b in test.topology.bonds()]

    def lengths():
        x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        assert np.isfinite(x).all()
        return np.array([np.linalg.norm(x[i] - x[j]) for i, j in bonds])

    start = lengths()
    for _ in range(4):
        integrator.step(500)
        assert np.abs(lengths() - start).max() < 0.4
