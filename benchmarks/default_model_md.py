"""Stability of the shipped default model: pure-ML Langevin MD at 300 K, through OpenMM's TorchForce on the CPU.

    python benchmarks/default_model_md.py [--picoseconds 100] [--timestep-fs 0.5] [--set systems|smiles|all]

Molecules: ``systems``: the ML molecule of every ``systems/`` example, taken from its PDB file (alanine dipeptide,
paracetamol, p-xylene), alone in vacuum; ``smiles``: drug-like molecules built from SMILES with RDKit (training
and test molecules of the default model are among them). A run counts as stable when no coordinate is NaN and every covalent bond
stays within 0.4 Å of its starting length. Prints one table row per molecule with ns/day.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from openmm_tensornet import TensorNetPotential

SMILES = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "ibuprofenate": "CC(C)Cc1ccc(cc1)C(C)C(=O)[O-]",
    "chloroquinoline": "Clc1ccc2ncccc2c1",
    "sulfanilamide": "NS(=O)(=O)c1ccc(N)cc1",
}


def from_smiles(smiles: str):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    AllChem.MMFFOptimizeMolecule(mol)
    topology = app.Topology()
    residue = topology.addResidue("LIG", topology.addChain())
    atoms = [topology.addAtom(f"{a.GetSymbol()}{a.GetIdx()}", app.Element.getByAtomicNumber(a.GetAtomicNum()),
                              residue) for a in mol.GetAtoms()]
    for bond in mol.GetBonds():
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
    return topology, mol.GetConformer().GetPositions() / 10.0, Chem.GetFormalCharge(mol)


SYSTEMS = {  # system folder -> residue names of its ML molecule (None: everything)
    "alanine-dipeptide-vacuum": None,
    "paracetamol-water": {"LIG"},
    "t4-lysozyme-l99a-p-xylene": {"TMP"},
}


def from_system(folder: str, residues):
    from pathlib import Path

    pdb = app.PDBFile(str(Path(__file__).resolve().parents[1] / "systems" / folder / "input.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    if residues is not None:
        modeller.delete([r for r in modeller.topology.residues() if r.name not in residues])
    positions = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))
    modeller.topology.setPeriodicBoxVectors(None)
    return modeller.topology, positions, 0


def molecules(which: str):
    if which in ("systems", "all"):
        for folder, residues in SYSTEMS.items():
            yield (f"{folder} (ML molecule)", *from_system(folder, residues))
    if which in ("smiles", "all"):
        for name, smiles in SMILES.items():
            yield (name, *from_smiles(smiles))


def run(name, topology, positions, charge, picoseconds, timestep_fs, potential):
    system = potential.createSystem(topology, charge=charge)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, timestep_fs * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    bonds = [(b.atom1.index, b.atom2.index) for b in topology.bonds()]
    start = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    reference = np.array([np.linalg.norm(start[i] - start[j]) for i, j in bonds])
    steps = int(round(picoseconds * 1000 / timestep_fs))
    chunk = max(1, steps // 20)
    worst, began, done = 0.0, time.perf_counter(), 0
    while done < steps:
        integrator.step(min(chunk, steps - done))
        done += min(chunk, steps - done)
        x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        if not np.isfinite(x).all():
            return name, False, done, float("nan"), 0.0
        lengths = np.array([np.linalg.norm(x[i] - x[j]) for i, j in bonds])
        worst = max(worst, float(np.abs(lengths - reference).max()) * 10)
        if worst > 0.4:
            break
    seconds = time.perf_counter() - began
    ns_per_day = done * timestep_fs * 1e-6 / seconds * 86400
    return name, worst <= 0.4, done, worst, ns_per_day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picoseconds", type=float, default=100.0)
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--set", choices=["systems", "smiles", "all"], default="all")
    args = parser.parse_args()
    potential = TensorNetPotential()
    print(f"default model, pure ML, Langevin 300 K, {args.timestep_fs} fs, {args.picoseconds} ps, CPU platform")
    print("| molecule | atoms | stable | steps | max bond change (Å) | ns/day |")
    print("|---|---|---|---|---|---|")
    for name, topology, positions, charge in molecules(args.set):
        name, stable, steps, worst, speed = run(name, topology, positions, charge, args.picoseconds,
                                                args.timestep_fs, potential)
        print(f"| {name} | {topology.getNumAtoms()} | {'yes' if stable else 'NO'} | {steps} | {worst:.3f} | "
              f"{speed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
