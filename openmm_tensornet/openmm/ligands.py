"""Ligands as drug-discovery pipelines hand them over: SDF or MOL2 files with hydrogens, bond orders and a 3D pose.

:func:`read_ligands` reads one file (several records of a multi-record SDF or MOL2 included) into :class:`Ligand`
objects: the RDKit molecule (it defines the chemistry: elements, bonds, formal charges), an OpenMM topology of one
residue with unique atom names, and the coordinates in nm. :func:`add_ligands` places ligands beside a protein and
refuses a pose that overlaps it.

A ligand file is refused, with the reason, when it cannot be parsed, has no 3D coordinates, lacks hydrogens (a
docked pose written without them: add them with the docking tool or ``obabel -h``, keeping the coordinates), or has
an element the ML model was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import openmm.app as app
import openmm.unit as unit

LIGAND_SUFFIXES = (".sdf", ".sd", ".mol", ".mol2")
# Closest allowed ligand-protein contact (nm): a heavier clash is a bad pose, not a close contact.
MIN_CONTACT_NM = 0.1


class LigandError(ValueError):
    """A ligand file that cannot be used as it is; the message says what is wrong and how to fix it."""


@dataclass
class Ligand:
    """One ligand: its RDKit molecule (explicit hydrogens, 3D), topology, positions (nm) and formal charge."""

    molecule: object  # rdkit.Chem.Mol
    name: str  # residue name (3 characters)
    topology: app.Topology
    positions: np.ndarray  # [atoms, 3] nm
    charge: int
    source: str  # file and record, for messages

    @property
    def smiles(self) -> str:
        from rdkit import Chem

        return Chem.MolToSmiles(Chem.RemoveHs(self.molecule))


def read_ligands(path, index: Optional[int] = None, residue_name: str = "LIG") -> List[Ligand]:
    """Read the ligands of an SDF/MOL file (every record) or a MOL2 file (every ``@<TRIPOS>MOLECULE``).

    Parameters
    ----------
    path : str or Path
        ``.sdf``/``.sd``/``.mol`` or ``.mol2`` with explicit hydrogens and 3D coordinates (Å, as written by
        docking programs).
    index : int, optional
        Keep only this record (0-based) of a multi-record file.
    residue_name : str
        Residue name of the first ligand; further ligands get ``L01``, ``L02``, ...

    Returns
    -------
    list of Ligand
    """
    path = Path(path)
    if not path.exists():
        raise LigandError(f"ligand file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in LIGAND_SUFFIXES:
        raise LigandError(f"ligand file {path}: unknown format {suffix!r}; give an SDF (.sdf, .sd, .mol) or a MOL2 "
                          "(.mol2) file with hydrogens and 3D coordinates.")
    records = _read_mol2(path) if suffix == ".mol2" else _read_sdf(path)
    if not records:
        raise LigandError(f"ligand file {path} holds no molecule.")
    if index is not None:
        if not 0 <= index < len(records):
            raise LigandError(f"ligand file {path} has {len(records)} record(s); --ligand-index {index} is out of range "
                              f"(0 to {len(records) - 1}).")
        records = [(index, records[index][1])]
    else:
        records = list(enumerate(r for _, r in records))
    ligands = []
    for k, (number, molecule) in enumerate(records):
        source = f"{path} (record {number})" if len(records) > 1 or number else str(path)
        if molecule is None:
            raise LigandError(f"{source} cannot be read by RDKit (bad valences or a broken record); fix the file, e.g. "
                              "by writing it again from your docking or drawing tool.")
        name = residue_name if k == 0 else f"L{k:02d}"
        ligands.append(_ligand(molecule, name, source))
    return ligands


def _read_sdf(path: Path) -> List[Tuple[int, object]]:
    from rdkit import Chem

    supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)
    return list(enumerate(supplier))


def _read_mol2(path: Path) -> List[Tuple[int, object]]:
    from rdkit import Chem

    text = path.read_text(errors="replace")
    blocks = ["@<TRIPOS>MOLECULE" + b for b in text.split("@<TRIPOS>MOLECULE")[1:]]
    return [(k, Chem.MolFromMol2Block(block, removeHs=False, sanitize=True)) for k, block in enumerate(blocks)]


def _ligand(molecule, name: str, source: str) -> Ligand:
    from rdkit import Chem

    if molecule.GetNumConformers() == 0 or not molecule.GetConformer().Is3D():
        raise LigandError(f"{source} has no 3D coordinates; give the docked pose (a 3D SDF or MOL2).")
    missing = [(atom.GetIdx(), atom.GetSymbol(), atom.GetNumImplicitHs()) for atom in molecule.GetAtoms()
               if atom.GetNumImplicitHs() > 0]
    hydrogens = sum(atom.GetAtomicNum() == 1 for atom in molecule.GetAtoms())
    if missing or hydrogens == 0:
        detail = (f"atoms {', '.join(f'{i} ({s}, {n} H)' for i, s, n in missing[:8])} lack hydrogens"
                  if missing else "it has no hydrogen atoms")
        raise LigandError(f"{source}: the ligand has no explicit hydrogens ({detail}). TensorNet and the force field "
                          "need every hydrogen: protonate the pose (e.g. `obabel in.sdf -O out.sdf -h -p 7.4`, or "
                          "your docking tool's protonation) and write it with hydrogens.")
    positions = molecule.GetConformer().GetPositions() / 10.0  # Å -> nm
    if not np.isfinite(positions).all():
        raise LigandError(f"{source}: non-finite coordinates.")
    charge = Chem.GetFormalCharge(molecule)
    topology = app.Topology()
    chain = topology.addChain("L")
    residue = topology.addResidue(name, chain)
    names = _atom_names(molecule)
    atoms = [topology.addAtom(n, app.Element.getByAtomicNumber(a.GetAtomicNum()), residue)
             for n, a in zip(names, molecule.GetAtoms())]
    for bond in molecule.GetBonds():
        order = bond.GetBondTypeAsDouble()
        kind = {1.0: app.Single, 2.0: app.Double, 3.0: app.Triple, 1.5: app.Aromatic}.get(order)
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()], kind, int(order) or None)
    return Ligand(molecule, name, topology, positions, int(charge), source)


def _atom_names(molecule) -> List[str]:
    """The file's atom names when they are unique (MOL2), else element + running number (C1, C2, H1, ...)."""
    given = [a.GetPropsAsDict().get("_TriposAtomName", "").strip() for a in molecule.GetAtoms()]
    if all(given) and len(set(given)) == len(given) and all(len(n) <= 4 for n in given):
        return given
    counts: dict = {}
    names = []
    for atom in molecule.GetAtoms():
        symbol = atom.GetSymbol()
        counts[symbol] = counts.get(symbol, 0) + 1
        names.append(f"{symbol}{counts[symbol]}")
    return names


def check_elements(ligands: Sequence[Ligand], covered: Optional[Sequence[int]]) -> None:
    """Refuse a ligand with an element outside ``covered`` (the model's atomic numbers; None: no restriction)."""
    if covered is None:
        return
    allowed = set(int(z) for z in covered)
    for ligand in ligands:
        outside = sorted({a.GetSymbol() for a in ligand.molecule.GetAtoms() if a.GetAtomicNum() not in allowed})
        if outside:
            names = sorted(app.Element.getByAtomicNumber(z).symbol for z in allowed)
            raise LigandError(f"{ligand.source}: element(s) {outside} are not covered by the ML model, which was "
                              f"trained on {names}. Use a model trained on them (--model), or keep this ligand MM.")


def add_ligands(topology: app.Topology, positions: np.ndarray, ligands: Sequence[Ligand]
                ) -> Tuple[app.Topology, np.ndarray]:
    """The topology and positions (nm) of ``topology`` with ``ligands`` added, refusing overlapping poses."""
    from scipy.spatial import cKDTree

    modeller = app.Modeller(topology, positions * unit.nanometer)
    existing = list(topology.atoms())
    for ligand in ligands:
        if existing:
            tree = cKDTree(np.asarray(modeller.positions.value_in_unit(unit.nanometer)))
            distance, nearest = tree.query(ligand.positions)
            worst = int(np.argmin(distance))
            if distance[worst] < MIN_CONTACT_NM:
                other = list(modeller.topology.atoms())[int(nearest[worst])]
                atom = list(ligand.topology.atoms())[worst]
                raise LigandError(
                    f"{ligand.source}: ligand atom {atom.name} is {distance[worst] * 10:.2f} Å from "
                    f"{other.residue.name}{other.residue.id}:{other.name} (closer than {MIN_CONTACT_NM * 10:.1f} Å): "
                    "the pose overlaps the receptor. Check that the ligand and the protein share one coordinate "
                    "frame (the pose docked into this very structure) and that the ligand is not already in the PDB.")
        modeller.add(ligand.topology, ligand.positions * unit.nanometer)
    return modeller.topology, np.asarray(modeller.positions.value_in_unit(unit.nanometer))
