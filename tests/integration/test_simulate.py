"""From a PDB file to a running simulation: every systems/ example, restart, outputs, and bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm.app as app
import openmm.unit as unit
import pytest

from openmm_tensornet.app.simulate import SimulationError, build_simulation, prepare, restart_simulation, run

SYSTEMS = Path(__file__).resolve().parents[2] / "systems"
EXAMPLES = {
    "alanine-dipeptide-vacuum": dict(ml_atoms=22, pure_ml=True),
    "alanine-dipeptide-water": dict(ml_atoms=22, pure_ml=False),
    "paracetamol-water": dict(ml_atoms=20, pure_ml=False),
    "t4-lysozyme-l99a-p-xylene": dict(ml_atoms=18, pure_ml=False),
}


def test_every_system_has_an_input_and_its_provenance():
    for name in EXAMPLES:
        folder = SYSTEMS / name
        assert (folder / "input.pdb").exists()
        assert "Source:" in (folder / "README.md").read_text()


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_each_example_runs_and_restarts(name, tmp_path):
    expected = EXAMPLES[name]
    output = tmp_path / "md"
    simulation = build_simulation(SYSTEMS / name / "input.pdb", output, timestep_fs=1.0, seed=3)
    setup = simulation.setup
    assert len(setup.ml_atoms) == expected["ml_atoms"] and setup.pure_ml == expected["pure_ml"]
    summary = run(simulation, 20, output, report_interval=10, checkpoint_interval=10, progress=False)
    assert summary["steps"] == 20 and np.isfinite(summary["potential_energy"])
    for file in ("trajectory.dcd", "log.csv", "checkpoint.chk", "final.pdb", "state.xml", "summary.md",
                 "summary.png", "system.xml", "topology.pdb"):
        assert (output / file).exists(), file
    again = restart_simulation(output)
    assert again.currentStep == 20
    summary = run(again, 30, output, report_interval=10, checkpoint_interval=10, progress=False)
    assert summary["steps"] == 30 and summary["steps_this_run"] == 10
    assert len(np.genfromtxt(output / "log.csv", delimiter=",", skip_header=1)) == 3


def test_restart_continues_exactly(tmp_path):
    """20 steps, checkpoint; the same simulation continued to 40 steps == rebuilt from disk and continued.

    A float64 model: with float32 the CPU's threaded reductions make the forces reproducible only to ~1e-6, which
    molecular chaos then amplifies (the checkpointed state itself is restored bit for bit either way)."""
    import shutil

    from conftest import small_model

    from openmm_tensornet import TensorNetPotential

    source = SYSTEMS / "alanine-dipeptide-vacuum" / "input.pdb"
    simulation = build_simulation(source, tmp_path / "a", seed=5,
                                  potential=TensorNetPotential(small_model(9, cutoff_upper=5.0)))
    run(simulation, 20, tmp_path / "a", report_interval=20, checkpoint_interval=20, progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    at_checkpoint = simulation.context.getState(getPositions=True, getVelocities=True)
    run(simulation, 40, tmp_path / "a", report_interval=20, checkpoint_interval=20, progress=False)
    resumed = restart_simulation(tmp_path / "b")
    restored = resumed.context.getState(getPositions=True, getVelocities=True)
    assert np.array_equal(restored.getPositions(asNumpy=True)._value, at_checkpoint.getPositions(asNumpy=True)._value)
    assert np.array_equal(restored.getVelocities(asNumpy=True)._value,
                          at_checkpoint.getVelocities(asNumpy=True)._value)
    run(resumed, 40, tmp_path / "b", report_interval=20, checkpoint_interval=20, progress=False)
    a = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    b = resumed.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    assert np.abs(a - b).max() < 1e-9
    assert resumed.currentStep == simulation.currentStep == 40


def test_blow_up_reports_the_step_and_atoms_and_keeps_the_checkpoint(tmp_path):
    simulation = build_simulation(SYSTEMS / "alanine-dipeptide-vacuum" / "input.pdb", tmp_path, timestep_fs=1.0)
    run(simulation, 10, tmp_path, report_interval=10, checkpoint_interval=10, progress=False)
    simulation.integrator.setStepSize(0.05)  # 50 fs: explodes
    with pytest.raises(SimulationError, match=r"blew up by step \d+ .* largest forces .* last good state is in"):
        run(simulation, 2000, tmp_path, report_interval=10, checkpoint_interval=10, progress=False)
    assert restart_simulation(tmp_path).currentStep >= 10


def test_generated_ligand_parameters_warn(tmp_path):
    with pytest.warns(UserWarning, match="residue LIG has no force-field template"):
        setup = prepare(SYSTEMS / "paracetamol-water" / "input.pdb")
    assert any("generated MM nonbonded parameters" in note for note in setup.notes)
    import openmm

    nonbonded = next(f for f in setup.system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = [nonbonded.getParticleParameters(i)[0]._value for i in setup.ml_atoms]
    assert abs(sum(charges)) < 1e-6 and max(abs(q) for q in charges) > 0.1


def write_pdb(path, names_elements_xyz, residue="LIG"):
    topology = app.Topology()
    chain = topology.addChain()
    res = topology.addResidue(residue, chain)
    positions = []
    for name, element, xyz in names_elements_xyz:
        topology.addAtom(name, app.Element.getBySymbol(element), res)
        positions.append(xyz)
    with open(path, "w") as handle:
        app.PDBFile.writeFile(topology, np.array(positions, dtype=float) * 0.1 * unit.nanometer, handle)
    return path


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(SimulationError, match="does not exist"):
        prepare(tmp_path / "missing.pdb")
    with pytest.raises(SimulationError, match="matches no atom"):
        prepare(SYSTEMS / "alanine-dipeptide-water" / "input.pdb", ml="resname LIG")
    no_h = write_pdb(tmp_path / "noh.pdb", [("C1", "C", (0, 0, 0)), ("O1", "O", (1.2, 0, 0))])
    with pytest.raises(SimulationError, match="no hydrogen atoms; add them with --fix"):
        prepare(no_h)
    overlap = write_pdb(tmp_path / "overlap.pdb", [("C1", "C", (0, 0, 0)), ("H1", "H", (0.3, 0, 0)),
                                                  ("H2", "H", (0, 1.0, 0))])
    with pytest.raises(SimulationError, match=r"atoms 0 \(LIG1:C1\) and 1 \(LIG1:H1\) are 0.30 Å apart"):
        prepare(overlap)
    nan = write_pdb(tmp_path / "nan.pdb", [("C1", "C", (0, 0, 0)), ("H1", "H", (1.0, 0, 0)), ("H2", "H", (0, 1.0, 0))])
    nan.write_text(nan.read_text().replace("   1.000   0.000   0.000", "     nan   0.000   0.000"))
    with pytest.raises(SimulationError, match=r"atoms \[1\] have NaN or infinite coordinates"):
        prepare(nan)
    small = write_pdb(tmp_path / "small.pdb", [("C1", "C", (0, 0, 0)), ("H1", "H", (1.09, 0, 0)),
                                               ("H2", "H", (-0.36, 1.03, 0)), ("H3", "H", (-0.36, -0.51, 0.89)),
                                               ("H4", "H", (-0.36, -0.51, -0.89))])
    small.write_text("CRYST1    8.000    8.000    8.000  90.00  90.00  90.00 P 1           1\n" + small.read_text())
    with pytest.raises(SimulationError, match="smaller than twice the model's cutoff"):
        prepare(small)
    bromine = write_pdb(tmp_path / "br.pdb", [("C1", "C", (0, 0, 0)), ("BR", "Br", (1.9, 0, 0)),
                                              ("H1", "H", (-0.4, 1.0, 0)), ("H2", "H", (-0.4, -0.5, 0.9)),
                                              ("H3", "H", (-0.4, -0.5, -0.9))])
    with pytest.raises(ValueError, match=r"Br \(35\) are not covered by this model"):
        prepare(bromine)


def test_the_readme_command_runs_with_the_default_model(tmp_path):
    result = subprocess.run([sys.executable, "-m", "openmm_tensornet.app.cli", "simulate",
                             str(SYSTEMS / "alanine-dipeptide-vacuum" / "input.pdb"), "--steps", "20",
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "20 steps" in result.stdout and (tmp_path / "out" / "summary.md").exists()
    missing = subprocess.run([sys.executable, "-m", "openmm_tensornet.app.cli", "simulate", str(tmp_path / "no.pdb")],
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_an_amber_prmtop_of_the_whole_complex_with_xtc_output(tmp_path):
    from importlib.resources import files

    folder = Path(str(files("openmmtools"))) / "data" / "T4-lysozyme-L99A-implicit"
    setup = prepare(folder / "complex.prmtop", inpcrd=folder / "complex.crd")
    assert len(setup.ml_atoms) == 18 and not setup.pure_ml  # the ligand (TMP), found as the non-standard residue
    simulation = build_simulation(folder / "complex.prmtop", tmp_path, inpcrd=folder / "complex.crd")
    run(simulation, 10, tmp_path, report_interval=5, checkpoint_interval=10, progress=False, trajectory="xtc")
    assert (tmp_path / "trajectory.xtc").exists() and not (tmp_path / "trajectory.dcd").exists()
    with pytest.raises(SimulationError, match="needs its coordinates: pass --inpcrd"):
        prepare(folder / "complex.prmtop")


def test_fix_adds_missing_hydrogens_and_solvate_with_npt(tmp_path):
    stripped = tmp_path / "noh.pdb"
    lines = (SYSTEMS / "alanine-dipeptide-water" / "input.pdb").read_text().splitlines()
    solute = [line for line in lines if line.startswith(("ATOM", "HETATM")) and line[17:20] != "HOH"
              and line[76:78].strip() != "H"]
    stripped.write_text("\n".join(solute) + "\nEND\n")
    with pytest.raises(SimulationError, match="--fix"):
        prepare(stripped)
    with pytest.raises(SimulationError, match="smaller than twice the 1.0 nm MM cutoff"):
        prepare(stripped, fix=True, solvate=True, padding=0.6)
    simulation = build_simulation(stripped, tmp_path / "md", fix=True, solvate=True, padding=1.0,
                                  ionic_strength=0.0, pressure=1.0)
    setup = simulation.setup
    assert len(setup.ml_atoms) == 22  # hydrogens restored on the dipeptide, which is the ML solute
    assert setup.system.usesPeriodicBoundaryConditions() and setup.topology.getNumAtoms() > 500
    assert any(type(f).__name__ == "MonteCarloBarostat" for f in setup.system.getForces())
    summary = run(simulation, 10, tmp_path / "md", report_interval=5, checkpoint_interval=10, progress=False)
    assert np.isfinite(summary["potential_energy"])
