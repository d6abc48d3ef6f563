"""Reference data on disk: one documented format, readers, and checks that name the file and record.

Format (``docs/data-format.md``): a data set is a directory of ``.npz`` shards, one per molecule (same atoms in the
same order in every record of a shard), written atomically. Arrays of a shard:

========== ============ ====== ==================================================
key        shape        dtype  meaning
========== ============ ====== ==================================================
z          [N]          int64  atomic numbers
positions  [M, N, 3]    float  positions, Å
energy     [M]          float  total energy, eV
forces     [M, N, 3]    float  forces (-dE/dr), eV/Å
charge     []           float  total charge, e
dipole     [M, 3]       float  optional: dipole moment, e·Å
polarizability [M, 3, 3] float optional: polarisability tensor, Å^3
name       []           str    the molecule's name (split keys: records of one name stay in one split)
method     []           str    optional: how the labels were computed (e.g. "GFN2-xTB (tblite 0.8.0)")
========== ============ ====== ==================================================

``read_extxyz`` converts ASE-readable files (extended XYZ with energies and forces, e.g. DFT data) into the same
records, one shard per distinct molecule (same atoms in the same order).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

MAX_Z = 118
PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """Bad reference data; the message names the file and the record."""


@dataclass
class Molecule:
    """The records of one molecule: ``M`` configurations of the same ``N`` atoms (Å, eV, eV/Å, e, e·Å)."""

    name: str
    z: np.ndarray
    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    charge: float = 0.0
    dipole: Optional[np.ndarray] = None
    method: str = ""
    polarizability: Optional[np.ndarray] = None
    source: str = field(default="", compare=False)

    def __len__(self) -> int:
        return int(self.energy.shape[0])

    def check(self) -> "Molecule":
        """Raise :class:`DataError` naming ``source`` and the record for anything unusable."""
        where = self.source or self.name
        z = np.asarray(self.z)
        if z.ndim != 1 or z.size == 0:
            raise DataError(f"{where}: z must be a non-empty 1-D array of atomic numbers; got shape {z.shape}.")
        bad = [int(v) for v in z if not 1 <= int(v) <= MAX_Z]
        if bad:
            raise DataError(f"{where}: unknown element(s) with atomic number {sorted(set(bad))}; atomic numbers must "
                            f"be 1..{MAX_Z}.")
        n, m = z.size, int(np.asarray(self.energy).shape[0]) if np.ndim(self.energy) == 1 else -1
        if m < 0:
            raise DataError(f"{where}: energy must be 1-D (one per record); got shape {np.shape(self.energy)}.")
        expected = {"positions": (m, n, 3), "forces": (m, n, 3)}
        if self.dipole is not None:
            expected["dipole"] = (m, 3)
        if self.polarizability is not None:
            expected["polarizability"] = (m, 3, 3)
        for key, shape in expected.items():
            got = np.shape(getattr(self, key))
            if got != shape:
                raise DataError(f"{where}: {key} has shape {got} but {m} records of {n} atoms need {shape}.")
        for key in ("positions", "energy", "forces", "dipole", "polarizability"):
            values = getattr(self, key)
            if values is None:
                continue
            finite = np.isfinite(np.asarray(values)).reshape(m, -1).all(axis=1)
            if not finite.all():
                record = int(np.flatnonzero(~finite)[0])
                raise DataError(f"{where}: record {record} has NaN or infinite {key}; remove it or fix the source.")
        if not np.isfinite(self.charge) or abs(self.charge - round(self.charge)) > 1e-6:
            raise DataError(f"{where}: total charge must be an integer number of e; got {self.charge}.")
        return self


def write_molecule(molecule: Molecule, path: PathLike) -> Path:
    """Write one shard atomically (a crash never leaves a half-written file that looks complete)."""
    molecule.check()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: Dict[str, np.ndarray] = dict(
        z=np.asarray(molecule.z, dtype=np.int64), positions=np.asarray(molecule.positions, dtype=np.float64),
        energy=np.asarray(molecule.energy, dtype=np.float64), forces=np.asarray(molecule.forces, dtype=np.float64),
        charge=np.asarray(float(molecule.charge)), name=np.asarray(molecule.name), method=np.asarray(molecule.method))
    if molecule.dipole is not None:
        arrays["dipole"] = np.asarray(molecule.dipole, dtype=np.float64)
    if molecule.polarizability is not None:
        arrays["polarizability"] = np.asarray(molecule.polarizability, dtype=np.float64)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial.npz")
    os.close(handle)
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def read_molecule(path: PathLike) -> Molecule:
    """Read and check one shard."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("z", "positions", "energy", "forces") if key not in data]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; see docs/data-format.md.")
            molecule = Molecule(
                name=str(data["name"]) if "name" in data else path.stem, z=data["z"].astype(np.int64),
                positions=data["positions"], energy=data["energy"], forces=data["forces"],
                charge=float(data["charge"]) if "charge" in data else 0.0,
                dipole=data["dipole"] if "dipole" in data else None,
                method=str(data["method"]) if "method" in data else "", source=str(path),
                polarizability=data["polarizability"] if "polarizability" in data else None)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - not an npz, truncated, ...
        raise DataError(f"{path}: cannot be read as a data shard ({type(error).__name__}: {error}).") from None
    return molecule.check()


def read_dataset(path: Union[PathLike, Sequence[PathLike]]) -> List[Molecule]:
    """All molecules of a data set: a directory of shards, a single ``.npz`` shard, or an extended-XYZ file; or a
    list of those, read in order (a molecule's records from several places keep its name, so a split by molecule
    keeps them together)."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise DataError("the data set is an empty list; name at least one directory or file.")
        return [molecule for part in path for molecule in read_dataset(part)]
    path = Path(path)
    if path.is_dir():
        shards = sorted(p for p in path.glob("*.npz") if not p.name.endswith(".partial.npz"))
        if not shards:
            raise DataError(f"{path}: no .npz shards in this directory.")
        return [read_molecule(shard) for shard in shards]
    if not path.exists():
        raise DataError(f"{path}: no such file or directory.")
    if path.suffix == ".npz":
        return [read_molecule(path)]
    return read_extxyz(path)


def read_extxyz(path: PathLike, energy_key: str = "energy", forces_key: str = "forces",
                charge_key: str = "charge", energy_unit: str = "eV") -> List[Molecule]:
    """Records from an ASE-readable file (extended XYZ, ...) with energies and forces, grouped by molecule.

    ``energy_unit``: the unit of the file's energies (forces: that unit per Å). Frames whose atoms differ (another
    molecule, or another order) start a new group.
    """
    from ase.io import read

    from ..units import KJ_PER_MOL

    path = Path(path)
    try:
        frames = read(str(path), index=":")
    except Exception as error:  # noqa: BLE001
        raise DataError(f"{path}: not readable by ase.io.read ({type(error).__name__}: {error}).") from None
    scale = KJ_PER_MOL[energy_unit] / KJ_PER_MOL["eV"]
    groups: List[Dict[str, list]] = []
    for index, atoms in enumerate(frames):
        z = atoms.get_atomic_numbers()
        try:
            energy = _frame_value(atoms, energy_key, "energy")
            forces = _frame_value(atoms, forces_key, "forces")
        except KeyError as missing:
            raise DataError(f"{path}: record {index} has no {missing.args[0]} (looked for '{energy_key}' / "
                            f"'{forces_key}' in info/arrays and the attached calculator).") from None
        charge = float(atoms.info.get(charge_key, 0.0))
        if not groups or not np.array_equal(groups[-1]["z"], z) or groups[-1]["charge"] != charge:
            groups.append(dict(z=z, charge=charge, positions=[], energy=[], forces=[], first=index))
        group = groups[-1]
        group["positions"].append(atoms.get_positions())
        group["energy"].append(float(energy) * scale)
        group["forces"].append(np.asarray(forces, dtype=np.float64) * scale)
    molecules = []
    for number, group in enumerate(groups):
        molecule = Molecule(
            name=f"{path.stem}-{number}", z=np.asarray(group["z"]), positions=np.asarray(group["positions"]),
            energy=np.asarray(group["energy"]), forces=np.asarray(group["forces"]), charge=group["charge"],
            method=f"from {path.name}", source=f"{path} (records from {group['first']})")
        molecules.append(molecule.check())
    return molecules


def _frame_value(atoms, key: str, kind: str):
    if kind == "energy" and key in atoms.info:
        return atoms.info[key]
    if kind == "forces" and key in atoms.arrays:
        return atoms.arrays[key]
    if atoms.calc is not None:
        try:
            return atoms.get_potential_energy() if kind == "energy" else atoms.get_forces()
        except Exception:  # noqa: BLE001 - no such property
            pass
    raise KeyError(kind)


def split_by_molecule(molecules: Iterable[Molecule], fractions=(0.8, 0.1, 0.1), seed: int = 0):
    """Train/validation/test lists; all records of one molecule name land in the same split."""
    molecules = list(molecules)
    names = sorted({m.name for m in molecules})
    order = np.random.default_rng(seed).permutation(len(names))
    total = float(sum(fractions))
    cuts = np.cumsum([f / total for f in fractions])[:-1] * len(names)
    cuts = [int(round(c)) for c in cuts]
    if len(names) >= 3:  # every split gets at least one molecule when there are enough
        cuts[0] = min(max(cuts[0], 1), len(names) - 2)
        cuts[1] = min(max(cuts[1], cuts[0] + 1), len(names) - 1)
    ranked = [names[i] for i in order]
    which = {name: (0 if rank < cuts[0] else 1 if rank < cuts[1] else 2) for rank, name in enumerate(ranked)}
    splits: List[List[Molecule]] = [[], [], []]
    for molecule in molecules:
        splits[which[molecule.name]].append(molecule)
    return splits
