"""From a PDB file to a running ML/MM simulation: ``build_simulation`` + ``run``, and ``openmm-tensornet simulate``.

The ML region (TensorNet) is an mdtraj selection, or by default: the residues the MM force field cannot template
(the ligand); or, when everything is templated, the solute (everything but water and ions) if the system has water,
else the whole system (pure ML). MM: OpenMM's bundled Amber14 + TIP3P-FB by default. A ligand without MM
parameters gets generated nonbonded parameters for its ML/MM interactions (see
:mod:`openmm_tensornet.app.ligand_parameters`), with a warning.

Outputs (``output`` directory): ``trajectory.dcd`` (or ``.xtc``), ``log.csv`` (step, time, energies, temperature, speed),
``checkpoint.chk`` (written only after a successful, finite stretch), ``system.xml`` and ``topology.pdb`` (what a
restart rebuilds from), ``final.pdb`` and ``state.xml``, ``summary.md`` and ``summary.png`` (potential energy,
temperature, ML-region RMSD over time).
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from ..openmm.platforms import choose_platform

WATER_AND_IONS = {"HOH", "WAT", "SOL", "TIP3", "NA", "CL", "K", "MG", "CA", "ZN", "Na+", "Cl-", "K+"}
DEFAULT_FORCEFIELD = ("amber14-all.xml", "amber14/tip3pfb.xml")
LIGAND_CHARGES = ("am1bcc", "xtb")


class SimulationError(RuntimeError):
    """A simulation that cannot be set up or that failed; the message says what and how to fix it."""


@dataclass
class Setup:
    """What :func:`prepare` built."""

    topology: app.Topology
    positions: np.ndarray  # nm
    system: openmm.System
    ml_atoms: List[int]
    ml_charge: int
    pure_ml: bool
    notes: List[str] = field(default_factory=list)


def _load_structure(path: Path, fix: bool):
    if not path.exists():
        raise SimulationError(f"input file {path} does not exist.")
    if fix:
        from pdbfixer import PDBFixer

        fixer = PDBFixer(filename=str(path))
        fixer.findMissingResidues()
        fixer.missingResidues = {}
        fixer.findNonstandardResidues()
        fixer.findMissingAtoms()
        fixer.addMissingAtoms()
        fixer.addMissingHydrogens(7.0)
        return fixer.topology, np.asarray(fixer.positions.value_in_unit(unit.nanometer))
    try:
        pdb = app.PDBFile(str(path))
    except Exception as error:  # noqa: BLE001
        raise SimulationError(f"{path} cannot be read as a PDB file: {error}") from None
    return pdb.topology, np.asarray(pdb.positions.value_in_unit(unit.nanometer))


def _check_structure(topology: app.Topology, positions: np.ndarray, path: Path) -> None:
    atoms = list(topology.atoms())
    if len(atoms) == 0:
        raise SimulationError(f"{path} holds no atoms.")
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        raise SimulationError(f"{path}: atoms {bad[:10].tolist()} have NaN or infinite coordinates.")
    if not any(a.element is not None and a.element.symbol == "H" for a in atoms):
        raise SimulationError(f"{path} has no hydrogen atoms; add them with --fix (pdbfixer) or your preparation "
                              "tool.")
    from scipy.spatial import cKDTree

    pairs = cKDTree(positions).query_pairs(0.05)
    if pairs:
        i, j = sorted(pairs)[0]
        raise SimulationError(f"{path}: atoms {i} ({_label(atoms[i])}) and {j} ({_label(atoms[j])}) are "
                              f"{np.linalg.norm(positions[i] - positions[j]) * 10:.2f} Å apart (< 0.5 Å): "
                              f"overlapping atoms; fix the structure.")


def _label(atom) -> str:
    return f"{atom.residue.name}{atom.residue.id}:{atom.name}"


def prepare(input_path, ml: Optional[str] = None, forcefield: Sequence[str] = DEFAULT_FORCEFIELD,
            ligand_forcefield: Optional[Sequence[str]] = None, fix: bool = False, solvate: bool = False,
            padding: float = 1.0, ionic_strength: float = 0.15, ml_charge: Optional[int] = None,
            potential=None, inpcrd=None, ligand=None, ligand_index: Optional[int] = None,
            ligand_charges: str = "am1bcc", interpolate: bool = False) -> Setup:
    """Read, check, (fix, solvate,) parameterise, and split a structure into ML and MM parts.

    ``input_path`` is a PDB file (a protein, or a complex), or an Amber ``.prmtop`` of the whole system with its
    coordinates in ``inpcrd`` (then the MM parameters, the ligand's included, come from the prmtop), or None with
    ``ligand`` alone (the ligand in vacuum, or in water with ``solvate``).

    ``ligand``: an SDF/MOL2 file (or a list of them) with the docked pose(s), hydrogens and bond orders; every record
    is added unless ``ligand_index`` picks one. The ligands are the default ML region, with the sum of their formal
    charges as its charge. Their MM parameters (used for the ML/MM coupling, and as the whole MM description at
    ``lambda_interpolate = 0``): ``ligand_charges="am1bcc"``, AM1-BCC charges and GAFF2 (AmberTools, cached; see
    :mod:`openmm_tensornet.openmm.ligand_forcefield`), or ``"xtb"``, GFN2-xTB charges and generic Lennard-Jones only
    (:mod:`openmm_tensornet.app.ligand_parameters`). ``interpolate`` builds the system with ``lambda_interpolate``
    (always as a mixed system, also when the ML region is everything)."""
    from ..openmm.potential import TensorNetPotential

    notes: List[str] = []
    potential = potential or TensorNetPotential()
    if ligand_charges not in LIGAND_CHARGES:
        raise SimulationError(f"ligand charges must be one of {LIGAND_CHARGES}; got {ligand_charges!r}.")
    if interpolate and ligand is not None and ligand_charges == "xtb":
        raise SimulationError("interpolate needs a complete MM description of the ligand at lambda_interpolate = 0; "
                              "--ligand-charges xtb gives only nonbonded terms: use am1bcc (GAFF2).")
    ligands = _read_ligands(ligand, ligand_index, potential) if ligand is not None else []
    if input_path is None:
        if not ligands:
            raise SimulationError("give an input structure (PDB or prmtop), a ligand file (--ligand), or both.")
        path = Path(ligand if isinstance(ligand, (str, os.PathLike)) else list(ligand)[0])
        topology, positions = app.Topology(), np.zeros((0, 3))
    else:
        path = Path(input_path)
        if path.suffix.lower() in (".prmtop", ".parm7"):
            if ligands:
                raise SimulationError("an Amber prmtop already holds the whole system: drop --ligand (or give the "
                                      "protein as a PDB file).")
            return _prepare_amber(path, ml, inpcrd, ml_charge, potential, interpolate)
        topology, positions = _load_structure(path, fix)
    if ligands:
        from ..openmm.ligands import LigandError, add_ligands

        try:
            topology, positions = add_ligands(topology, positions, ligands)
        except LigandError as error:
            raise SimulationError(str(error)) from None
    _check_structure(topology, positions, path)
    extra_xml = []
    if ligands and ligand_charges == "am1bcc":
        from ..openmm.ligand_forcefield import ligand_forcefield_xml

        extra_xml.append(io.StringIO(ligand_forcefield_xml(ligands)))
        notes.append(f"ligand MM parameters: GAFF2 + AM1-BCC (AmberTools) for {sorted({lg.name for lg in ligands})}")
    ff = app.ForceField(*forcefield, *(ligand_forcefield or ()), *extra_xml)
    unmatched = ff.getUnmatchedResidues(topology)
    unmatched_names = sorted({r.name for r in unmatched})
    generator = None
    if unmatched:
        from .ligand_parameters import GeneratedLigandParameters

        formal = {lg.name: lg.charge for lg in ligands}
        charges = {name: formal.get(name, int(ml_charge or 0)) for name in unmatched_names}
        generator = GeneratedLigandParameters(topology, positions, charges)
        ff.registerTemplateGenerator(generator)
    modeller = app.Modeller(topology, positions * unit.nanometer)
    if solvate:
        if topology.getPeriodicBoxVectors() is not None and any(r.name in WATER_AND_IONS for r in topology.residues()):
            raise SimulationError(f"{path} already has water and a box; drop --solvate.")
        modeller.addSolvent(ff, model="tip3p", padding=padding * unit.nanometer,
                            ionicStrength=ionic_strength * unit.molar)
        notes.append(f"solvated: {modeller.topology.getNumAtoms() - topology.getNumAtoms()} water/ion atoms added")
    topology, positions = modeller.topology, np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    periodic = topology.getPeriodicBoxVectors() is not None
    atoms = list(topology.atoms())
    ml_atoms = _select(topology, ml, sorted({lg.name for lg in ligands}) or unmatched_names)
    if ligands and ml is None and ml_charge is None:
        ml_charge = sum(lg.charge for lg in ligands)
    cutoff_nm = potential.model.cutoff_upper / 10.0 if potential.model.length_unit == "angstrom" else None
    if len(ml_atoms) == len(atoms) and not interpolate:
        if periodic and cutoff_nm is not None:
            box = topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)
            if min(box[0][0], box[1][1], box[2][2]) < 2 * cutoff_nm:
                raise SimulationError(f"the periodic box ({box[0][0]:.2f} x {box[1][1]:.2f} x {box[2][2]:.2f} nm) is "
                                      f"smaller than twice the model's cutoff ({2 * cutoff_nm:.2f} nm); use a larger "
                                      "box (--solvate --padding) or no box.")
        charge = int(ml_charge or 0)
        system = potential.createSystem(topology, charge=charge)
        return Setup(topology, positions, system, ml_atoms, charge, True, notes)
    method = app.PME if periodic else app.NoCutoff
    if periodic:
        box = topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)
        if min(box[0][0], box[1][1], box[2][2]) < 2.0:
            raise SimulationError(f"the periodic box ({box[0][0]:.2f} x {box[1][1]:.2f} x {box[2][2]:.2f} nm) is "
                                  "smaller than twice the 1.0 nm MM cutoff; use a larger box (--padding 1.0 or "
                                  "more).")
    # With interpolate the region's constrained bonds (removed inside the ML region) must keep their MM bond terms
    # for lambda_interpolate < 1.
    mm_system = ff.createSystem(topology, nonbondedMethod=method, nonbondedCutoff=1.0 * unit.nanometer,
                                constraints=app.HBonds, rigidWater=True, flexibleConstraints=interpolate)
    nonbonded = next(f for f in mm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    region_charge = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                        for i in ml_atoms)
    charge = int(ml_charge) if ml_charge is not None else int(round(region_charge))
    if abs(region_charge - charge) > 1e-3:
        notes.append(f"ML region MM charge {region_charge:+.3f} e differs from the charge given to TensorNet "
                     f"({charge:+d} e)")
    system = potential.createMixedSystem(topology, mm_system, ml_atoms, charge=charge, interpolate=interpolate)
    if generator is not None and generator.generated:
        notes.append(f"generated MM nonbonded parameters for {sorted(set(generator.generated))} (approximate)")
    return Setup(topology, positions, system, ml_atoms, charge, False, notes)


STANDARD = {"ALA", "ARG", "ASN", "ASP", "ASH", "CYS", "CYX", "CYM", "GLN", "GLU", "GLH", "GLY", "HIS", "HID", "HIE",
            "HIP", "ILE", "LEU", "LYS", "LYN", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "ACE", "NME",
            "NH2", "A", "C", "G", "U", "DA", "DC", "DG", "DT"}


def _read_ligands(ligand, index: Optional[int], potential) -> list:
    from ..openmm.ligands import LigandError, check_elements, read_ligands

    files = [ligand] if isinstance(ligand, (str, os.PathLike)) else list(ligand)
    if index is not None and len(files) != 1:
        raise SimulationError(f"--ligand-index picks a record of one ligand file; got {len(files)} files.")
    ligands = []
    try:
        for file in files:
            for found in read_ligands(file, index):
                found.name = "LIG" if not ligands else f"L{len(ligands):02d}"
                found.topology = _renamed(found.topology, found.name)
                ligands.append(found)
        check_elements(ligands, potential.model.hparams.get("elements"))
    except LigandError as error:
        raise SimulationError(str(error)) from None
    return ligands


def _renamed(topology: app.Topology, name: str) -> app.Topology:
    for residue in topology.residues():
        residue.name = name
    return topology


def _prepare_amber(path: Path, ml, inpcrd, ml_charge, potential, interpolate: bool = False) -> Setup:
    from ..openmm.potential import TensorNetPotential

    if not path.exists():
        raise SimulationError(f"input file {path} does not exist.")
    if inpcrd is None or not Path(inpcrd).exists():
        raise SimulationError(f"an Amber prmtop needs its coordinates: pass --inpcrd FILE (got {inpcrd!r}).")
    prmtop = app.AmberPrmtopFile(str(path))
    coordinates = app.AmberInpcrdFile(str(inpcrd))
    topology = prmtop.topology
    if coordinates.boxVectors is not None:
        topology.setPeriodicBoxVectors(coordinates.boxVectors)
    positions = np.asarray(coordinates.getPositions().value_in_unit(unit.nanometer))
    _check_structure(topology, positions, path)
    # Residues that are neither standard biopolymer, water nor ions: the ligand.
    ligands = sorted({r.name for r in topology.residues() if r.name not in STANDARD | WATER_AND_IONS})
    ml_atoms = _select(topology, ml, ligands)
    periodic = topology.getPeriodicBoxVectors() is not None
    mm_system = prmtop.createSystem(nonbondedMethod=app.PME if periodic else app.NoCutoff,
                                    nonbondedCutoff=1.0 * unit.nanometer, constraints=app.HBonds,
                                    flexibleConstraints=interpolate)
    potential = potential or TensorNetPotential()
    nonbonded = next(f for f in mm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    region_charge = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in ml_atoms)
    charge = int(ml_charge) if ml_charge is not None else int(round(region_charge))
    if len(ml_atoms) == topology.getNumAtoms() and not interpolate:
        return Setup(topology, positions, potential.createSystem(topology, charge=charge), ml_atoms, charge, True,
                     [f"MM parameters from {path.name}"])
    system = potential.createMixedSystem(topology, mm_system, ml_atoms, charge=charge, interpolate=interpolate)
    return Setup(topology, positions, system, ml_atoms, charge, False, [f"MM parameters from {path.name}"])


def _select(topology: app.Topology, ml: Optional[str], unmatched: List[str]) -> List[int]:
    atoms = list(topology.atoms())
    if ml is not None:
        import mdtraj

        try:
            selected = mdtraj.Topology.from_openmm(topology).select(ml)
        except Exception as error:  # noqa: BLE001
            raise SimulationError(f"the ML selection {ml!r} is not valid mdtraj syntax: {error}") from None
        if len(selected) == 0:
            names = sorted({r.name for r in topology.residues()})[:20]
            raise SimulationError(f"the ML selection {ml!r} matches no atom; residue names here: {names}.")
        return [int(i) for i in selected]
    if unmatched:
        return [a.index for a in atoms if a.residue.name in unmatched]
    solute = [a.index for a in atoms if a.residue.name not in WATER_AND_IONS]
    return solute if len(solute) < len(atoms) else list(range(len(atoms)))


def build_simulation(input_path, output=None, temperature: float = 300.0, timestep_fs: float = 1.0,
                     friction: float = 1.0, pressure: Optional[float] = None, platform: str = "auto",
                     precision: Optional[str] = None, seed: int = 0, **prepare_options):
    """An ``openmm.app.Simulation`` for ``input_path`` (see :func:`prepare` for the options), minimised, with
    velocities at ``temperature``. With ``output``, writes ``system.xml`` and ``topology.pdb`` there for restarts.
    ``pressure`` (bar) adds a Monte Carlo barostat (periodic systems only). ``platform`` "auto": the fastest OpenMM
    platform that runs the TorchForce (CUDA > OpenCL > CPU), with ``precision`` "mixed" on GPUs unless given (see
    :func:`openmm_tensornet.openmm.platforms.choose_platform`); the model runs on that platform's device."""
    setup = prepare(input_path, **prepare_options)
    system = setup.system
    if pressure is not None:
        if not system.usesPeriodicBoundaryConditions():
            raise SimulationError("NPT (--pressure) needs a periodic system; solvate it (--solvate) or drop it.")
        system.addForce(openmm.MonteCarloBarostat(pressure * unit.bar, temperature * unit.kelvin))
    simulation = _simulation(setup.topology, system, temperature, timestep_fs, friction, platform, precision, seed)
    simulation.context.setPositions(setup.positions)
    simulation.minimizeEnergy(maxIterations=500)
    simulation.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed or 1)
    simulation.setup = setup
    if output is not None:
        from ..openmm.serialization import serialize_system

        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "system.xml").write_text(serialize_system(system))
        with open(output / "topology.pdb", "w") as handle:
            state = simulation.context.getState(getPositions=True)
            app.PDBFile.writeFile(setup.topology, state.getPositions(), handle)
        (output / "ml_atoms.txt").write_text(" ".join(map(str, setup.ml_atoms)) + "\n")
        chosen = simulation.context.getPlatform().getName()
        (output / "settings.txt").write_text(f"{temperature} {timestep_fs} {friction} {chosen} {precision}\n")
    return simulation


def _simulation(topology, system, temperature, timestep_fs, friction, platform, precision, seed):
    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, friction / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(seed)
    try:
        choice = choose_platform(platform, precision)
    except ValueError as error:
        raise SimulationError(str(error)) from None
    return app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName(choice.name),
                          choice.properties)


def restart_simulation(output, platform: str = "auto", precision: Optional[str] = None):
    """Rebuild the simulation written in ``output`` and load its last good checkpoint."""
    from ..openmm.serialization import deserialize_system

    output = Path(output)
    for name in ("system.xml", "topology.pdb", "checkpoint.chk", "settings.txt"):
        if not (output / name).exists():
            raise SimulationError(f"cannot restart: {output / name} is missing (was the run started with this "
                                  "output directory?).")
    temperature, timestep_fs, friction = (float(v) for v in (output / "settings.txt").read_text().split()[:3])
    topology = app.PDBFile(str(output / "topology.pdb")).topology
    system = deserialize_system((output / "system.xml").read_text())
    simulation = _simulation(topology, system, temperature, timestep_fs, friction, platform, precision, 0)
    simulation.loadCheckpoint(str(output / "checkpoint.chk"))
    ml_atoms = [int(v) for v in (output / "ml_atoms.txt").read_text().split()]
    simulation.setup = Setup(topology, None, system, ml_atoms, 0, False)
    return simulation


def run(simulation, steps: int, output, report_interval: int = 100, checkpoint_interval: int = 1000,
        progress: Optional[bool] = None, trajectory: str = "dcd") -> dict:
    """Run until the simulation has done ``steps`` steps in total (a restarted one continues), writing the outputs.

    A non-finite energy stops the run with :class:`SimulationError` naming the step and the atoms with the largest
    forces at the last good report; ``checkpoint.chk`` then still holds the last good state.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    start_step = simulation.currentStep
    if start_step >= steps:
        return _finish(simulation, output, start_step, 0.0)
    append = start_step > 0
    if trajectory not in ("dcd", "xtc"):
        raise SimulationError(f"trajectory format must be 'dcd' or 'xtc'; got {trajectory!r}.")
    reporter = app.DCDReporter if trajectory == "dcd" else app.XTCReporter
    simulation.reporters.append(reporter(str(output / f"trajectory.{trajectory}"), report_interval, append=append))
    simulation.reporters.append(app.StateDataReporter(
        str(output / "log.csv"), report_interval, step=True, time=True, potentialEnergy=True, kineticEnergy=True,
        totalEnergy=True, temperature=True, speed=True, append=append))
    bar = _bar(progress, steps - start_step)
    checkpoint = output / "checkpoint.chk"
    began = time.perf_counter()
    last_good = simulation.context.getState(getPositions=True, getForces=True)
    chunk = max(1, min(report_interval, checkpoint_interval))
    since_checkpoint = 0
    from ..openmm.potential import topology_bonds

    # ML models can dissociate a molecule without any NaN: watch the ML region's covalent bonds too.
    bonds = np.array(topology_bonds(simulation.topology, simulation.setup.ml_atoms), dtype=int).reshape(-1, 2)
    start_positions = last_good.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    reference = np.linalg.norm(start_positions[bonds[:, 0]] - start_positions[bonds[:, 1]], axis=1)
    while simulation.currentStep < steps:
        n = min(chunk, steps - simulation.currentStep)
        try:
            simulation.step(n)
            state = simulation.context.getState(getEnergy=True, getPositions=True, getForces=True)
            energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        except Exception as error:  # noqa: BLE001 - OpenMM reports NaN positions as an exception
            energy, state = float("nan"), None
            reason = str(error).splitlines()[0]
        else:
            reason = "non-finite energy"
        if not math.isfinite(energy) or (state is not None and not np.isfinite(
                state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)).all()):
            raise SimulationError(_blow_up_message(simulation, last_good, reason, checkpoint))
        if len(bonds):
            x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            stretch = np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1) / reference
            if stretch.max() > 1.6:
                k = int(stretch.argmax())
                atoms = list(simulation.topology.atoms())
                reason = (f"the ML region's bond {_label(atoms[bonds[k, 0]])}-{_label(atoms[bonds[k, 1]])} is "
                          f"{stretch[k]:.1f}x its starting length (dissociated)")
                raise SimulationError(_blow_up_message(simulation, last_good, reason, checkpoint))
        last_good = state
        since_checkpoint += n
        if since_checkpoint >= checkpoint_interval or simulation.currentStep >= steps:
            _atomic_checkpoint(simulation, checkpoint)
            since_checkpoint = 0
        bar.update(n)
        elapsed = time.perf_counter() - began
        if elapsed > 0:
            done_ps = (simulation.currentStep - start_step) * simulation.integrator.getStepSize().value_in_unit(
                unit.picosecond)
            bar.set_postfix(ns_per_day=f"{done_ps / 1000 / elapsed * 86400:.2f}")
    bar.close()
    return _finish(simulation, output, start_step, time.perf_counter() - began)


def _blow_up_message(simulation, last_good, reason: str, checkpoint: Path) -> str:
    forces = np.linalg.norm(last_good.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                            axis=1)
    worst = np.argsort(-forces)[:5]
    atoms = list(simulation.topology.atoms())
    names = ", ".join(f"{i} {_label(atoms[i])} ({forces[i]:.0f} kJ/mol/nm)" for i in worst)
    kept = f"the last good state is in {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"
    return (f"the simulation blew up by step {simulation.currentStep} ({reason}); largest forces at the last good "
            f"report: {names}. {kept}. Try a smaller time step (--timestep 0.5), check the structure near those "
            "atoms, or minimise longer.")


def _atomic_checkpoint(simulation, path: Path) -> None:
    partial = path.with_suffix(".chk.partial")
    simulation.saveCheckpoint(str(partial))
    os.replace(partial, path)


def _bar(progress: Optional[bool], total: int):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        from ..training.trainer import _NoBar

        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="MD", unit_scale=True, smoothing=0.1)


def _finish(simulation, output: Path, start_step: int, seconds: float) -> dict:
    state = simulation.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                        enforcePeriodicBox=simulation.system.usesPeriodicBoundaryConditions())
    with open(output / "final.pdb", "w") as handle:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), handle)
    (output / "state.xml").write_text(openmm.XmlSerializer.serialize(state))
    done = simulation.currentStep - start_step
    step_ps = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
    ns_per_day = done * step_ps / 1000 / seconds * 86400 if seconds > 0 else 0.0
    summary = dict(steps=simulation.currentStep, steps_this_run=done, seconds=seconds, ns_per_day=ns_per_day,
                   potential_energy=state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    lines = ["# Simulation summary", "", f"- steps: {simulation.currentStep} ({done} in this run)",
             f"- simulated time: {simulation.currentStep * step_ps:.3f} ps",
             f"- speed: {ns_per_day:.2f} ns/day on the {simulation.context.getPlatform().getName()} platform",
             f"- final potential energy: {summary['potential_energy']:.2f} kJ/mol",
             f"- ML region: {len(simulation.setup.ml_atoms)} atoms"]
    (output / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(output, simulation)
    return summary


def _plot(output: Path, simulation) -> None:
    log = output / "log.csv"
    if not log.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(log.read_text().splitlines()) < 2:
        return  # no report yet (fewer steps than the report interval)
    try:
        data = np.genfromtxt(log, delimiter=",", names=True, invalid_raise=False)
    except (ValueError, IndexError):
        return  # the plot is a convenience; the numbers are in log.csv
    if data.size < 1:
        return
    data = np.atleast_1d(data)
    names = data.dtype.names
    time_ps = data[names[1]]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(time_ps, data[names[2]])
    axes[0].set_ylabel("potential energy (kJ/mol)")
    temperature = [n for n in names if n.startswith("Temperature")]
    if temperature:
        axes[1].plot(time_ps, data[temperature[0]])
    axes[1].set_ylabel("temperature (K)")
    try:
        import mdtraj

        name = "trajectory.dcd" if (output / "trajectory.dcd").exists() else "trajectory.xtc"
        trajectory = mdtraj.load(str(output / name), top=str(output / "topology.pdb"))
        atoms = simulation.setup.ml_atoms
        trajectory.superpose(trajectory, 0, atom_indices=atoms)
        rmsd = np.sqrt(((trajectory.xyz[:, atoms] - trajectory.xyz[0, atoms]) ** 2).sum(-1).mean(-1)) * 10
        axes[2].plot(time_ps[: len(rmsd)], rmsd[: len(time_ps)])
    except Exception:  # noqa: BLE001 - the plot is a convenience; the numbers are in log.csv
        pass
    axes[2].set_ylabel("ML region RMSD (Å)")
    for axis in axes:
        axis.set_xlabel("time (ps)")
    figure.tight_layout()
    figure.savefig(output / "summary.png", dpi=90)
    plt.close(figure)
