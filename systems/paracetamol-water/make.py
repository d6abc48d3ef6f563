"""Rebuild systems/paracetamol-water/input.pdb (see README.md)."""

from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as unit
from rdkit import Chem
from rdkit.Chem import AllChem

from openmm_tensornet.ligand_parameters import GeneratedLigandParameters

mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
AllChem.EmbedMolecule(mol, randomSeed=7)
AllChem.MMFFOptimizeMolecule(mol)
topology = app.Topology()
residue = topology.addResidue("LIG", topology.addChain())
counts = {}
atoms = []
for atom in mol.GetAtoms():
    symbol = atom.GetSymbol()
    counts[symbol] = counts.get(symbol, 0) + 1
    atoms.append(topology.addAtom(f"{symbol}{counts[symbol]}", app.Element.getBySymbol(symbol), residue))
for bond in mol.GetBonds():
    topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
positions = mol.GetConformer().GetPositions() / 10.0
forcefield = app.ForceField("amber14-all.xml", "amber14/tip3pfb.xml")
forcefield.registerTemplateGenerator(GeneratedLigandParameters(topology, positions))
modeller = app.Modeller(topology, positions * unit.nanometer)
modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(2.8, 2.8, 2.8) * unit.nanometer, neutralize=False)
with open(Path(__file__).with_name("input.pdb"), "w") as handle:
    app.PDBFile.writeFile(modeller.topology, modeller.positions, handle, keepIds=True)
print(modeller.topology.getNumAtoms(), "atoms")
