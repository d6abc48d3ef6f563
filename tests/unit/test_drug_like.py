"""The default model's training-set recipe: drug-like selection, pH-7 protonation, distorted bonds and dimers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rdkit = pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402

from openmm_tensornet.training.datagen import (  # noqa: E402
    CONTACT_DISTANCE, TRANSFER_DISTANCE, WATER, XTB, Structure, clashes, covalent_bonds, distort_bond, make_dimers,
    move_hydrogen, place_pair, pull_contact, sample_and_label, transfer_candidates)
from openmm_tensornet.training.drug_like import protonate_ph7, select_drug_like  # noqa: E402

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "default_model"


@pytest.mark.parametrize("smiles, expected, heteroaromatic", [
    ("CC(C)Cc1ccc(cc1)C(C)C(=O)O", "CC(C)Cc1ccc(C(C)C(=O)[O-])cc1", False),  # ibuprofen -> ibuprofenate
    ("CS(=O)(=O)O", "CS(=O)(=O)[O-]", False),
    ("Cc1nnn[nH]1", "Cc1nnn[n-]1", False),  # tetrazole (pKa ~4.9)
    ("C1CCNCC1", "C1CC[NH2+]CC1", False),
    ("CN1CCN(C)CC1", "CN1CC[NH+](C)CC1", False),  # piperazine: one charge (second pKa ~5)
    ("NCCCCN", "[NH3+]CCCC[NH3+]", False),  # far apart: both
    ("NC(=N)N", "NC(N)=[NH2+]", False),  # guanidine
    ("NCc1ccccc1", "[NH3+]Cc1ccccc1", False),
    ("Nc1ccccc1", "Nc1ccccc1", False),  # aniline stays neutral
    ("CC(=O)NC", "CNC(C)=O", False),  # amide
    ("NS(=O)(=O)c1ccccc1", "NS(=O)(=O)c1ccccc1", False),  # sulfonamide
    ("NCC(=O)O", "[NH3+]CC(=O)[O-]", False),  # zwitterion
    ("c1c[nH]cn1", "c1c[nH]cn1", False),
    ("c1c[nH]cn1", "c1c[nH+]c[nH]1", True),  # imidazolium
    ("c1ccncc1", "c1cc[nH+]cc1", True),
])
def test_ph7_protonation(smiles, expected, heteroaromatic):
    mol = protonate_ph7(Chem.MolFromSmiles(smiles), heteroaromatic=heteroaromatic)
    assert Chem.MolToSmiles(mol) == Chem.MolToSmiles(Chem.MolFromSmiles(expected))


def test_selection_reasons_salts_and_duplicates():
    lines = ["c1ccccc1C(=O)[O-].[Na+] benzoate_sodium", "OC(=O)c1ccccc1 benzoic_acid", "CCO ethanol",
             "c1ccccc1[Si](C)(C)C silane", "not_smiles bad", "C" * 40 + " long", "CC(C)Cc1ccc(cc1)C(C)C(=O)O ibu",
             "# a comment"]
    kept, rejected = select_drug_like(lines)
    assert [(k.name, k.charge) for k in kept] == [("benzoate_sodium", -1), ("ibu", -1)]
    reasons = {r.name: r.reason for r in rejected}
    assert reasons == {"benzoic_acid": "duplicate", "ethanol": "heavy atoms outside 6..35",
                       "silane": "element outside H C N O F S Cl", "bad": "RDKit cannot parse or sanitise it",
                       "long": "heavy atoms outside 6..35"}


def test_recipe_molecule_list_is_what_the_issue_asks():
    rows = [line.split() for line in (RECIPE / "molecules.smi").read_text().splitlines() if not line.startswith("#")]
    mols = [Chem.AddHs(Chem.MolFromSmiles(smiles)) for smiles, _ in rows]
    assert len(rows) >= 2000 and len({smiles for smiles, _ in rows}) == len(rows)
    assert {a.GetSymbol() for m in mols for a in m.GetAtoms()} == {"H", "C", "N", "O", "F", "S", "Cl"}
    charges = [Chem.GetFormalCharge(m) for m in mols]
    assert min(charges) >= -2 and max(charges) <= 2 and sum(c != 0 for c in charges) > 300
    assert sum(30 <= m.GetNumAtoms() <= 60 for m in mols) > 500
    assert any(name == "ibuprofenate" for _, name in rows)
    heteroaromatic_cation = Chem.MolFromSmarts("[n+;H1]")
    assert sum(m.HasSubstructMatch(heteroaromatic_cation) for m in mols) >= 100


def test_distorted_bond_has_the_asked_length_and_moves_the_lighter_atom():
    z = np.array([6, 1, 8])
    x = np.array([[0.0, 0.0, 0.0], [1.09, 0.0, 0.0], [-0.7, 1.2, 0.0]])
    assert covalent_bonds(z, x).tolist() == [[0, 1], [0, 2]]
    masses = np.array([12.0, 1.0, 16.0])
    moved = distort_bond(x, masses, (1, 0), 1.5)
    assert np.linalg.norm(moved[1] - moved[0]) == pytest.approx(1.5 * 1.09)
    np.testing.assert_array_equal(moved[[0, 2]], x[[0, 2]])
    moved = distort_bond(x, masses, (0, 2), 0.8)  # carbon is lighter than oxygen: carbon moves
    assert np.linalg.norm(moved[2] - moved[0]) == pytest.approx(0.8 * np.linalg.norm(x[2] - x[0]))
    np.testing.assert_array_equal(moved[2], x[2])


def test_pairs_touch_at_the_contact_distance_with_rigid_partners():
    rng = np.random.default_rng(3)
    benzene = Structure("benzene", np.array([6] * 6), np.array(
        [[np.cos(a), np.sin(a), 0.0] for a in np.arange(6) * np.pi / 3]) * 1.39, -1)
    pair = place_pair(benzene, WATER, 2.2, rng)
    a, b = pair.positions[:6], pair.positions[6:]
    assert np.linalg.norm(a[:, None] - b[None], axis=-1).min() == pytest.approx(2.2, abs=1e-6)
    for part, original in ((a, benzene.positions), (b, WATER.positions)):
        d = np.linalg.norm(part[:, None] - part[None], axis=-1)
        np.testing.assert_allclose(d, np.linalg.norm(original[:, None] - original[None], axis=-1), atol=1e-9)
    assert pair.name == "benzene+water" and pair.charge == -1 and pair.z.tolist() == [6] * 6 + [8, 1, 1]
    dimers = make_dimers([benzene, WATER], 4, max_atoms=6, seed=1)
    assert [d.name.split("+")[1] for d in dimers][::2] == ["water", "water"]
    with pytest.raises(ValueError, match="at most 2 atoms"):
        make_dimers([benzene], 1, max_atoms=2)


def test_temperatures_and_distortions_are_sampled_and_labelled():
    pytest.importorskip("tblite")
    methanol = Structure("methanol", np.array([6, 8, 1, 1, 1, 1]), np.array(
        [[0.0, 0.0, 0.0], [1.42, 0.0, 0.0], [-0.36, 1.03, 0.0], [-0.36, -0.51, 0.89], [-0.36, -0.51, -0.89],
         [1.74, 0.0, 0.9]]))
    molecule = sample_and_label(methanol, frames=2, stride=3, perturbations=1, temperature=[300.0, 900.0],
                                distortions=6, seed=2)
    assert len(molecule) == 2 * 2 * 2 + 6
    md = molecule.energy[:8]
    stretched = molecule.energy[8:]
    # a bond at 0.75-0.9x or 1.2-1.8x its length costs well over thermal energy (0.03 eV at 300 K)
    assert (stretched > md.min() + 0.1).all()
    frames = molecule.positions[:8:2]  # MD frames (each followed by its displaced copy)
    bonds = covalent_bonds(methanol.z, methanol.positions).tolist()
    for distorted in molecule.positions[8:]:
        # exactly one atom of one MD frame moved, along one bond, to 0.75-0.9x or 1.2-1.8x that bond's length
        frame = next(f for f in frames if (np.abs(f - distorted).max(axis=1) > 0).sum() == 1)
        atom = int(np.flatnonzero(np.abs(frame - distorted).max(axis=1) > 0)[0])
        ratios = [np.linalg.norm(distorted[atom] - distorted[other]) / np.linalg.norm(frame[atom] - frame[other])
                  for bond in bonds if atom in bond for other in bond if other != atom]
        assert any(0.75 <= r <= 0.9 or 1.2 <= r <= 1.8 for r in ratios)
    with pytest.raises(ValueError, match="positive kelvin"):
        sample_and_label(methanol, temperature=[300.0, -1.0])


def _water_dimer() -> Structure:
    """Two waters, the second donating its H4 to the first's oxygen (H4...O0 1.95 Å, O...O 2.91 Å)."""
    z = np.array([8, 1, 1, 8, 1, 1])
    x = np.array([[0.0, 0.0, 0.0], [-0.24, 0.93, 0.0], [-0.24, -0.93, 0.0],
                  [2.91, 0.0, 0.0], [1.95, 0.0, 0.0], [3.15, 0.0, 0.93]])
    return Structure("water-dimer", z, x, 0)


def test_transfer_candidates_go_through_space_to_a_heavy_atom_not_bonded_to_the_donor():
    dimer = _water_dimer()
    bonds = covalent_bonds(dimer.z, dimer.positions)
    # only H4 reaches a heavy atom of the other water; no hydrogen is moved towards its own oxygen
    assert transfer_candidates(dimer.positions, dimer.z, bonds) == [(4, 3, 0)]
    # methylamine: H on N is 2.1 Å from the carbon bonded to N: a 1,2-shift, not a candidate
    z = np.array([7, 6, 1, 1, 1, 1, 1])
    x = np.array([[0.0, 0.0, 0.0], [1.47, 0.0, 0.0], [-0.34, 0.94, 0.0], [-0.34, -0.47, 0.82],
                  [1.83, 1.03, 0.0], [1.83, -0.51, 0.89], [1.83, -0.51, -0.89]])
    assert transfer_candidates(x, z, covalent_bonds(z, x)) == []
    # separation 3 keeps the pair partner and leaves out 1,3-shifts
    assert transfer_candidates(dimer.positions, dimer.z, bonds, separation=3) == [(4, 3, 0)]
    with pytest.raises(ValueError, match="at least 2 bonds"):
        transfer_candidates(dimer.positions, dimer.z, bonds, separation=1)


def test_separation_three_leaves_out_shifts_onto_the_atom_two_bonds_away():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    molecule = Chem.AddHs(Chem.MolFromSmiles("CCC"))  # propane: every methyl H is 2.1-2.8 Å from the far carbon
    AllChem.EmbedMolecule(molecule, randomSeed=1)
    z = np.array([a.GetAtomicNum() for a in molecule.GetAtoms()])
    x = molecule.GetConformer().GetPositions()
    bonds = covalent_bonds(z, x)
    near = transfer_candidates(x, z, bonds)
    assert near and all({donor, acceptor} == {0, 2} for _, donor, acceptor in near)  # 1,3: C0 <-> C2 only
    assert transfer_candidates(x, z, bonds, separation=3) == []


def test_move_hydrogen_goes_straight_towards_the_acceptor_and_never_past_it():
    dimer = _water_dimer()
    moved = move_hydrogen(dimer.positions, 4, 0, 1.2)
    np.testing.assert_allclose(moved[4], [1.2, 0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(np.delete(moved, 4, axis=0), np.delete(dimer.positions, 4, axis=0))
    # off the O...O line: the H moves along its own line to the acceptor, to exactly the asked distance
    x = dimer.positions.copy()
    x[4] = [2.0, 0.5, 0.3]
    moved = move_hydrogen(x, 4, 0, 1.5)
    assert np.linalg.norm(moved[4] - x[0]) == pytest.approx(1.5)
    np.testing.assert_allclose(np.cross(moved[4] - x[0], x[4] - x[0]), 0.0, atol=1e-12)
    # already closer than asked: it stays
    np.testing.assert_array_equal(move_hydrogen(dimer.positions, 4, 0, 2.5), dimer.positions)


def test_hydrogen_transfers_are_sampled_and_labelled():
    pytest.importorskip("tblite")
    dimer = _water_dimer()
    molecule = sample_and_label(dimer, frames=2, stride=3, perturbations=1, temperature=[300.0], distortions=0,
                                transfers=5, seed=3)
    assert len(molecule) == 2 * 2 + 5
    frames = molecule.positions[:4:2]
    distances = []
    for moved in molecule.positions[4:]:
        # exactly one hydrogen of an MD frame moved, to 1.0-1.8 Å from the other water's oxygen
        frame = next(f for f in frames if (np.abs(f - moved).max(axis=1) > 0).sum() == 1)
        atom = int(np.flatnonzero(np.abs(frame - moved).max(axis=1) > 0)[0])
        assert dimer.z[atom] == 1
        acceptor = 0 if atom in (4, 5) else 3
        distances.append(np.linalg.norm(moved[atom] - moved[acceptor]))
        assert TRANSFER_DISTANCE[0] - 1e-9 <= distances[-1] <= TRANSFER_DISTANCE[1] + 1e-9
    # GFN2-xTB labels: a proton pushed to 1.0-1.3 Å of the other oxygen (H3O+ ... OH- in the gas phase) costs far
    # more than thermal energy (0.03 eV) above the MD frames
    close = molecule.energy[4:][np.array(distances) < 1.3]
    assert len(close) and (close > molecule.energy[:4].max() + 0.3).all()
    assert np.isfinite(molecule.forces).all()


def _pulled_water_dimer(pulled: str):
    """(dimer, its covalent bonds, its GFN2-xTB calculator, the records) of one 60-step pull of a water dimer."""
    pytest.importorskip("tblite")
    dimer = _water_dimer()
    bonds = covalent_bonds(dimer.z, dimer.positions)
    xtb = XTB(dimer.z, dimer.positions, 0)
    records = []
    assert pull_contact(xtb, [dimer.positions], dimer.z, bonds, np.random.default_rng(0), records, steps=60,
                        stride=10, pulled=pulled) == 0
    return dimer, bonds, xtb, records


def test_a_pull_draws_the_donor_and_acceptor_together_and_labels_without_the_spring():
    dimer, bonds, xtb, records = _pulled_water_dimer("donor")
    assert len(records) == 60 // 10 + 1
    # the only candidate is H4 (on O3) -> O0: the spring draws the oxygens from 2.91 Å into CONTACT_DISTANCE
    distances = [np.linalg.norm(r[0][3] - r[0][0]) for r in records[:-1]]
    assert distances[-1] < CONTACT_DISTANCE[1] + 0.15 < distances[0] + 0.15
    # labels are GFN2-xTB's own energy and forces, those of a fresh single point (the spring, several eV/Å at the
    # end, is left out)
    for positions, energy, forces, _ in records[::3]:
        xtb.result = None
        again = xtb(positions)
        assert energy == pytest.approx(again[0], abs=1e-6)
        np.testing.assert_allclose(forces, again[1], atol=1e-4)
    # the extra copy: H4 moved closer to O0, to 1.0-1.8 Å, from the last MD frame; nothing else moved
    moved, last = records[-1][0], records[-2][0]
    assert TRANSFER_DISTANCE[0] - 1e-9 <= np.linalg.norm(moved[4] - moved[0]) < np.linalg.norm(last[4] - last[0])
    np.testing.assert_array_equal(np.delete(moved, 4, axis=0), np.delete(last, 4, axis=0))
    with pytest.raises(ValueError, match="multiple of stride"):
        pull_contact(xtb, [dimer.positions], dimer.z, bonds, np.random.default_rng(0), [], steps=50, stride=20)
    # no through-space candidate (a lone water): nothing to pull
    water = [WATER.positions]
    assert pull_contact(XTB(WATER.z, WATER.positions, 0), water, WATER.z, covalent_bonds(WATER.z, WATER.positions),
                        np.random.default_rng(0), records) is None


def test_a_hydrogen_pull_draws_the_hydrogen_itself_and_labels_without_the_spring():
    dimer, bonds, xtb, records = _pulled_water_dimer("hydrogen")
    assert len(records) == 60 // 10  # MD frames only, no moved copy: the pull itself moves the hydrogen
    # the only candidate is H4 (on O3) -> O0: the spring draws H4 from 1.9 Å towards PROTON_DISTANCE of O0; the
    # oxygens are free, and in a water dimer they close in (H3O+ ... OH- has no minimum in the gas phase)
    to_acceptor = [np.linalg.norm(r[0][4] - r[0][0]) for r in records]
    assert to_acceptor[0] > 1.8 and to_acceptor[-1] < 1.45
    oxygens = [np.linalg.norm(r[0][3] - r[0][0]) for r in records]
    assert oxygens[-1] < oxygens[0] - 0.3
    # labels: GFN2-xTB's own, as a fresh single point (the spring, several eV/Å on H4, is left out)
    positions, energy, forces, _ = records[-1]
    xtb.result = None
    again = xtb(positions)
    assert energy == pytest.approx(again[0], abs=1e-6)
    np.testing.assert_allclose(forces, again[1], atol=1e-4)
    with pytest.raises(ValueError, match="pulled must be"):
        pull_contact(xtb, [dimer.positions], dimer.z, bonds, np.random.default_rng(0), [], pulled="acceptor")
    # a given candidate is pulled even where the through-space search finds none: H1 (on O0) onto O3, 3.28 Å away
    assert not [c for c in transfer_candidates(dimer.positions, dimer.z, bonds) if c[0] == 1]
    chosen = []
    assert pull_contact(xtb, [dimer.positions], dimer.z, bonds, np.random.default_rng(0), chosen, steps=60,
                        stride=10, pulled="hydrogen", candidate=(1, 0, 3)) == 0
    assert np.linalg.norm(chosen[-1][0][1] - chosen[-1][0][3]) < 3.28 - 0.5


def test_langevin_with_a_bias_and_no_friction_conserves_the_biased_energy():
    from openmm_tensornet.training.datagen import ACCELERATION, _langevin

    # two free atoms (the "labels" are zero) held by a bias spring: velocity Verlet with the bias in both
    # half-kicks conserves kinetic + spring energy to O(dt^2); a bias left out of one half-kick does not
    masses = np.array([12.0, 16.0])
    k, rest = 2.0, 1.5  # eV/Å^2, Å

    def spring(x, step):
        offset = x[0] - x[1]
        distance = np.linalg.norm(offset)
        force = np.zeros_like(x)
        force[0] = -k * (distance - rest) * offset / distance
        force[1] = -force[0]
        return force

    def energy(x, v):
        kinetic = 0.5 * (masses[:, None] * v ** 2).sum() / ACCELERATION
        return kinetic + 0.5 * k * (np.linalg.norm(x[0] - x[1]) - rest) ** 2

    x = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    v = np.zeros_like(x)
    start = energy(x, v)
    records = []
    zero = lambda positions: (0.0, np.zeros_like(positions), np.zeros(3))  # noqa: E731
    _langevin(zero, x, v, np.zeros_like(x), masses, np.zeros((2, 1)), 1.0, 0.0, 0.5, 40, 10, 0, 0.0,
              np.random.default_rng(0), records, [], bias=spring)
    assert len(records) == 40 and np.linalg.norm(x[0] - x[1]) != pytest.approx(2.0)  # it moved
    assert all(r[2].max() == 0.0 for r in records)  # labels: the calculator's forces, not the bias
    assert energy(x, v) == pytest.approx(start, rel=1e-3)  # v was updated in place by the last half-kick


def test_sample_and_label_adds_contact_pulls():
    pytest.importorskip("tblite")
    dimer = _water_dimer()
    plain = sample_and_label(dimer, frames=2, stride=3, perturbations=0, temperature=[300.0], seed=3)
    pulled = sample_and_label(dimer, frames=2, stride=3, perturbations=0, temperature=[300.0], seed=3, contacts=1)
    assert len(plain) + 200 // 20 <= len(pulled) <= len(plain) + 200 // 20 + 1  # + the moved copy, if any
    # the pull comes after the same MD (tblite's last bits can differ from run to run)
    np.testing.assert_allclose(pulled.positions[:len(plain)], plain.positions, atol=1e-8)


def test_a_distortion_that_pushes_an_atom_into_a_third_one_is_a_clash():
    # water-like: stretching O-H1 along its direction towards a probe atom placed on that line
    z = np.array([8, 1, 1, 6])
    x = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [2.40, 0.0, 0.0]])
    masses = np.array([16.0, 1.0, 1.0, 12.0])
    # H1 at 1.8 x 0.96 = 1.728 Å: 0.672 Å from the carbon, under 0.75 x (0.31 + 0.76) = 0.80 Å
    assert clashes(distort_bond(x, masses, (0, 1), 1.8), z, masses, (0, 1))
    assert not clashes(distort_bond(x, masses, (0, 1), 1.2), z, masses, (0, 1))  # 1.248 Å from it
    assert not clashes(distort_bond(x, masses, (0, 2), 1.8), z, masses, (0, 2))


def _recipe_script(name: str = "breaks/motif"):
    """recipes/default_model/NAME.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(name).name, RECIPE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("smiles, expected", [
    ("[NH3+]CCc1ccc(O)c(O)c1", [(0, [3, 4, 10])]),  # dopamine: the chain's ring carbon and its two neighbours
    ("C[NH+](C)CCc1ccccc1", [(1, [5, 6, 10])]),
    ("[NH3+]CCCc1ccccc1", [(0, [4, 5, 9])]),  # three chain carbons
    ("[NH3+]Cc1ccccc1", []),  # too short to fold onto the ring
    ("NCCc1ccccc1", []),  # no ammonium
    ("C[N+](C)(C)CCc1ccccc1", []),  # no N-H
])
def test_motif_sites_are_ammonium_chains_that_can_fold_onto_a_ring(smiles, expected):
    assert _recipe_script().motif_sites(Chem.MolFromSmiles(smiles)) == expected


def test_motif_molecules_leave_the_stability_molecules_out(tmp_path):
    motif = _recipe_script()
    chosen = {name: smiles for name, smiles, _ in motif.choose(RECIPE / "molecules.smi", RECIPE / "stability.smi")}
    assert len(chosen) >= 30 and chosen["NCI-1849"] == "C[NH+](C)CCc1ccccc1"
    (tmp_path / "none.smi").write_text("# no stability molecules\n")
    every = {name for name, _, _ in motif.choose(RECIPE / "molecules.smi", tmp_path / "none.smi")}
    # stability molecules, written neutral as stability.smi writes them (and here one with a stereocentre), are
    # matched in their pH-7 form without stereochemistry and left out
    (tmp_path / "stability.smi").write_text("# header\nCN(C)CCc1ccccc1 one\nCOc1ccccc1C[C@H](C)N two\n")
    again = {name for name, _, _ in motif.choose(RECIPE / "molecules.smi", tmp_path / "stability.smi")}
    assert again == every - {"NCI-1849", "NCI-1139"}
    (tmp_path / "bad.smi").write_text("C1CC bad\n")
    with pytest.raises(SystemExit, match="bad.smi:1"):
        motif.choose(RECIPE / "molecules.smi", tmp_path / "bad.smi")


def test_motif_pulls_fold_the_chain_then_carry_the_proton_onto_the_ring(tmp_path):
    pytest.importorskip("tblite")
    from openmm_tensornet.io.data import read_molecule
    from openmm_tensornet.training.datagen import CONTACT_STEPS, CONTACT_STRIDE, load_structures

    motif = _recipe_script()
    (tmp_path / "one.smi").write_text("C[NH+](C)CCc1ccccc1 NCI-1849\n")
    structure = load_structures(tmp_path / "one.smi")[0]
    sites = motif.motif_sites(Chem.MolFromSmiles("C[NH+](C)CCc1ccccc1"))
    name, count, lost, over = motif._pulls((structure, 0, sites, 1, tmp_path / "NCI-1849.motif.npz"))
    frames = CONTACT_STEPS // CONTACT_STRIDE
    # three acceptors, each: the nitrogen's pull (and its moved copy, unless left out), then the proton's pull
    assert (name, lost) == ("NCI-1849", 0) and 3 * 2 * frames <= count <= 3 * (2 * frames + 1)
    assert over >= 1
    records = read_molecule(tmp_path / "NCI-1849.motif.npz")
    assert records.name == "NCI-1849" and len(records) == count
    nitrogen, (ipso, *ortho) = sites[0]
    start = np.linalg.norm(structure.positions[nitrogen] - structure.positions[ipso])
    folded = records.positions[frames - 1]  # the first pull's last MD frame: N drawn towards the ring carbon
    assert np.linalg.norm(folded[nitrogen] - folded[ipso]) < start - 0.4  # the chain folded (3.9 -> 3.2 Å)
    # next to it, the N comes as close to a ring carbon as dopamine's did before its proton jumped (2.48 Å)
    closest = np.linalg.norm(records.positions[:, [nitrogen]] - records.positions[:, ortho], axis=-1).min()
    assert closest < CONTACT_DISTANCE[1] + 0.2


def test_motif_check_counts_a_proton_over_only_when_it_has_left_its_nitrogen_for_a_carbon():
    check = _recipe_script("breaks/motif_check")
    z = np.array([7, 1, 6, 8])
    on_nitrogen = np.array([[0.0, 0.0, 0.0], [1.02, 0.0, 0.0], [2.6, 0.0, 0.0], [0.0, 3.0, 0.0]])
    on_carbon = on_nitrogen.copy()
    on_carbon[1] = [1.5, 0.0, 0.0]  # 1.5 Å from N, 1.1 Å from C
    halfway = on_nitrogen.copy()
    halfway[1:3] = [[1.2, 0.0, 0.0], [2.4, 0.0, 0.0]]  # within 1.3 Å of the carbon, but still of its N too
    on_oxygen = on_nitrogen.copy()
    on_oxygen[1] = [0.0, 1.9, 0.0]  # off its N, but onto the oxygen
    frames = np.stack([on_nitrogen, on_carbon, halfway, on_oxygen])
    over = check.proton_over(frames, z, covalent_bonds(z, on_nitrogen))
    assert over.tolist() == [False, True, False, False]


def test_hydrogen_pairs_list_each_x_h_bond_once_hydrogen_first():
    from openmm_tensornet.training.datagen import hydrogen_pairs

    # methylammonium: C0-N1, C0-H2/H3/H4, N1-H5/H6/H7, bonds written in both orders
    z = np.array([6, 7, 1, 1, 1, 1, 1, 1])
    bonds = np.array([[0, 1], [2, 0], [0, 3], [4, 0], [1, 5], [6, 1], [1, 7]])
    assert hydrogen_pairs(z, bonds) == [(2, 0), (3, 0), (4, 0), (5, 1), (6, 1), (7, 1)]
    assert hydrogen_pairs(z, bonds, heavy=7) == [(5, 1), (6, 1), (7, 1)]
    assert hydrogen_pairs(z, bonds, heavy=8) == []
    assert hydrogen_pairs(np.array([1, 1]), np.array([[0, 1]])) == []  # H-H is no X-H bond


def test_added_files_are_named_by_kind_and_kept_out_of_the_shards_they_grow_from(tmp_path, monkeypatch):
    from openmm_tensornet.io.data import write_molecule
    from openmm_tensornet.training.datagen import records_molecule

    monkeypatch.syspath_prepend(str(RECIPE))  # through_space.py imports metrics.py as its sibling
    metrics, through_space = _recipe_script("metrics"), _recipe_script("through_space")
    written = [through_space.SUFFIX, _recipe_script().SUFFIX, *_recipe_script("contacts").SUFFIXES.values()]
    assert sorted(written) == sorted(metrics.ADDED)  # every writer's files have a kind in metrics.py's report
    z = np.array([8, 1, 1])
    rng = np.random.default_rng(0)
    records = [(rng.normal(size=(3, 3)), 0.0, np.zeros((3, 3)), np.zeros(3))
               for _ in range(metrics.FULL_SHARD + metrics.TRANSFERS)]
    for file in ["water.npz", "water+water.npz", *(f"water{suffix}" for suffix in written), "water.partial.npz"]:
        write_molecule(records_molecule("water", z, 0.0, records, "GFN2-xTB"), tmp_path / file)
    found = through_space.full_shards(tmp_path, lambda path: path.name.startswith("water+"))
    assert [path.name for _, path in found] == ["water.npz"]
    for suffix in written:
        assert metrics.sample_kind(0, len(records), f"water{suffix}") == metrics.ADDED[suffix]
    assert metrics.sample_kind(0, len(records), "water.npz") == "300 K MD frame"
    assert metrics.sample_kind(len(records) - 1, len(records), "water.npz") == "hydrogen moved towards another heavy atom"
