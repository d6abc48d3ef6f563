"""MM nonbonded parameters for a ligand the force field cannot template (the ML region's partner in ML/MM).

Inside the ML region TensorNet replaces every MM term, but the ligand's Coulomb and Lennard-Jones interactions with
the protein and water stay MM (mechanical embedding), so they need parameters even when no ligand force field is
available. This generator gives them:

* charges: GFN2-xTB Mulliken charges of the isolated ligand at its input geometry (tblite), summing to the ligand's
  total charge;
* Lennard-Jones: a per-element table close to GAFF2 (polar hydrogens on N, O or S small), :data:`LENNARD_JONES`.

It is an approximation (fixed charges from one geometry, generic LJ): a warning says so. With a real ligand force
field (an ffxml, or a prmtop/inpcrd of the whole system) no generated parameters are used.
"""

from __future__ import annotations

import io
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import openmm.app as app
import openmm.unit as unit

# element symbol -> (sigma nm, epsilon kJ/mol); "H(polar)": hydrogen bonded to N, O or S.
LENNARD_JONES: Dict[str, Tuple[float, float]] = {
    "H": (0.2600, 0.0657), "H(polar)": (0.1069, 0.0657), "C": (0.3400, 0.3598), "N": (0.3250, 0.7113),
    "O": (0.2960, 0.8786), "F": (0.3118, 0.2552), "S": (0.3564, 1.0460), "Cl": (0.3471, 1.1088),
    "Br": (0.3598, 1.3176), "P": (0.3742, 0.8368), "I": (0.3838, 1.6736),
}


class GeneratedLigandParameters:
    """``ForceField.registerTemplateGenerator`` callable for residues no template matches.

    ``positions`` (nm, for the whole topology) give the geometry for the charges; ``charges`` maps residue names
    to their total charge (default 0).
    """

    def __init__(self, topology: app.Topology, positions, charges: Optional[Dict[str, int]] = None,
                 coulomb14scale: float = 0.8333333333333334, lj14scale: float = 0.5):
        self.positions = np.asarray(positions.value_in_unit(unit.nanometer) if hasattr(positions, "value_in_unit")
                                    else positions)
        self.charges = charges or {}
        self.scales = (coulomb14scale, lj14scale)
        self.generated: List[str] = []

    def __call__(self, forcefield: app.ForceField, residue) -> bool:
        atoms = list(residue.atoms())
        if any(atom.element is None for atom in atoms):
            return False
        charge = int(self.charges.get(residue.name, 0))
        partial = _xtb_charges(atoms, self.positions, charge)
        name = f"TNGEN_{residue.name}_{len(self.generated)}"
        types, nonbonded, template = [], [], []
        neighbours = {atom.index: set() for atom in atoms}
        for bond in residue.bonds():
            neighbours[bond[0].index].add(bond[1])
            neighbours[bond[1].index].add(bond[0])
        for atom, q in zip(atoms, partial):
            kind = f"{name}-{atom.name}"
            symbol = atom.element.symbol
            if symbol == "H" and any(n.element is not None and n.element.symbol in ("N", "O", "S")
                                     for n in neighbours[atom.index]):
                symbol = "H(polar)"
            if symbol not in LENNARD_JONES:
                raise ValueError(f"no generic Lennard-Jones parameters for element {atom.element.symbol} (atom "
                                 f"{atom.name} of residue {residue.name}); give a ligand force field (ffxml).")
            sigma, epsilon = LENNARD_JONES[symbol]
            types.append(f'<Type name="{kind}" class="{kind}" element="{atom.element.symbol}" '
                         f'mass="{atom.element.mass.value_in_unit(unit.dalton)}"/>')
            nonbonded.append(f'<Atom type="{kind}" charge="{float(q)!r}" sigma="{sigma}" epsilon="{epsilon}"/>')
            template.append(f'<Atom name="{atom.name}" type="{kind}"/>')
        bonds = [f'<Bond atomName1="{a.name}" atomName2="{b.name}"/>' for a, b in residue.bonds()]
        external = [f'<ExternalBond atomName="{a.name}"/>' for a in atoms
                    if any(n.residue is not residue for n in neighbours[a.index])]
        xml = (f"<ForceField><AtomTypes>{''.join(types)}</AtomTypes><Residues><Residue name=\"{name}\">"
               f"{''.join(template)}{''.join(bonds)}{''.join(external)}</Residue></Residues>"
               f'<NonbondedForce coulomb14scale="{self.scales[0]!r}" lj14scale="{self.scales[1]!r}">'
               f"{''.join(nonbonded)}</NonbondedForce></ForceField>")
        forcefield.loadFile(io.StringIO(xml))
        self.generated.append(residue.name)
        warnings.warn(
            f"residue {residue.name} has no force-field template: its MM nonbonded parameters (used only for its "
            f"interactions with the MM atoms) were generated: GFN2-xTB Mulliken charges (total {charge:+d}) and "
            "generic per-element Lennard-Jones. This is an approximation; pass a ligand ffxml for better ML/MM "
            "coupling.", UserWarning, stacklevel=2)
        return True


def _xtb_charges(atoms, positions: np.ndarray, charge: int) -> np.ndarray:
    from ..training.datagen import XTB

    z = np.array([atom.element.atomic_number for atom in atoms])
    x = positions[[atom.index for atom in atoms]] * 10.0
    xtb = XTB(z, x, charge)
    xtb(x)
    partial = np.asarray(xtb.result.get("charges"), dtype=np.float64)
    return partial - (partial.sum() - charge) / len(partial)  # exact total charge
