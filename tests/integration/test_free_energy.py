"""MM -> ML/MM free energies on openmmtools: MBAR, TI and NEQ agree; lambda = 0 is MM through openmmtools' caches;
TorchForces survive openmmtools' copies; the storage reopens and resumes; bad input is refused; MPI runs.

System: alanine dipeptide in vacuum (Amber14, no cutoff, no constraints), all 22 atoms ML, the shipped model, CPU."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from openmm_tensornet import TensorNetPotential
from openmm_tensornet.app.free_energy import LegResult, cycle_report, interpolation_free_energy
from openmm_tensornet.app.free_energy_analysis import Estimate, analyze_storage, kT_kj, work_estimates
from openmm_tensornet.app.free_energy_cli import add_parser, sampling_options

HERE = Path(__file__).resolve().parent
PDB = HERE.parents[1] / "systems" / "alanine-dipeptide-vacuum" / "input.pdb"
KJ = unit.kilojoule_per_mole
# sigma of the ML-MM energy gap here is about 11 kJ/mol (4.4 kT); lambda steps of 0.2 keep neighbour overlap > 0.1.
LAMBDAS = list(np.linspace(0.0, 1.0, 6))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """22 atoms: one torch thread is ~3x faster than two on this size and leaves a core to OpenMM."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dipeptide():
    pdb = app.PDBFile(str(PDB))
    mm = app.ForceField("amber14-all.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    mixed = TensorNetPotential().createMixedSystem(pdb.topology, mm, list(range(22)), interpolate=True)
    return mm, mixed, np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


@pytest.fixture(scope="module")
def leg(dipeptide, tmp_path_factory):
    _, mixed, positions = dipeptide
    return interpolation_free_energy(mixed, positions, output=tmp_path_factory.mktemp("leg"), name="vacuum",
                                     lambdas=LAMBDAS, iterations=40, steps_per_iteration=50,
                                     equilibration_iterations=5, neq_switches=10, neq_steps=300, platform="CPU",
                                     seed=11)


def energy(context) -> float:
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)


@pytest.mark.slow
def test_mbar_ti_neq_agree(leg):
    print({m: (round(e.value, 2), round(e.sigma, 2)) for m, e in leg.estimates.items()})
    off_diagonal = np.diag(leg.overlap, 1)
    assert off_diagonal.min() > 0.03, f"neighbouring windows barely overlap: {off_diagonal}"
    for method in ("mbar", "ti", "neq", "jarzynski"):
        assert np.isfinite(leg[method].value) and 0 < leg[method].sigma < 10, (method, leg[method])
    # 4 combined sigma, plus 1 kJ/mol (0.4 kT) for what the error bars miss at this short sampling: TI's trapezoid
    # bias on a nearly linear integrand, and sigmas that are themselves uncertain by tens of per cent with 40
    # correlated iterations and 10 switches of 0.3 ps. With 3 sigma, one CI run failed by 0.01 kJ/mol
    # (MBAR vs NEQ 7.03 > 7.02); the CPU platform's threads make each run a new sample, seed or not.
    # Switches of 0.1 ps left NEQ (BAR) ~7 kJ/mol below MBAR and TI in every failing run (dissipation bias, not
    # noise); with 0.3 ps the three agreed within 0.5 kJ/mol.
    for a, b in (("mbar", "ti"), ("mbar", "neq"), ("ti", "neq")):
        difference = abs(leg[a].value - leg[b].value)
        bound = 4 * np.hypot(leg[a].sigma, leg[b].sigma) + 1.0
        assert difference < bound, f"{a} {leg[a]} vs {b} {leg[b]}: |diff| {difference:.2f} > {bound:.2f} kJ/mol"
    # The free energy is that of the gap around the sampled structures: between the gap's end-state averages.
    low, high = sorted((leg.dEdl_mean[0], leg.dEdl_mean[-1]))
    assert low - 5 < leg["mbar"].value < high + 5


def test_bar_error_bar_covers_the_truth():
    """Crooks-consistent Gaussian work (dissipation sigma^2 / 2kT each way, sigma 8 kJ/mol) with a known Delta F and
    only 5 switches a direction: BAR's value is pymbar's; its asymptotic error bar is too small here (2 sigma covers
    the truth in 34 of 40 trials), and the bootstrap that the reported sigma takes when larger restores the coverage."""
    from pymbar import other_estimators

    kT, truth, rng = kT_kj(300.0), -86400.0, np.random.default_rng(3)
    trials, reported, asymptotic_only, raised = 40, 0, 0, 0
    for _ in range(trials):
        forward = rng.normal(truth + 8.0**2 / (2 * kT), 8.0, 5)
        reverse = rng.normal(-truth + 8.0**2 / (2 * kT), 8.0, 5)
        bar, _ = work_estimates(forward, reverse, 300.0)
        asymptotic = other_estimators.bar((forward - truth) / kT, (reverse + truth) / kT)
        assert bar.value == pytest.approx(float(asymptotic["Delta_f"]) * kT + truth, abs=1e-6)
        sigma = float(asymptotic["dDelta_f"]) * kT
        reported += abs(bar.value - truth) < 2 * bar.sigma
        asymptotic_only += abs(bar.value - truth) < 2 * sigma
        raised += bar.sigma > 1.05 * sigma
    assert asymptotic_only <= 35 and reported >= 36 and raised >= 10, (asymptotic_only, reported, raised)


def test_reports_written(leg):
    text = (leg.output / "free_energy.md").read_text()
    for needle in ("MBAR", "TI", "NEQ (BAR)", "kJ/mol", "kcal/mol", "overlap"):
        assert needle in text
    assert f"{leg['mbar'].value_kcal:.2f}" in text
    for name in ("dEdl.png", "work.png", "overlap.png", "vacuum.nc"):
        assert (leg.output / name).stat().st_size > 0
    assert len(leg.forward_work) == len(leg.reverse_work) == 10
    assert leg.dEdl_mean.shape == leg.dEdl_sem.shape == (6,) and np.all(leg.dEdl_sem > 0)


def test_storage_reopens_with_the_same_result(leg):
    analysis = analyze_storage(leg.storage)  # a fresh MultiStateReporter (read mode) + analyzer
    assert analysis.iterations == leg.iterations == 40
    np.testing.assert_allclose(analysis.lambdas, LAMBDAS)
    assert analysis.mbar.value == pytest.approx(leg["mbar"].value, abs=1e-6)
    assert analysis.mbar.sigma == pytest.approx(leg["mbar"].sigma, abs=1e-6)
    assert analysis.ti.value == pytest.approx(leg["ti"].value, abs=1e-6)


def test_lambda_zero_is_mm_through_openmmtools(dipeptide):
    from openmmtools import cache

    from openmm_tensornet.app.free_energy_sampling import interpolation_states

    mm, mixed, positions = dipeptide
    platform = openmm.Platform.getPlatformByName("CPU")
    plain = openmm.Context(mm, openmm.VerletIntegrator(0.001), platform)
    plain.setPositions(positions)
    state_0, state_1 = interpolation_states(mixed, [0.0, 1.0], 300.0)
    context, _ = cache.ContextCache(platform=platform).get_context(state_0)
    context.setPositions(positions)
    assert energy(context) == pytest.approx(energy(plain), abs=1e-6)
    # The same state's own System (TorchForce default rebuilt to 0) in a plain Context agrees too.
    own = openmm.Context(state_0.system, openmm.VerletIntegrator(0.001), platform)
    own.setPositions(positions)
    assert energy(own) == pytest.approx(energy(plain), abs=1e-6)
    context_1, _ = cache.ContextCache(platform=platform).get_context(state_1)
    context_1.setPositions(positions)
    assert abs(energy(context_1) - energy(plain)) > 1000.0  # lambda = 1 really is the ML/MM system


def test_torch_force_survives_openmmtools_copies(dipeptide):
    from openmmtools import cache, states

    from openmm_tensornet.app.free_energy_sampling import interpolation_states

    _, mixed, positions = dipeptide
    platform = openmm.Platform.getPlatformByName("CPU")
    (state,) = interpolation_states(mixed, [0.6], 300.0)
    copies = [copy.deepcopy(state), states.CompoundThermodynamicState.__new__(states.CompoundThermodynamicState)]
    copies[1].__setstate__(state.__getstate__())  # what the storage round trip does
    energies = []
    for candidate in [state] + copies:
        context, _ = cache.ContextCache(platform=platform).get_context(candidate)
        context.setPositions(positions)
        assert context.getParameter("lambda_interpolate") == pytest.approx(0.6)
        energies.append(energy(context))
    assert energies[1] == energies[0] and energies[2] == energies[0]
    reference = openmm.Context(mixed, openmm.VerletIntegrator(0.001), platform)
    reference.setPositions(positions)
    reference.setParameter("lambda_interpolate", 0.6)
    assert energies[0] == pytest.approx(energy(reference), abs=1e-6)


def test_interrupted_run_resumes(dipeptide, tmp_path):
    _, mixed, positions = dipeptide
    options = dict(output=tmp_path, name="resume", lambdas=[0.0, 0.5, 1.0], steps_per_iteration=10,
                   equilibration_iterations=1, methods=("mbar", "ti"), platform="CPU", seed=5, write_report=False)
    first = interpolation_free_energy(mixed, positions, iterations=3, **options)
    assert first.iterations == 3
    before = _stored_energies(first.storage)
    second = interpolation_free_energy(mixed, positions, iterations=6, **options)
    assert second.iterations == 6
    after = _stored_energies(second.storage)
    np.testing.assert_array_equal(after[:4], before)  # iterations 0-3 kept, not sampled again
    assert np.isfinite(second["mbar"].value) and np.isfinite(second["ti"].value)
    with pytest.raises(ValueError, match="resume=False"):
        interpolation_free_energy(mixed, positions, iterations=6, **{**options, "lambdas": [0.0, 1.0]})


def test_a_seeded_run_repeats_itself(dipeptide, tmp_path):
    """The seed covers the replica-exchange noise and mixing too: on a deterministic platform (Reference; the CPU
    platform's threads sum forces in a varying order) a second run repeats the stored energies exactly."""
    _, mixed, positions = dipeptide
    options = dict(name="seeded", lambdas=[0.0, 0.5, 1.0], steps_per_iteration=10, iterations=3,
                   equilibration_iterations=1, methods=("mbar",), platform="Reference", seed=5, write_report=False)
    first = interpolation_free_energy(mixed, positions, output=tmp_path / "first", **options)
    again = interpolation_free_energy(mixed, positions, output=tmp_path / "again", **options)
    np.testing.assert_array_equal(_stored_energies(again.storage), _stored_energies(first.storage))
    other = interpolation_free_energy(mixed, positions, output=tmp_path / "other", **{**options, "seed": 6})
    assert not np.array_equal(_stored_energies(other.storage)[1:], _stored_energies(first.storage)[1:])


def _stored_energies(storage):
    from openmmtools.multistate import MultiStateReporter

    reporter = MultiStateReporter(str(storage), open_mode="r")
    try:
        return reporter.read_energies()[0]
    finally:
        reporter.close()


def test_bad_input(dipeptide, tmp_path):
    mm, mixed, positions = dipeptide
    with pytest.raises(ValueError, match=r"createMixedSystem\(.*interpolate=True\)"):
        interpolation_free_energy(mm, positions, output=tmp_path)
    for lambdas, message in (([0.1, 0.5, 1.0], "start at 0"), ([0.0, 0.5, 0.9], "end at 1"),
                             ([0.0, 0.6, 0.4, 1.0], "strictly increasing"), ([0.0], "at least two")):
        with pytest.raises(ValueError, match=message):
            interpolation_free_energy(mixed, positions, output=tmp_path, lambdas=lambdas)
    with pytest.raises(ValueError, match="'mbar'"):
        interpolation_free_energy(mixed, positions, output=tmp_path, methods=("fep",))
    with pytest.raises(ValueError, match="iterations must be positive"):
        interpolation_free_energy(mixed, positions, output=tmp_path, iterations=0)
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_cycle_report(tmp_path):
    def fake(name, mbar, ti):
        return LegResult(name, 300.0, np.array([0.0, 1.0]), {"mbar": Estimate(mbar, 0.3), "ti": Estimate(ti, 0.4)},
                         np.zeros(2), np.zeros(2), np.eye(2), np.zeros(0), np.zeros(0), 1, 0, 1, Path("x"), tmp_path)

    numbers = cycle_report({"solvent": fake("solvent", -10.0, -9.0), "vacuum": fake("vacuum", -4.0, -4.5)}, tmp_path,
                           difference=("solvent", "vacuum"))
    assert numbers["solvent - vacuum"]["mbar"].value == pytest.approx(-6.0)
    assert numbers["solvent - vacuum"]["ti"].sigma == pytest.approx(np.hypot(0.4, 0.4))
    text = (tmp_path / "cycle.md").read_text()
    assert "solvent - vacuum" in text and "-6.00 ± 0.42" in text and "kcal/mol" in text
    with pytest.raises(ValueError, match="two of the legs"):
        cycle_report({"solvent": fake("solvent", 0, 0)}, tmp_path, difference=("solvent", "complex"))


def test_cli_options(tmp_path):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["free-energy", "--lambdas", "5", "--iterations", "20", "--methods", "mbar,neq",
                              "--output", str(tmp_path), "--no-resume", "--seed", "4"])
    options = sampling_options(args)
    np.testing.assert_allclose(options["lambdas"], [0, 0.25, 0.5, 0.75, 1])
    assert options["methods"] == ("mbar", "neq") and options["resume"] is False and options["iterations"] == 20
    assert parser.parse_args(["free-energy", "--lambdas", "0,0.3,1"]).lambdas == [0.0, 0.3, 1.0]
    for bad in (["--lambdas", "0.2,1"], ["--methods", "fep"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["free-energy", *bad])


@pytest.mark.slow
def test_mpi_two_ranks(tmp_path):
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        pytest.skip("mpirun/mpiexec not found (install mpich or openmpi to test the MPI path)")
    pytest.importorskip("mpi4py", reason="mpi4py is needed for openmmtools' MPI path")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENMM_CPU_THREADS": "1"}
    # The timeout catches a hang, not slowness: on 2 cores shared with other jobs the two ranks took 372 s.
    run = subprocess.run([mpirun, "-n", "2", sys.executable, str(HERE.parent / "mpi_free_energy_driver.py"), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert (tmp_path / "rank1_done").exists()  # both ranks ran; only rank 0 wrote the result
    assert result["iterations"] == 4
    for method in ("mbar", "ti", "neq"):
        assert np.isfinite(result["estimates"][method][0])
    assert (tmp_path / "free_energy.md").exists()


def test_free_energy_command_runs_a_ligand_cycle(tmp_path, monkeypatch):
    """`mpirun -n 2 openmm-tensornet free-energy --ligand` (the README's MPI form; without MPI, one process) end to
    end on openmmtools' T4 ligand (MOL2): vacuum and solvent legs (GAFF2/AM1-BCC at lambda = 0), the storage
    reopening to the printed values, the cycle's difference."""
    monkeypatch.setenv("OPENMM_TENSORNET_LIGAND_CACHE", str(tmp_path / "cache"))
    ligand = HERE.parents[1] / "systems" / "t4-lysozyme-l99a-mol2" / "ligand.mol2"
    output = tmp_path / "fe"
    mpirun = shutil.which("mpirun")
    launcher = [mpirun, "-n", "2"] if mpirun and importlib.util.find_spec("mpi4py") else []
    result = subprocess.run(
        launcher + [sys.executable, "-m", "openmm_tensornet.app.cli", "free-energy", "--ligand", str(ligand), "--lambdas",
                    "3",
         "--iterations", "3", "--steps-per-iteration", "10", "--equilibration-iterations", "1", "--neq-switches", "2",
         "--neq-steps", "10", "--output", str(output), "--platform", "CPU", "--seed", "2", "--padding", "1.0"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENMM_CPU_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("solvent - vacuum: mbar") == 1  # printed by rank 0 only
    for leg in ("vacuum", "solvent"):
        assert (output / leg / "free_energy.md").exists() and (output / leg / f"{leg}.nc").exists()
    cycle = (output / "cycle.md").read_text()
    assert "ΔΔG = solvent - vacuum" in cycle
    printed = {line.split(":")[0]: float(line.split("mbar ")[1].split()[0]) for line in result.stdout.splitlines()
               if ": mbar " in line}
    for leg in ("vacuum", "solvent"):  # the storage reopens to the printed MBAR value
        assert analyze_storage(output / leg / f"{leg}.nc").mbar.value == pytest.approx(printed[leg], abs=0.01)
    assert printed["solvent - vacuum"] == pytest.approx(printed["solvent"] - printed["vacuum"], abs=0.02)
    bad = subprocess.run([sys.executable, "-m", "openmm_tensornet.app.cli", "free-energy", "--ligand", str(ligand),
                          "--legs", "complex", "--output", str(tmp_path / "x")], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "complex leg needs the receptor" in bad.stderr


def test_complex_leg_runs_with_the_receptor(tmp_path, monkeypatch):
    """The complex leg: openmmtools' T4 L99A receptor PDB with its MOL2 ligand (here without solvent, few steps);
    lambda = 0 of the stored states is the Amber14 + GAFF2 system, the estimates are finite."""
    from openmm_tensornet import ligand_legs

    monkeypatch.setenv("OPENMM_TENSORNET_LIGAND_CACHE", str(tmp_path / "cache"))
    folder = HERE.parents[1] / "systems" / "t4-lysozyme-l99a-mol2"
    result = ligand_legs(folder / "ligand.mol2", folder / "receptor.pdb", ["complex"], output=tmp_path / "fe",
                         complex_solvent=False, lambdas=[0.0, 0.5, 1.0], iterations=2, steps_per_iteration=5,
                         equilibration_iterations=0, neq_switches=1, neq_steps=5, platform="CPU", seed=4)
    leg = result["legs"]["complex"]
    assert set(leg.estimates) == {"mbar", "ti", "neq", "jarzynski"}
    assert all(np.isfinite(e.value) for e in leg.estimates.values())
    assert list(result["cycle"]) == ["complex"]
    with pytest.raises(ValueError, match="complex leg needs the receptor"):
        ligand_legs(folder / "ligand.mol2", None, ["complex"], output=tmp_path / "x")
    with pytest.raises(ValueError, match="leg='gas' is not supported"):
        ligand_legs(folder / "ligand.mol2", None, ["gas"], output=tmp_path / "x")
