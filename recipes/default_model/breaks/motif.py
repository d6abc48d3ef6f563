"""Folded-chain proton paths of dopamine's motif in the training molecules (issue 15, breaks/README.md).

    python motif.py [--repeats 3] [--workers 2] [--output motif]     (resumable: finished molecules are kept)

Dopamine broke in vacuum when its ammonium chain folded over the ring and an N-H proton went onto the ring carbon
next to the chain. Protons moved, pulled or held in other molecules did not teach the model that wall; its own path
did (own_path.py). This script samples the same path in the molecules of ``molecules.smi`` that share the motif: an
ammonium N-H two or three sp3 carbons from an aromatic carbon (phenethylamines, tryptamines, amino acids with
aromatic side chains). Stability molecules (``stability.smi``: dopamine, serotonin and salbutamol have the motif)
would be left out, matched in their pH-7 form without stereochemistry, so a model trained on these records can
still be checked on them; none of them is in ``molecules.smi`` now.

For each ammonium nitrogen and each acceptor (the aromatic carbon the chain is attached to, and the ring carbons
next to it) it runs ``--repeats`` two-stage pulls (``datagen.pull_contact`` with ``candidate=``), from the molecule's
RDKit/MMFF geometry: first the nitrogen is drawn to 2.1-2.6 Å from the acceptor (the chain folds, as dopamine's did
from 3.1 to 2.5 Å), then, from the folded end, its N-H hydrogen nearest the acceptor is drawn onto it (1.0-1.2 Å),
every other atom free. Each stage is 100 fs of GFN2-xTB MD at 300 K with ten frames labelled; the first also adds
pull_contact's moved copy (the proton put 1.0-1.8 Å from the acceptor) unless it clashes. Records go to
``OUTPUT/NAME.motif.npz`` under the molecule's name, so the split by name keeps held-out molecules held out; the
molecules chosen are listed in ``OUTPUT/motif.smi``. A molecule whose every pull fails its SCF writes nothing and
is tried again on the next run. 41 molecules, 435 pulls, 9 088 records: 67 min on 2 cores
(2026-12-04). ``motif_check.py MODEL`` measures a model's hole on them.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent
SUFFIX, SEED = ".motif.npz", 23
# An ammonium N-H, two or three sp3 carbons, then an aromatic carbon: the chain that can fold onto the ring.
MOTIF = ("[NX4+;!H0]-[CX4]-[CX4]-[c]", "[NX4+;!H0]-[CX4]-[CX4]-[CX4]-[c]")


def motif_sites(mol) -> list:
    """(nitrogen, acceptors) for each ammonium of RDKit ``mol`` that carries the motif: the aromatic carbon its chain
    ends on and the aromatic carbons bonded to that one (atom indices of ``mol``)."""
    from rdkit import Chem

    sites = {}
    for smarts in MOTIF:
        for match in mol.GetSubstructMatches(Chem.MolFromSmarts(smarts)):
            ipso = mol.GetAtomWithIdx(match[-1])
            ring = [a.GetIdx() for a in ipso.GetNeighbors() if a.GetIsAromatic() and a.GetAtomicNum() == 6]
            sites.setdefault(match[0], set()).update([match[-1], *ring])
    return [(nitrogen, sorted(acceptors)) for nitrogen, acceptors in sorted(sites.items())]


def choose(molecules: Path, stability: Path) -> list:
    """(name, SMILES, sites) of the motif molecules of ``molecules`` that are not stability molecules (compared in
    their pH-7 form, without stereochemistry)."""
    from rdkit import Chem

    from openmm_tensornet.training.drug_like import protonate_ph7

    def parsed(path):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            mol = Chem.MolFromSmiles(fields[0])
            if mol is None or len(fields) < 2:
                raise SystemExit(f"{path}:{number}: expected 'SMILES name' with a SMILES RDKit can read; got {line!r}.")
            yield fields[0], fields[1], mol

    def key(mol) -> str:
        mol = protonate_ph7(mol)
        Chem.RemoveStereochemistry(mol)
        return Chem.MolToSmiles(mol)

    kept = {key(mol) for _, _, mol in parsed(stability)}
    chosen = []
    for smiles, name, mol in parsed(molecules):
        sites = motif_sites(mol)
        if sites and key(mol) not in kept:
            chosen.append((name, smiles, sites))
    return chosen


def nearest_hydrogen(positions: np.ndarray, z: np.ndarray, bonds: np.ndarray, nitrogen: int, acceptor: int) -> int:
    """The hydrogen bonded to ``nitrogen`` that is nearest to ``acceptor``."""
    from openmm_tensornet.training.datagen import hydrogen_pairs

    hydrogens = [hydrogen for hydrogen, atom in hydrogen_pairs(z, bonds) if atom == nitrogen]
    return min(hydrogens, key=lambda h: np.linalg.norm(positions[h] - positions[acceptor]))


def _pulls(job):
    from openmm_tensornet.io.data import write_molecule
    from openmm_tensornet.training.datagen import CONTACT_STEPS, CONTACT_STRIDE, XTB, covalent_bonds, pull_contact, \
        records_molecule

    structure, number, sites, repeats, target = job
    z, start = structure.z, structure.positions
    bonds = covalent_bonds(z, start)
    xtb = XTB(z, start, structure.charge)
    rng = np.random.default_rng([SEED, number])
    records, lost, over = [], 0, 0
    for nitrogen, acceptors in sites:
        for acceptor in acceptors:
            for _ in range(repeats):
                before = len(records)
                candidate = (nearest_hydrogen(start, z, bonds, nitrogen, acceptor), nitrogen, acceptor)
                failed = pull_contact(xtb, [start], z, bonds, rng, records, candidate=candidate)
                lost += failed
                md_frames = CONTACT_STEPS // CONTACT_STRIDE - failed  # a moved copy may follow them
                if md_frames < 1:
                    continue
                folded = records[before + md_frames - 1][0]  # the chain folded: start of the proton's pull
                hydrogen = nearest_hydrogen(folded, z, bonds, nitrogen, acceptor)
                before = len(records)
                lost += pull_contact(xtb, [folded], z, bonds, rng, records, pulled="hydrogen",
                                     candidate=(hydrogen, nitrogen, acceptor))
                if len(records) > before:
                    end = records[-1][0]
                    over += int(np.linalg.norm(end[hydrogen] - end[acceptor])
                                < np.linalg.norm(end[hydrogen] - end[nitrogen]))
    if records:
        write_molecule(records_molecule(structure.name, z, structure.charge, records, "GFN2-xTB"), target)
    return structure.name, len(records), lost, over


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="two-stage pulls per nitrogen and acceptor")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=HERE / "motif")
    args = parser.parse_args()
    if args.repeats < 1 or args.workers < 1:
        raise SystemExit("--repeats and --workers must be 1 or more.")
    chosen = choose(RECIPE / "molecules.smi", RECIPE / "stability.smi")
    args.output.mkdir(parents=True, exist_ok=True)
    listing = args.output / "motif.smi"
    listing.write_text("".join(f"{smiles} {name}\n" for name, smiles, _ in chosen))
    from openmm_tensornet.training.datagen import load_structures

    structures = load_structures(listing)  # RDKit/MMFF geometries, seeded by line
    jobs = [(structure, number, sites, args.repeats, args.output / f"{name}{SUFFIX}")
            for number, (structure, (name, _, sites)) in enumerate(zip(structures, chosen))
            if not (args.output / f"{name}{SUFFIX}").exists()]
    print(f"{len(chosen)} motif molecules in {listing}; {len(jobs)} to pull", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.time()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        for finished, (name, count, lost, over) in enumerate(pool.map(_pulls, jobs), start=1):
            print(f"[{finished}/{len(jobs)}] {name}: {count} records, {over} pulls ended with the proton nearer the "
                  f"acceptor, {lost} MD frames lost to SCF failures ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
