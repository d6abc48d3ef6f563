"""``openmm-tensornet generate-data``: sample molecular configurations and label them with GFN2-xTB (tblite).

Sampling, per molecule: Langevin molecular dynamics driven by GFN2-xTB itself (so no force field is needed for an
arbitrary ligand) at ``temperature`` from the input geometry, one frame kept every ``stride`` steps, and for each
kept frame ``perturbations`` copies with random Gaussian displacements (``displacement`` Å, scaled by 1/sqrt(mass)
so hydrogens move more, like normal modes at a higher temperature) for off-equilibrium coverage. Every configuration
is labelled with GFN2-xTB energy, forces and dipole (tblite). Several temperatures run one after another, each
starting from fresh Maxwell-Boltzmann velocities. ``distortions`` adds near-dissociation and compressed geometries:
a random covalent bond of a kept frame stretched to 1.2-1.8x or compressed to 0.75-0.9x its length (the lighter atom
moves), so a model sees the repulsive wall and the start of bond breaking instead of extrapolating there; a
distortion that pushes the moved atom into a third one (closer than 0.75x their covalent radii) is drawn again.
``transfers`` adds hydrogen-transfer geometries: a hydrogen of a kept frame moved straight towards a heavy atom
within 3.2 Å of it that is not bonded to its own atom (another group of the molecule, or its pair partner), until
it is 1.0-1.8 Å from that atom, partway to a proton transfer. Bond distortions never put a hydrogen there; a model
trained without such geometries can lack the energy wall and let a hydrogen jump in MD (an ammonium proton onto an
aromatic carbon, for example).
``contacts`` adds pulls (steered GFN2-xTB MD): from a kept frame, a hydrogen's heavy atom and a heavy atom at least
three bonds away (or in the pair partner) within 3.2 Å of that hydrogen are pulled together by a harmonic spring on
their distance, whose rest length moves from their starting distance to 2.1-2.6 Å over 100 fs of Langevin MD at
300 K; a frame every 10 fs is labelled with GFN2-xTB's own energy and forces (the spring only drives the sampling),
then one copy of the last frame with the hydrogen moved to 1.0-1.8 Å from the other atom (unless it is already
closer). Moving a hydrogen between fixed heavy atoms (``transfers``) never brings the heavy atoms together, and a
folded molecule in MD does both: a group closes in on another while a proton moves over (dopamine's ammonium onto
its ring). A molecule whose MD never brings such a pair within reach gets no pull.
``pull_contact(pulled="hydrogen")`` draws the hydrogen itself onto the other atom (1.0-1.2 Å) instead, the heavy
atoms free to follow: the proton transfer's whole path, where ``transfers`` only moves the hydrogen instantly.
``make_dimers`` builds non-covalent pairs (molecule + water, molecule + molecule) at contact distances. Molecules run in parallel over ``workers`` processes;
each molecule is one shard in the output directory, written atomically, so an interrupted run resumes where it
stopped (finished shards are kept, the rest is redone).

Inputs: PDB, SDF/MOL (formal charges give the total charge), XYZ, or a SMILES file (``.smi``: ``SMILES [name]`` per
line; 3D structures from RDKit's ETKDG + MMFF).
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Collection, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..io.data import DataError, Molecule, read_molecule, write_molecule

BOHR = 0.529177210903  # Å
HARTREE = 27.211386245988  # eV
KB = 8.617333262e-5  # eV / K
ACCELERATION = 9.64853321233e-3  # (eV / Å / amu) in Å / fs^2
DISTORTION_ATTEMPTS = 10  # draws of frame and bond per distortion before it is counted as left out
CLASH_SCALE = 0.75  # x the sum of covalent radii: a moved atom closer than this to a third atom is drawn again
TRANSFER_REACH = 3.2  # Å: heavy atoms this close to a hydrogen are the places it may be moved towards
TRANSFER_DISTANCE = (1.0, 1.8)  # Å: the moved hydrogen's distance to the atom it moved towards
FRICTION = 0.01  # 1/fs: Langevin friction of all xTB MD here
CONTACT_DISTANCE = (2.1, 2.6)  # Å: where a pull's spring ends, between the donor and the acceptor
CONTACT_SPRING = 10.0  # eV/Å^2 on the distance a pull draws in
PROTON_DISTANCE = (1.0, 1.2)  # Å: where a hydrogen pull's spring ends, between the hydrogen and the acceptor
CONTACT_STEPS, CONTACT_STRIDE = 200, 20  # 0.5 fs steps per pull, and between labelled frames
CONTACT_TEMPERATURE = 300.0  # K


@dataclass
class Structure:
    name: str
    z: np.ndarray  # [N]
    positions: np.ndarray  # [N, 3] Å
    charge: int = 0


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name).strip("._") or "molecule"


def load_structures(path, charge: Optional[int] = None) -> List[Structure]:
    """Molecules of an input file (see the module docstring); ``charge`` overrides the total charge."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".pdb":
        import openmm.app as app
        import openmm.unit as unit

        pdb = app.PDBFile(str(path))
        atoms = list(pdb.topology.atoms())
        missing = [a.index for a in atoms if a.element is None]
        if missing:
            raise DataError(f"{path}: atoms {missing[:10]} have no element; fix the element columns.")
        z = np.array([a.element.atomic_number for a in atoms])
        if not (z == 1).any():
            raise DataError(f"{path}: the structure has no hydrogens; add them (e.g. with pdbfixer) first.")
        structures = [Structure(path.stem, z, np.asarray(pdb.positions.value_in_unit(unit.angstrom)), 0)]
    elif suffix in (".sdf", ".mol"):
        from rdkit import Chem

        structures = []
        for index, mol in enumerate(Chem.SDMolSupplier(str(path), removeHs=False)):
            if mol is None:
                raise DataError(f"{path}: record {index} could not be parsed by RDKit.")
            if not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
                raise DataError(f"{path}: record {index} has no hydrogens; add explicit hydrogens with 3D "
                                "coordinates first.")
            name = mol.GetProp("_Name") if mol.HasProp("_Name") and mol.GetProp("_Name") else f"{path.stem}-{index}"
            structures.append(Structure(name, np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
                                        mol.GetConformer().GetPositions(), Chem.GetFormalCharge(mol)))
    elif suffix == ".smi":
        structures = [_from_smiles(line, path, number) for number, line in enumerate(path.read_text().splitlines())
                      if line.strip() and not line.lstrip().startswith("#")]
    elif suffix == ".xyz":
        from ase.io import read

        structures = [Structure(f"{path.stem}-{k}" if k else path.stem, a.get_atomic_numbers(), a.get_positions(),
                                int(a.info.get("charge", 0))) for k, a in enumerate(read(str(path), index=":"))]
    else:
        raise DataError(f"{path}: unsupported input type '{suffix}'; use .pdb, .sdf, .mol, .xyz or .smi.")
    if charge is not None:
        for structure in structures:
            structure.charge = int(charge)
    return structures


def _from_smiles(line: str, path: Path, number: int) -> Structure:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    fields = line.split()
    mol = Chem.MolFromSmiles(fields[0])
    if mol is None:
        raise DataError(f"{path}: line {number + 1}: RDKit cannot parse the SMILES '{fields[0]}'.")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=number + 1) != 0:
        raise DataError(f"{path}: line {number + 1}: RDKit could not make 3D coordinates for '{fields[0]}'.")
    AllChem.MMFFOptimizeMolecule(mol)
    name = fields[1] if len(fields) > 1 else f"{path.stem}-{number}"
    return Structure(name, np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
                     mol.GetConformer().GetPositions(), Chem.GetFormalCharge(mol))


class XTB:
    """GFN2-xTB single points in Å/eV through tblite (energy, forces, dipole)."""

    def __init__(self, z: np.ndarray, positions: np.ndarray, charge: int):
        from tblite.interface import Calculator

        electrons = int(np.sum(z)) - int(charge)
        self.calculator = Calculator("GFN2-xTB", np.asarray(z), np.asarray(positions) / BOHR, charge=float(charge),
                                     uhf=electrons % 2)
        self.calculator.set("verbosity", 0)
        self.result = None

    def __call__(self, positions: np.ndarray):
        self.calculator.update(np.asarray(positions) / BOHR)
        self.result = self.calculator.singlepoint(self.result) if self.result is not None \
            else self.calculator.singlepoint()
        energy = float(self.result.get("energy")) * HARTREE
        forces = -np.asarray(self.result.get("gradient")) * HARTREE / BOHR
        dipole = np.asarray(self.result.get("dipole")) * BOHR
        return energy, forces, dipole


def _temperatures(temperature: Union[float, Sequence[float]]) -> List[float]:
    values = [float(t) for t in (temperature if isinstance(temperature, (list, tuple)) else [temperature])]
    if not values or min(values) <= 0:
        raise DataError(f"temperatures must be positive kelvin values, got {values}.")
    return values


def covalent_bonds(z: np.ndarray, positions: np.ndarray, tolerance: float = 1.2) -> np.ndarray:
    """[B, 2] atom pairs closer than ``tolerance`` x the sum of their covalent radii (RDKit's table)."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(int(n)) for n in z])
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    i, j = np.nonzero(np.triu(distance < tolerance * (radii[:, None] + radii[None]), k=1))
    return np.stack([i, j], axis=1)


def _fixed_and_moved(masses: np.ndarray, bond) -> Tuple[int, int]:
    return (int(bond[0]), int(bond[1])) if masses[bond[1]] <= masses[bond[0]] else (int(bond[1]), int(bond[0]))


def clashes(positions: np.ndarray, z: np.ndarray, masses: np.ndarray, bond, scale: float = CLASH_SCALE) -> bool:
    """Whether the atom :func:`distort_bond` moved came closer than ``scale`` x the sum of covalent radii to an
    atom other than its bond partner (it was pushed into a third atom: a geometry MD never visits, with forces of
    thousands of eV/Å)."""
    i, j = _fixed_and_moved(masses, bond)
    return _too_close(positions, z, j, (i, j), scale)


def _too_close(positions: np.ndarray, z: np.ndarray, atom: int, exempt, scale: float) -> bool:
    """Whether ``atom`` is closer than ``scale`` x the sum of covalent radii to an atom not in ``exempt``."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    others = np.array([k for k in range(len(z)) if k not in exempt], dtype=int)
    if len(others) == 0:
        return False
    limit = scale * (table.GetRcovalent(int(z[atom])) + np.array([table.GetRcovalent(int(z[k])) for k in others]))
    return bool((np.linalg.norm(positions[others] - positions[atom], axis=1) < limit).any())


def hydrogen_pairs(z: np.ndarray, bonds: np.ndarray, heavy: Optional[int] = None) -> List[Tuple[int, int]]:
    """(hydrogen, its bonded heavy atom) for every X-H bond of ``bonds`` ([B, 2] atom pairs, either order), in bond
    order; only those whose heavy atom has atomic number ``heavy``, when given."""
    pairs = []
    for i, j in np.asarray(bonds, dtype=int).reshape(-1, 2):
        if (z[i] == 1) != (z[j] == 1):
            hydrogen, atom = (int(i), int(j)) if z[i] == 1 else (int(j), int(i))
            if heavy is None or z[atom] == heavy:
                pairs.append((hydrogen, atom))
    return pairs


def transfer_candidates(positions: np.ndarray, z: np.ndarray, bonds: np.ndarray, separation: int = 2
                        ) -> List[Tuple[int, int, int]]:
    """(hydrogen, its bonded heavy atom, acceptor) triples: an acceptor is a heavy atom within ``TRANSFER_REACH`` of
    the hydrogen at least ``separation`` bonds from the hydrogen's own atom (or in another molecule), so the move
    goes through space (another group, another molecule), not a 1,2-shift onto the next atom of the chain. With
    ``separation=3`` the 1,3-shifts (onto the atom two bonds away, which every chain offers) are left out too and
    only folded-back groups and pair partners remain."""
    if separation < 2:
        raise ValueError(f"separation must be at least 2 bonds (1 is a heavy atom bonded to the hydrogen's own "
                         f"atom: a 1,2-shift along the chain); got {separation}.")
    pairs = np.asarray(bonds, dtype=int).reshape(-1, 2)
    neighbours = {int(a): set() for a in range(len(z))}
    for i, j in pairs:
        neighbours[int(i)].add(int(j))
        neighbours[int(j)].add(int(i))
    found = []
    for hydrogen, donor in hydrogen_pairs(z, pairs):
        near, shell = {donor}, {donor}
        for _ in range(separation - 1):  # the atoms fewer than ``separation`` bonds from the donor
            shell = {b for a in shell for b in neighbours[a]} - near
            near |= shell
        distance = np.linalg.norm(positions - positions[hydrogen], axis=1)
        found += [(hydrogen, donor, int(k)) for k in np.flatnonzero((z > 1) & (distance < TRANSFER_REACH))
                  if int(k) not in near]
    return found


def transfer_geometry(frames: Sequence[np.ndarray], z: np.ndarray, bonds: np.ndarray, rng, separation: int = 2
                      ) -> Optional[np.ndarray]:
    """One hydrogen-transfer geometry (module doc) from a random frame of ``frames``: a random candidate of
    :func:`transfer_candidates` moved to ``TRANSFER_DISTANCE`` from its acceptor, drawn again (another frame and
    candidate) when the frame has none or the hydrogen lands on a third atom; None when no draw works."""
    for _ in range(DISTORTION_ATTEMPTS):
        frame = frames[rng.integers(len(frames))]
        candidates = transfer_candidates(frame, z, bonds, separation)
        if not candidates:
            continue
        hydrogen, donor, acceptor = candidates[rng.integers(len(candidates))]
        moved = move_hydrogen(frame, hydrogen, acceptor, rng.uniform(*TRANSFER_DISTANCE))
        if not _too_close(moved, z, hydrogen, (hydrogen, donor, acceptor), CLASH_SCALE):
            return moved
    return None


def move_hydrogen(positions: np.ndarray, hydrogen: int, acceptor: int, distance: float) -> np.ndarray:
    """A copy of ``positions`` with ``hydrogen`` moved straight towards ``acceptor`` until ``distance`` Å from it
    (never past it: a hydrogen already closer stays where it is)."""
    moved = positions.copy()
    offset = positions[hydrogen] - positions[acceptor]
    length = float(np.linalg.norm(offset))
    moved[hydrogen] = positions[acceptor] + offset * min(1.0, distance / length)
    return moved


def distort_bond(positions: np.ndarray, masses: np.ndarray, bond, factor: float) -> np.ndarray:
    """A copy of ``positions`` with ``bond`` scaled to ``factor`` x its length by moving its lighter atom."""
    i, j = _fixed_and_moved(masses, bond)
    moved = positions.copy()
    moved[j] = positions[i] + factor * (positions[j] - positions[i])
    return moved


def sample_and_label(structure: Structure, frames: int = 20, stride: int = 10, perturbations: int = 4,
                     temperature: Union[float, Sequence[float]] = 500.0, displacement: float = 0.05,
                     timestep: float = 0.5, seed: int = 0, distortions: int = 0, transfers: int = 0,
                     contacts: int = 0) -> Molecule:
    """``frames x (1 + perturbations)`` labelled configurations per temperature, then ``distortions``, then
    ``transfers``, then ``contacts`` pulls (module doc)."""
    rng = np.random.default_rng(seed)
    z = np.asarray(structure.z)
    masses = atomic_masses(z)
    xtb = XTB(z, structure.positions, structure.charge)
    x = np.array(structure.positions, dtype=np.float64)
    bonds = covalent_bonds(z, x)
    records, md_frames, failures = [], [], 0
    energy, forces, dipole = xtb(x)
    for temperature_k in _temperatures(temperature):
        sigma_v, c1, c2 = _thermostat(masses, temperature_k, timestep)
        v = rng.normal(size=x.shape) * sigma_v
        lost, forces = _langevin(xtb, x, v, forces, masses, sigma_v, c1, c2, timestep, frames, stride,
                                 perturbations, displacement, rng, records, md_frames)
        failures += lost
    for k in range(distortions if len(bonds) and md_frames else 0):
        factor = rng.uniform(0.75, 0.9) if k % 3 == 2 else rng.uniform(1.2, 1.8)
        for _ in range(DISTORTION_ATTEMPTS):  # another frame and bond when the moved atom hits a third one
            frame = md_frames[rng.integers(len(md_frames))]
            bond = bonds[rng.integers(len(bonds))]
            moved = distort_bond(frame, masses, bond, factor)
            if not clashes(moved, z, masses, bond):
                break
        else:
            failures += 1
            continue
        failures += label(xtb, moved, records)
    for _ in range(transfers if md_frames else 0):
        moved = transfer_geometry(md_frames, z, bonds, rng)
        failures += 1 if moved is None else label(xtb, moved, records)
    for _ in range(contacts if md_frames else 0):
        lost = pull_contact(xtb, md_frames, z, bonds, rng, records)
        if lost is None:
            break  # nothing within reach of a group three or more bonds away: no pull for this molecule
        failures += lost
    from importlib.metadata import version

    tblite_version = version("tblite")

    molecule = records_molecule(structure.name, z, structure.charge, records, f"GFN2-xTB (tblite {tblite_version})")
    molecule.failures = failures  # type: ignore[attr-defined]
    return molecule


def atomic_masses(z: np.ndarray) -> np.ndarray:
    """Masses (amu) of atomic numbers ``z``."""
    from openmm.app import element as elements

    return np.array([elements.Element.getByAtomicNumber(int(n)).mass._value for n in z])


def pull_contact(xtb, frames: Sequence[np.ndarray], z: np.ndarray, bonds: np.ndarray, rng, records: list,
                 steps: int = CONTACT_STEPS, stride: int = CONTACT_STRIDE,
                 temperature: float = CONTACT_TEMPERATURE, timestep: float = 0.5,
                 pulled: str = "donor", candidate: Optional[Tuple[int, int, int]] = None) -> Optional[int]:
    """One pull (module doc) from a random frame of ``frames`` among those with a through-space candidate
    (:func:`transfer_candidates` with ``separation=3``): ``steps // stride`` frames of steered GFN2-xTB MD and a copy
    of the last with the hydrogen moved 1.0-1.8 Å from the acceptor (left out when it is already closer than 1.0 Å,
    or lands on a third atom), appended to ``records`` with unbiased labels. A pair that starts closer than the
    drawn end distance is held where it is. Returns the MD frames lost to an SCF failure (it ends the pull, keeping
    the frames so far), or None when no frame of ``frames`` has a candidate.

    ``pulled="hydrogen"``: the spring draws the hydrogen itself to 1.0-1.2 Å from the acceptor (the proton transfer's
    path, with every heavy atom free to follow) instead of its heavy atom to 2.1-2.6 Å; no moved copy is added.
    ``candidate``: the (hydrogen, its heavy atom, acceptor) to pull, from a random frame of ``frames``, instead of a
    random through-space candidate (to sample one known path, such as a stability run's break)."""
    if stride < 1 or steps < stride or steps % stride:
        raise ValueError(f"steps ({steps}) must be a positive multiple of stride ({stride}).")
    if pulled not in ("donor", "hydrogen"):
        raise ValueError(f'pulled must be "donor" (the hydrogen\'s heavy atom) or "hydrogen"; got {pulled!r}.')
    if candidate is not None:
        start, (hydrogen, donor, acceptor) = frames[rng.integers(len(frames))], candidate
    else:
        usable = [(frame, found) for frame in frames
                  if (found := transfer_candidates(frame, z, bonds, separation=3))]
        if not usable:
            return None
        start, candidates = usable[rng.integers(len(usable))]
        hydrogen, donor, acceptor = candidates[rng.integers(len(candidates))]
    masses = atomic_masses(z)
    x = np.array(start, dtype=np.float64)
    moving, ends = (donor, CONTACT_DISTANCE) if pulled == "donor" else (hydrogen, PROTON_DISTANCE)
    begin = float(np.linalg.norm(x[moving] - x[acceptor]))
    end = min(begin, rng.uniform(*ends))

    def spring(positions: np.ndarray, step: int) -> np.ndarray:  # step: MD steps done at ``positions``
        rest = begin + (end - begin) * min(1.0, step / steps)
        offset = positions[moving] - positions[acceptor]
        distance = float(np.linalg.norm(offset))
        force = np.zeros_like(positions)
        force[moving] = -CONTACT_SPRING * (distance - rest) * offset / distance
        force[acceptor] = -force[moving]
        return force

    sigma_v, c1, c2 = _thermostat(masses, temperature, timestep)
    before = len(records)
    try:
        xtb.result = None
        _, forces, _ = xtb(x)
        _langevin(xtb, x, rng.normal(size=x.shape) * sigma_v, forces, masses, sigma_v, c1, c2, timestep,
                  steps // stride, stride, 0, 0.0, rng, records, [], bias=spring)
    except Exception:  # noqa: BLE001 - SCF failure along the pull: counted; the frames so far are kept
        return steps // stride - (len(records) - before)
    reach = float(np.linalg.norm(x[hydrogen] - x[acceptor]))
    if pulled == "hydrogen" or reach <= TRANSFER_DISTANCE[0]:
        return 0  # the pull moved it over already
    moved = move_hydrogen(x, hydrogen, acceptor, rng.uniform(TRANSFER_DISTANCE[0], min(TRANSFER_DISTANCE[1], reach)))
    if _too_close(moved, z, hydrogen, (hydrogen, donor, acceptor), CLASH_SCALE):
        return 0
    label(xtb, moved, records)  # an SCF failure there appends nothing
    return 0


def records_molecule(name: str, z: np.ndarray, charge: float, records: list, method: str) -> Molecule:
    """A :class:`Molecule` of ``records``: (positions, energy, forces, dipole) tuples as :func:`label` appends them."""
    return Molecule(name=name, z=z, positions=np.array([r[0] for r in records]),
                    energy=np.array([r[1] for r in records]), forces=np.array([r[2] for r in records]),
                    charge=float(charge), dipole=np.array([r[3] for r in records]), method=method)


def label(xtb, positions: np.ndarray, records: list) -> int:
    """Append ``positions`` with its GFN2-xTB labels to ``records``; 1 if the SCF failed there (nothing appended)."""
    try:
        xtb.result = None
        records.append((positions, *xtb(positions)))
        return 0
    except Exception:  # noqa: BLE001 - SCF failure at a distorted geometry: counted and reported
        return 1


def _thermostat(masses: np.ndarray, temperature: float, timestep: float) -> Tuple[np.ndarray, float, float]:
    """(thermal velocity spread per atom [N, 1] in Å/fs, c1, c2) of the xTB MD's Langevin (``FRICTION``) at
    ``temperature`` K with ``timestep`` fs steps."""
    c1 = np.exp(-FRICTION * timestep)
    return np.sqrt(KB * temperature / masses * ACCELERATION)[:, None], c1, np.sqrt(1.0 - c1 * c1)


def _langevin(xtb, x, v, forces, masses, sigma_v, c1, c2, timestep, frames, stride, perturbations, displacement, rng,
              records, md_frames, bias=None):
    """BAOAB Langevin MD in place on ``x``; appends kept frames (and to ``md_frames``) and their displaced copies.

    ``bias(x, step)``: extra forces at ``x`` after ``step`` MD steps that drive the MD but are not part of the
    labels.
    Returns (configurations lost to SCF failures, forces at the final ``x``).
    """
    failures = 0
    drive = forces if bias is None else forces + bias(x, 0)
    for step in range(frames * stride):
        # BAOAB Langevin step.
        v += 0.5 * timestep * drive / masses[:, None] * ACCELERATION
        x += 0.5 * timestep * v
        v *= c1  # in place: the caller sees the final velocities
        v += c2 * sigma_v * rng.normal(size=x.shape)
        x += 0.5 * timestep * v
        energy, forces, dipole = xtb(x)
        drive = forces if bias is None else forces + bias(x, step + 1)
        v += 0.5 * timestep * drive / masses[:, None] * ACCELERATION
        if (step + 1) % stride == 0:
            records.append((x.copy(), energy, forces.copy(), dipole.copy()))
            md_frames.append(x.copy())
            scale = displacement * np.sqrt(masses.min() / masses)[:, None]
            for _ in range(perturbations):
                moved = x + rng.normal(size=x.shape) * scale
                try:
                    records.append((moved, *xtb(moved)))
                except Exception:  # noqa: BLE001 - SCF failure at a distorted geometry: counted and reported
                    failures += 1
                    xtb.result = None
            if perturbations:
                xtb.result = None
                xtb(x)  # the next MD step starts its SCF from the trajectory, not a distorted copy
    return failures, forces


WATER = Structure("water", np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0],
                                                          [-0.2400, 0.9266, 0.0]]), 0)


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def place_pair(first: Structure, second: Structure, contact: float, rng) -> Structure:
    """``first`` and a randomly rotated ``second`` whose closest atoms are ``contact`` Å apart (random direction)."""
    a = first.positions - first.positions.mean(axis=0)
    b = (second.positions - second.positions.mean(axis=0)) @ _random_rotation(rng).T
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)

    def closest(shift: float) -> float:
        return float(np.linalg.norm(a[:, None] - (b + shift * direction)[None], axis=-1).min())

    low, high = 0.0, float(np.ptp(a, axis=0).max() + np.ptp(b, axis=0).max() + contact + 1.0)
    for _ in range(60):  # the closest distance grows with the shift once the two are apart: bisect on it
        middle = 0.5 * (low + high)
        low, high = (middle, high) if closest(middle) < contact else (low, middle)
    return Structure(f"{first.name}+{second.name}", np.concatenate([first.z, second.z]),
                     np.concatenate([a, b + high * direction]), first.charge + second.charge)


def make_dimers(structures: Sequence[Structure], count: int, max_atoms: int = 30, seed: int = 0,
                contact=(1.8, 3.0)) -> List[Structure]:
    """``count`` non-covalent pairs: even ones molecule + water, odd ones molecule + another molecule.

    Partners are drawn (seeded) from the structures with at most ``max_atoms`` atoms; the closest atoms of the pair
    are ``contact`` Å apart (uniform in the range: hydrogen-bond to van der Waals distances).
    """
    pool = [s for s in structures if len(s.z) <= max_atoms]
    if count and not pool:
        raise DataError(f"no molecule has at most {max_atoms} atoms to build dimers from; raise the limit.")
    rng = np.random.default_rng(seed)
    dimers = []
    for k in range(count):
        first = pool[rng.integers(len(pool))]
        second = WATER if k % 2 == 0 else pool[rng.integers(len(pool))]
        dimers.append(place_pair(first, second, rng.uniform(*contact), rng))
    return dimers


def _work(job):
    structure, path, settings = job
    start = time.time()
    molecule = sample_and_label(structure, **settings)
    write_molecule(molecule, path)
    return structure.name, len(molecule), getattr(molecule, "failures", 0), time.time() - start


def generate_data(inputs: Sequence, output, frames: int = 20, stride: int = 10, perturbations: int = 4,
                  temperature: Union[float, Sequence[float]] = 500.0, displacement: float = 0.05,
                  workers: Optional[int] = None, seed: int = 0, charge: Optional[int] = None, distortions: int = 0,
                  dimers: int = 0, dimer_max_atoms: int = 30, transfers: int = 0, contacts: int = 0,
                  only: Optional[Collection[str]] = None, log=print) -> List[Path]:
    """Label every molecule of ``inputs`` (and ``dimers`` pairs of them) into ``output``. Returns the shard paths.

    Shards that already exist and read back cleanly are kept (resume); the others are (re)computed. ``only``: label
    just the molecules and pairs of these names, each with the seed it has in the whole set, so a subset repeats
    the whole run's configurations for those molecules (the samples added by a larger ``transfers`` or ``contacts``
    come after).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    _temperatures(temperature)
    structures = [s for path in inputs for s in load_structures(path, charge)]
    if not structures:
        raise DataError("no molecules found in the inputs.")
    structures += make_dimers(structures, dimers, dimer_max_atoms, seed)
    wanted = None if only is None else set(only)
    if wanted is not None:
        unknown = wanted - {s.name for s in structures}
        if unknown:
            raise DataError(f"only: {len(unknown)} names are not molecules or pairs of the inputs (e.g. "
                            f"{sorted(unknown)[:3]}); names are the inputs' molecule names, pairs 'first+second'.")
    jobs, paths, used = [], [], set()
    for index, structure in enumerate(structures):
        name = _safe_name(structure.name)
        while name in used:
            name += "_"
        used.add(name)
        if wanted is not None and structure.name not in wanted:
            continue
        path = output / f"{name}.npz"
        paths.append(path)
        if path.exists():
            try:
                read_molecule(path)
                log(f"{name}: already done ({path.name}), kept")
                continue
            except DataError as error:
                log(f"{name}: redoing an unreadable shard ({error})")
        settings = dict(frames=frames, stride=stride, perturbations=perturbations, temperature=temperature,
                        displacement=displacement, seed=seed + index, distortions=distortions,
                        transfers=transfers, contacts=contacts)
        jobs.append((structure, path, settings))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if jobs:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker process
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:  # (fork + OpenMP can hang)
            for done, (name, count, failures, seconds) in enumerate(pool.map(_work, jobs), start=1):
                note = (f", {failures} configurations left out (no SCF convergence, or no distortion or transfer "
                        "free of clashes)") if failures else ""
                log(f"[{done}/{len(jobs)}] {name}: {count} configurations in {seconds:.1f} s{note}")
    return paths
