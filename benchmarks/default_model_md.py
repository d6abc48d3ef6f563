"""Stability of a default model in MD: Langevin at 300 K through OpenMM's TorchForce on the CPU (issue 15).

    python benchmarks/default_model_md.py [--model PATH] [--picoseconds 100] [--timestep-fs 1.0]
        [--environment vacuum water] [--set stability|systems|all] [--only NAME ...] [--shard K/N] [--results FILE]
    python benchmarks/default_model_md.py --nve [--model PATH] [--nve-picoseconds 20] [--only NAME ...]
    python benchmarks/default_model_md.py --table [--model PATH] [--results FILE]

Molecules: ``stability``: ``recipes/default_model/stability.smi`` (25 drugs, protonated at pH 7 as the training
molecules are; built with RDKit ETKDG + MMFF); ``systems``: the ML molecule of the ``systems/`` examples (alanine
dipeptide and paracetamol from their PDB files, p-xylene from its MOL2 file).

Environments: ``vacuum``: the molecule alone, pure ML; ``water``: ML/MM, the molecule (ML, mechanical embedding)
in a TIP3P box with 1.0 nm padding and 0.15 M NaCl, Amber14, PME, HBonds constraints on the MM part, set up by
``openmm_tensornet.app.simulate.prepare`` as a user's ``simulate --ligand x.sdf --solvate`` would (the ligand's MM
parameters for the coupling: GAFF2 + AM1-BCC, cached); alanine dipeptide and paracetamol use their own water
boxes from ``systems/``.

Each run: minimise, velocities at 300 K, Langevin (1/ps) for ``--picoseconds``, checked every picosecond. It counts
as stable when no coordinate is NaN and every covalent bond of the ML molecule stays within 0.4 Å of its length
after minimisation; the bond that changed most is recorded with its atoms. Results go one JSON line per run to
``--results`` (default ``benchmarks/results/default_model_md.jsonl``), keyed by the model's checksum and the
settings, so a long set can run over several sittings: finished runs are skipped. The table printed at the end
holds every finished run of the model. ``--table`` runs nothing: it prints that table and lists the runs of the
set still to do (while shards are running, or between sittings).

A run that broke: ``benchmarks/stability_replay.py NAME`` repeats its vacuum run step for step and compares the
model with GFN2-xTB over the last half picosecond.

Run it from a copy of the source tree when you edit the package meanwhile: TorchScript reads the source files
when a model is scripted, so an edit under a running set breaks its next molecule.

``--nve``: energy conservation. Each molecule in vacuum (default: paracetamol, ibuprofen, alanine dipeptide) is
equilibrated 2 ps with Langevin, then run with velocity Verlet (0.5 fs) for ``--nve-picoseconds``; the drift is the
slope of a straight-line fit to the total energy, per ns and per atom. float32: the model as shipped on the CPU
platform; float64: the model converted to float64 on the Reference platform (double precision throughout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

ROOT = Path(__file__).resolve().parents[1]
STABILITY_SMI = ROOT / "recipes" / "default_model" / "stability.smi"
SYSTEMS = ROOT / "systems"
MAX_BOND_CHANGE = 0.4  # Å

# Kept for benchmarks/model_size_speed.py.
SMILES = {"ibuprofenate": "CC(C)Cc1ccc(cc1)C(C)C(=O)[O-]"}


def stability_smiles() -> dict:
    """name -> SMILES of the stability set."""
    entries = {}
    for line in STABILITY_SMI.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            smiles, name = line.split()[:2]
            entries[name] = smiles
    return entries


def rdkit_molecule(smiles: str):
    """The pH-7 form of ``smiles`` with hydrogens and one MMFF-optimised conformer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from openmm_tensornet.training.drug_like import protonate_ph7

    mol = Chem.AddHs(protonate_ph7(Chem.MolFromSmiles(smiles)))
    if AllChem.EmbedMolecule(mol, randomSeed=3) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol)
    return mol


def from_smiles(smiles: str):
    """Topology, positions (nm) and formal charge of ``smiles`` (pH-7 form, one conformer)."""
    from rdkit import Chem

    mol = rdkit_molecule(smiles)
    topology = app.Topology()
    residue = topology.addResidue("LIG", topology.addChain())
    atoms = [topology.addAtom(f"{a.GetSymbol()}{a.GetIdx()}", app.Element.getByAtomicNumber(a.GetAtomicNum()),
                              residue) for a in mol.GetAtoms()]
    for bond in mol.GetBonds():
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
    return topology, mol.GetConformer().GetPositions() / 10.0, Chem.GetFormalCharge(mol)


def _ml_molecule_of(pdb_path: Path, residues):
    pdb = app.PDBFile(str(pdb_path))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    if residues is not None:
        modeller.delete([r for r in modeller.topology.residues() if r.name not in residues])
    modeller.topology.setPeriodicBoxVectors(None)
    return modeller.topology, np.asarray(modeller.getPositions().value_in_unit(unit.nanometer)), 0


class Entry:
    """One molecule of the set and how to build it in each environment."""

    def __init__(self, name: str, smiles: str | None = None, pdb: Path | None = None, residues=None,
                 water_pdb: Path | None = None, ligand_file: Path | None = None):
        self.name, self.smiles, self.pdb, self.residues = name, smiles, pdb, residues
        self.water_pdb, self.ligand_file = water_pdb, ligand_file

    def molecule(self):
        """(topology, positions in nm, total charge) of the molecule alone."""
        if self.smiles is not None:
            return from_smiles(self.smiles)
        return _ml_molecule_of(self.pdb, self.residues)

    def vacuum(self, potential):
        topology, positions, charge = self.molecule()
        return topology, positions, potential.createSystem(topology, charge=charge), list(range(len(positions)))

    def water(self, potential, ligand_charges: str):
        from openmm_tensornet.app.simulate import prepare

        if self.water_pdb is not None:
            setup = prepare(self.water_pdb, potential=potential)
        else:
            with tempfile.TemporaryDirectory() as folder:
                ligand = self.ligand_file
                if ligand is None:
                    from rdkit import Chem

                    ligand = Path(folder) / f"{self.name}.sdf"
                    Chem.MolToMolFile(rdkit_molecule(self.smiles), str(ligand))
                setup = prepare(None, ligand=ligand, solvate=True, padding=1.0, potential=potential,
                                ligand_charges=ligand_charges)
        return setup.topology, setup.positions, setup.system, setup.ml_atoms


def entries(which: str):
    found = []
    if which in ("stability", "all"):
        found += [Entry(name, smiles=smiles) for name, smiles in stability_smiles().items()]
    if which in ("systems", "all"):
        found += [Entry("alanine dipeptide (systems/)", pdb=SYSTEMS / "alanine-dipeptide-vacuum" / "input.pdb",
                        water_pdb=SYSTEMS / "alanine-dipeptide-water" / "input.pdb"),
                  Entry("paracetamol (systems/)", pdb=SYSTEMS / "paracetamol-water" / "input.pdb", residues={"LIG"},
                        water_pdb=SYSTEMS / "paracetamol-water" / "input.pdb"),
                  Entry("p-xylene (systems/)", pdb=SYSTEMS / "t4-lysozyme-l99a-p-xylene" / "input.pdb",
                        residues={"TMP"}, ligand_file=SYSTEMS / "t4-lysozyme-l99a-mol2" / "ligand.mol2")]
    return found


def bonds_of(topology: app.Topology, atoms) -> np.ndarray:
    from openmm_tensornet.openmm.potential import topology_bonds

    pairs = topology_bonds(topology, atoms)
    if not pairs:
        raise RuntimeError("the ML molecule has no bonds in its topology; cannot check it")
    return np.array(pairs)


def _lengths(positions: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    return np.linalg.norm(positions[bonds[:, 0]] - positions[bonds[:, 1]], axis=1) * 10.0  # Å


def start_langevin(positions, system, timestep_fs: float, threads: int):
    """The (context, integrator) of a stability run, minimised and at 300 K: seeded, so that on the CPU platform
    with one thread ``benchmarks/stability_replay.py`` repeats a run step for step on the same machine (elsewhere
    the trajectory drifts apart: MD is chaotic)."""
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, integrator, platform, {"Threads": str(threads)})
    context.setPositions(positions * unit.nanometer if isinstance(positions, np.ndarray) else positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    return context, integrator


def langevin_run(topology, positions, system, ml_atoms, picoseconds: float, timestep_fs: float, threads: int):
    """Minimise, then Langevin at 300 K; returns (stable, picoseconds reached, max bond change (Å), the bond that
    changed most (as "C3-H17", atom indices of the topology; None if NaN came first), ns/day)."""
    context, integrator = start_langevin(positions, system, timestep_fs, threads)
    bonds = bonds_of(topology, ml_atoms)
    reference = _lengths(_positions(context), bonds)
    per_ps = int(round(1000 / timestep_fs))
    total = int(round(picoseconds * per_ps))
    worst, worst_bond, done, began = 0.0, None, 0, time.perf_counter()
    while done < total:
        block = min(per_ps, total - done)
        integrator.step(block)
        done += block
        x = _positions(context)
        if not np.isfinite(x).all():
            worst = float("inf")
            break
        change = np.abs(_lengths(x, bonds) - reference)
        if change.max() > worst:
            worst, worst_bond = float(change.max()), bond_name(topology, bonds[int(change.argmax())])
        if worst > MAX_BOND_CHANGE:
            break
    seconds = time.perf_counter() - began
    return worst <= MAX_BOND_CHANGE, done / per_ps, worst, worst_bond, done * timestep_fs * 1e-6 / seconds * 86400


def bond_name(topology: app.Topology, bond) -> str:
    atoms = list(topology.atoms())
    return "-".join(f"{atoms[i].element.symbol}{i}" for i in bond)


def _positions(context) -> np.ndarray:
    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def nve_drift(topology, positions, system, picoseconds: float, platform: str) -> tuple:
    """(drift in kJ/mol per ns per atom, RMS fluctuation of the total energy in kJ/mol) of velocity Verlet at
    0.5 fs after 2 ps of Langevin at 300 K."""
    equilibrate = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    verlet = openmm.VerletIntegrator(0.5 * unit.femtosecond)
    integrator = openmm.CompoundIntegrator()
    integrator.addIntegrator(equilibrate)
    integrator.addIntegrator(verlet)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.setCurrentIntegrator(0)
    integrator.step(4000)
    integrator.setCurrentIntegrator(1)
    times, energies = [], []
    steps = int(round(picoseconds * 2000))
    for step in range(0, steps + 1, 100):
        if step:
            integrator.step(100)
        state = context.getState(getEnergy=True)
        times.append(step * 0.5e-6)  # ns
        energies.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
    slope, intercept = np.polyfit(times, energies, 1)
    residual = np.asarray(energies) - (slope * np.asarray(times) + intercept)
    return slope / system.getNumParticles(), float(np.sqrt(np.mean(residual ** 2)))


def model_checksum(path: Path | None) -> str:
    from openmm_tensornet.io.checkpoint import DEFAULT_MODEL

    return hashlib.sha256(Path(path or DEFAULT_MODEL).read_bytes()).hexdigest()[:12]


def read_results(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="checkpoint (default: the shipped default model)")
    parser.add_argument("--picoseconds", type=float, default=100.0)
    parser.add_argument("--timestep-fs", type=float, default=1.0)
    parser.add_argument("--environment", nargs="+", choices=["vacuum", "water"], default=["vacuum", "water"])
    parser.add_argument("--set", choices=["stability", "systems", "all"], default="all")
    parser.add_argument("--only", nargs="+", help="molecule names (as in the table)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "default_model_md.jsonl")
    parser.add_argument("--ligand-charges", choices=["am1bcc", "xtb"], default="am1bcc")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shard", help="K/N: run only every N-th molecule from the K-th (0-based), so N processes "
                                        "of --threads 1 share the set (on 2 cores, two 1-thread runs of small "
                                        "molecules finish sooner than one 2-thread run after another)")
    parser.add_argument("--nve", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the finished runs and those still to do; "
                                                             "run nothing")
    parser.add_argument("--nve-picoseconds", type=float, default=20.0)
    args = parser.parse_args()

    import torch

    from openmm_tensornet import TensorNetPotential, load_default_model, load_model

    torch.set_num_threads(args.threads)
    checksum = model_checksum(args.model)
    chosen = entries(args.set)
    if args.only:
        chosen = [e for e in chosen if e.name in args.only]
        if not chosen:
            parser.error(f"none of {args.only} is in the set; names: {[e.name for e in entries('all')]}")
    if args.nve and not args.only:
        chosen = [e for e in entries("all") if e.name in ("paracetamol", "ibuprofen", "alanine dipeptide (systems/)")]
    if args.shard:
        try:
            index, count = (int(part) for part in args.shard.split("/"))
        except ValueError:
            parser.error(f"--shard takes K/N (for example 0/2), not {args.shard!r}")
        if not 0 <= index < count:
            parser.error(f"--shard {args.shard}: K must be in 0..N-1")
        chosen = chosen[index::count]

    if not args.table:
        potential = TensorNetPotential(load_model(args.model) if args.model else load_default_model())
    if args.nve:
        double = TensorNetPotential(load_model(args.model).to(torch.float64) if args.model
                                    else load_default_model().to(torch.float64))
        print(f"model {args.model or 'default'} ({checksum}); velocity Verlet 0.5 fs, {args.nve_picoseconds} ps "
              "after 2 ps Langevin at 300 K; vacuum, pure ML")
        print("| molecule | atoms | float32, CPU: drift (kJ/mol/ns/atom) | RMS (kJ/mol) | "
              "float64, Reference: drift (kJ/mol/ns/atom) | RMS (kJ/mol) |")
        print("|---|---|---|---|---|---|")
        for entry in chosen:
            topology, positions, single, _ = entry.vacuum(potential)
            _, _, system64, _ = entry.vacuum(double)
            drift32, rms32 = nve_drift(topology, positions, single, args.nve_picoseconds, "CPU")
            drift64, rms64 = nve_drift(topology, positions, system64, args.nve_picoseconds, "Reference")
            print(f"| {entry.name} | {topology.getNumAtoms()} | {drift32:+.3f} | {rms32:.3f} | {drift64:+.3f} | "
                  f"{rms64:.3f} |", flush=True)
        return

    args.results.parent.mkdir(parents=True, exist_ok=True)
    settings = {"model": checksum, "picoseconds": args.picoseconds, "timestep_fs": args.timestep_fs}
    done = {(r["name"], r["environment"]) for r in read_results(args.results)
            if all(r.get(k) == v for k, v in settings.items())}
    if args.table:
        print_table(args, checksum, settings)
        todo = [f"{e.name} ({environment})" for e in chosen for environment in args.environment
                if (e.name, environment) not in done]
        print(f"\n{len(todo)} run(s) still to do" + (": " + ", ".join(todo) if todo else ""))
        return
    for entry in chosen:
        for environment in args.environment:
            if (entry.name, environment) in done:
                continue
            began = time.perf_counter()
            if environment == "vacuum":
                topology, positions, system, ml_atoms = entry.vacuum(potential)
            else:
                topology, positions, system, ml_atoms = entry.water(potential, args.ligand_charges)
            stable, reached, worst, worst_bond, speed = langevin_run(topology, positions, system, ml_atoms,
                                                                     args.picoseconds, args.timestep_fs, args.threads)
            row = dict(settings, name=entry.name, environment=environment, ml_atoms=len(ml_atoms),
                       atoms=topology.getNumAtoms(), stable=stable, reached_ps=reached,
                       max_bond_change=None if not np.isfinite(worst) else round(worst, 4), worst_bond=worst_bond,
                       ns_per_day=round(speed, 2), wall_s=round(time.perf_counter() - began, 1),
                       date=time.strftime("%Y-%m-%d"))
            with open(args.results, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print_table(args, checksum, settings)


def print_table(args, checksum: str, settings: dict) -> None:
    """The Markdown table of every finished run of the model with these settings."""
    rows = [r for r in read_results(args.results) if all(r.get(k) == v for k, v in settings.items())]
    print(f"\nmodel {args.model or 'default'} ({checksum}), Langevin 300 K, {args.timestep_fs} fs, "
          f"{args.picoseconds} ps, CPU platform; stable = no NaN and every bond of the ML molecule within "
          f"{MAX_BOND_CHANGE} Å of its start")
    print("| molecule | environment | ML atoms | atoms | stable | ps | max bond change (Å) (bond) | ns/day |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        change = "NaN" if r["max_bond_change"] is None else f"{r['max_bond_change']:.3f}"
        if r.get("worst_bond"):
            change += f" ({r['worst_bond']})"
        speed = "—" if r["ns_per_day"] is None else f"{r['ns_per_day']:.1f}"  # None: a row recovered from a note
        print(f"| {r['name']} | {r['environment']} | {r['ml_atoms']} | {r['atoms']} | "
              f"{'yes' if r['stable'] else 'NO'} | {r['reached_ps']:g} | {change} | {speed} |")


if __name__ == "__main__":
    main()
