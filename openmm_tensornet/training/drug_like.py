"""Pick drug-like molecules from a SMILES list and put them in their pH-7 protonation state (training-set recipe).

The filter (``select_drug_like``), in order; the first rule a molecule fails is its reason for being left out:

1. RDKit parses and sanitises the SMILES; salts and solvates keep their largest fragment (counter-ions dropped).
2. Elements H C N O F S Cl only (the default model's); no isotopes, no radicals.
3. 6 to 35 heavy atoms, molecular weight ≤ 500, ≤ 10 rotatable bonds, no ring larger than 8 atoms.
4. After pH-7 protonation (``protonate_ph7``) the total charge is -2..+2 and every atom's formal charge is -1..+1.
5. Duplicates (same canonical isomeric SMILES after protonation) are kept once.

pH-7 rules (pKa-based, deliberately simple): carboxylic, sulfonic and sulfinic acids and NH-tetrazoles lose a proton;
aliphatic amines (nitrogen bonded to sp3 carbons or H only) and non-acylated amidines and guanidines gain one, except a
second basic nitrogen within 3 bonds of one already protonated (piperazine, ethylenediamine: one charge). Anilines,
amides, sulfonamides, pyridines and imidazoles stay neutral (pKa below 7); ``protonate_ph7(..., heteroaromatic=True)``
protonates imidazoles and pyridines as well, which the recipe uses to add heteroaromatic cations.
"""

from __future__ import annotations

from typing import Iterable, List, NamedTuple, Optional, Tuple

ELEMENTS = frozenset({1, 6, 7, 8, 9, 16, 17})

_ACIDS = ("[CX3](=O)[OX2H1]", "[SX4](=O)(=O)[OX2H1]", "[SX3](=O)[OX2H1]", "[nH1]1nnnc1", "[nH1]1ncnn1")  # H-bearing atom: last or first
_AMINE = "[NX3;H2,H1,H0;+0;!$(N[!#6;!#1]);!$(N[#6]=,#,:[*])]"  # bonded to sp3 carbon or H only
_AMIDINE = "[NX2;H1,H0;+0;!$(N[#6]=[O,S]);!$(N[!#6;!#1])]=[CX3;!$(C[O,S])]([#7X3;!$(N[#6]=[O,S])])"
_HETEROAROMATIC = ("[nX2;H0;+0;r5]1:[c,n]:[nX3;H1]:[c,n]:[c,n]1", "[nX2;H0;+0;r6;!$(n:n)]")


class Selected(NamedTuple):
    smiles: str  # canonical isomeric SMILES in the pH-7 state
    name: str
    charge: int


class Rejected(NamedTuple):
    smiles: str
    name: str
    reason: str


def protonate_ph7(mol, heteroaromatic: bool = False):
    """A copy of the RDKit molecule (implicit hydrogens) in its pH-7 protonation state (rules in the module doc)."""
    from rdkit import Chem

    mol = Chem.RWMol(mol)
    for smarts in _ACIDS:
        for match in mol.GetSubstructMatches(Chem.MolFromSmarts(smarts)):
            atom = mol.GetAtomWithIdx(match[0] if smarts.startswith("[nH") else match[-1])
            if atom.GetTotalNumHs() and atom.GetFormalCharge() == 0:
                atom.SetFormalCharge(-1)
                atom.SetNumExplicitHs(0)
                atom.SetNoImplicit(True)
                Chem.SanitizeMol(mol)
    bases = [m[0] for m in mol.GetSubstructMatches(Chem.MolFromSmarts(_AMIDINE))]
    bases += [m[0] for m in mol.GetSubstructMatches(Chem.MolFromSmarts(_AMINE))]
    if heteroaromatic:
        bases += [m[0] for s in _HETEROAROMATIC for m in mol.GetSubstructMatches(Chem.MolFromSmarts(s))]
    charged: List[int] = []
    for index in bases:
        if any(len(Chem.GetShortestPath(mol, index, other)) - 1 <= 3 for other in charged if other != index):
            continue
        if index in charged:
            continue
        atom = mol.GetAtomWithIdx(index)
        atom.SetNumExplicitHs(atom.GetTotalNumHs() + 1)
        atom.SetNoImplicit(True)
        atom.SetFormalCharge(1)
        charged.append(index)
        Chem.SanitizeMol(mol)
    return mol.GetMol()


def _reason(mol) -> Optional[str]:
    from rdkit.Chem import Descriptors, rdMolDescriptors

    if any(a.GetAtomicNum() not in ELEMENTS for a in mol.GetAtoms()):
        return "element outside H C N O F S Cl"
    if any(a.GetIsotope() or a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return "isotope or radical"
    heavy = mol.GetNumHeavyAtoms()
    if not 6 <= heavy <= 35:
        return "heavy atoms outside 6..35"
    if Descriptors.MolWt(mol) > 500:
        return "molecular weight > 500"
    if rdMolDescriptors.CalcNumRotatableBonds(mol) > 10:
        return "more than 10 rotatable bonds"
    if any(len(ring) > 8 for ring in mol.GetRingInfo().AtomRings()):
        return "ring larger than 8 atoms"
    return None


def select_drug_like(lines: Iterable[str], heteroaromatic: bool = False) -> Tuple[List[Selected], List[Rejected]]:
    """Apply the module's filter to ``SMILES [name]`` lines; returns (kept, left out with the reason)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.MolStandardize import rdMolStandardize

    RDLogger.DisableLog("rdApp.*")
    kept: List[Selected] = []
    rejected: List[Rejected] = []
    seen = set()
    for number, line in enumerate(lines):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        smiles, name = fields[0], (fields[1] if len(fields) > 1 else str(number + 1))
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            rejected.append(Rejected(smiles, name, "RDKit cannot parse or sanitise it"))
            continue
        mol = rdMolStandardize.LargestFragmentChooser().choose(mol)
        reason = _reason(mol)
        if reason is None:
            try:
                mol = protonate_ph7(mol, heteroaromatic=heteroaromatic)
            except Exception as error:  # noqa: BLE001 - a sanitisation failure is a reason, reported
                reason = f"protonation failed ({error})"
        if reason is None:
            charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
            if not -2 <= sum(charges) <= 2 or any(abs(c) > 1 for c in charges):
                reason = "charge outside -2..+2 at pH 7 (or an atom with |charge| > 1)"
        if reason is None:
            canonical = Chem.MolToSmiles(mol)
            if canonical in seen:
                reason = "duplicate"
            else:
                seen.add(canonical)
                kept.append(Selected(canonical, name, sum(charges)))
                continue
        rejected.append(Rejected(smiles, name, reason))
    return kept, rejected
