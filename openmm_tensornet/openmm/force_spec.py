"""What an ML force computes, as one typed value: :class:`ForceSpec`.

Both backends (:func:`openmm_tensornet.create_torch_force`, :func:`openmm_tensornet.create_python_force`), the
TorchScript export and ``TensorNetPotential`` describe the force with a ``ForceSpec``. It is checked once, when it
is made (its own fields) and once against the model (:meth:`ForceSpec.for_model`: elements covered, neighbour
capacity sized), so the layers below it receive checked values and do not check again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Optional, Tuple

from ..elements import ELEMENTS

__all__ = ["ForceSpec", "estimate_neighbor_capacity"]

# Densest packing assumed for a molecule (a region inside an MM system): 0.15 atoms / A^3, above any condensed phase
# of organic or biological matter (water 0.100, proteins ~0.11-0.12, benzene crystal ~0.12).
_DENSEST = 150.0  # atoms / nm^3
_CAPACITY_MARGIN = 1.3


@dataclass(frozen=True)
class ForceSpec:
    """The ML atoms of a System and how OpenMM calls the force that evaluates them.

    ``atomic_numbers``: one per ML atom, in the order of ``atoms`` (the ML atoms' particle indices; ``None`` when
    the System holds only ML atoms). ``total_charge`` (e) of the ML region. ``periodic``: the ML atoms *are* the
    periodic system (minimum-image pairs); a region inside a periodic MM system is not periodic but ``uses_box``
    (default: ``periodic``), so the force receives the box to make the region whole. ``force_group`` 0-31.
    ``num_particles`` of the System, to check ``atoms``. ``neighbor_capacity``: most ordered neighbour pairs (None:
    no bound, unless static shapes need one). ``box_vectors`` (nm) size that capacity for a periodic ML system.
    ``global_parameter``: the force's energy is that parameter x E_ML. ``bonds``: pairs of particle indices, the
    region's covalent bonds (from the topology), along which a region in a periodic box is made whole; without
    them the region must span less than half the box.
    """

    atomic_numbers: Tuple[int, ...]
    atoms: Optional[Tuple[int, ...]] = None
    total_charge: float = 0.0
    periodic: bool = False
    uses_box: Optional[bool] = None
    force_group: int = 0
    num_particles: Optional[int] = None
    neighbor_capacity: Optional[int] = None
    box_vectors: Any = None
    global_parameter: Optional[str] = None
    bonds: Tuple[Tuple[int, int], ...] = ()

    def __post_init__(self):
        numbers = tuple(int(z) for z in self.atomic_numbers)
        object.__setattr__(self, "atomic_numbers", numbers)
        if not numbers:
            raise ValueError("atomic_numbers is empty: the ML region must contain at least one atom.")
        if self.atoms is not None:
            selection = tuple(int(a) for a in self.atoms)
            object.__setattr__(self, "atoms", selection)
            if len(selection) != len(numbers):
                raise ValueError(f"atoms has {len(selection)} entries but atomic_numbers has {len(numbers)}; give one "
                                 "atomic number per ML atom, in the order of atoms.")
            if len(set(selection)) != len(selection):
                raise ValueError("atoms contains duplicate indices.")
            if min(selection) < 0 or (self.num_particles is not None and max(selection) >= self.num_particles):
                raise ValueError(f"atoms must be particle indices in [0, {self.num_particles}); got min "
                                 f"{min(selection)}, max {max(selection)}.")
        pairs = tuple((int(i), int(j)) for i, j in self.bonds)
        object.__setattr__(self, "bonds", pairs)
        members = set(range(len(numbers)) if self.atoms is None else self.atoms)
        outside = [pair for pair in pairs if pair[0] not in members or pair[1] not in members or pair[0] == pair[1]]
        if outside:
            raise ValueError(f"bonds {outside[:5]} do not join two different ML atoms; give only bonds within the "
                             "ML region (pairs of its particle indices).")
        if not 0 <= int(self.force_group) <= 31:
            raise ValueError(f"force_group must be in [0, 31]; got {self.force_group}.")
        if self.neighbor_capacity is not None and int(self.neighbor_capacity) < 1:
            raise ValueError(f"neighbor_capacity must be a positive number of pairs or None; got "
                             f"{self.neighbor_capacity}.")

    @classmethod
    def of(cls, atomic_numbers, atoms=None, total_charge: float = 0.0, **options) -> "ForceSpec":
        """A spec from the arguments of the force factories, with an error naming any unknown option."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown force options {unknown}; the options are {sorted(known - {'atomic_numbers'})}.")
        return cls(tuple(atomic_numbers), None if atoms is None else tuple(atoms), float(total_charge), **options)

    @property
    def box_input(self) -> bool:
        """Whether OpenMM passes the box to the force."""
        return bool(self.periodic if self.uses_box is None else self.uses_box)

    @property
    def scaled(self) -> Optional[str]:
        """The module's argument layout for a global parameter: None, ``"box"`` or ``"nobox"``."""
        if self.global_parameter is None:
            return None
        return "box" if self.box_input else "nobox"

    @property
    def region_bonds(self) -> Tuple[Tuple[int, int], ...]:
        """``bonds`` as pairs of positions within the region (0-based, in the order of ``atoms``)."""
        if self.atoms is None:
            return self.bonds
        position = {atom: k for k, atom in enumerate(self.atoms)}
        return tuple((position[i], position[j]) for i, j in self.bonds)

    @property
    def geometry(self) -> str:
        """``"periodic"`` (the ML atoms fill the box), ``"molecule"`` (a region of a larger System) or ``"none"``."""
        return "periodic" if self.periodic else ("molecule" if self.atoms is not None else "none")

    def for_model(self, model, static_shapes: bool = False, reason: str = "static shapes") -> "ForceSpec":
        """This spec checked against ``model`` (elements it covers, a Coulomb term it can evaluate here), with a
        neighbour capacity sized from the density when ``static_shapes`` need one (``reason`` names the option
        that asked for them, for the error message)."""
        covered = model.hparams.get("elements")
        if covered is not None:
            outside = sorted(set(self.atomic_numbers) - set(covered))
            if outside:
                raise ValueError(f"elements {_symbols(outside)} are not covered by this model, which was trained on "
                                 f"{_symbols(covered)}; leave those atoms out of the ML region or use another model.")
        unknown = sorted({z for z in self.atomic_numbers if z < 1 or z >= model.max_z})
        if unknown:
            raise ValueError(f"atomic numbers {unknown} are outside the model's range [1, {model.max_z - 1}]; this "
                             "model cannot describe those elements. Choose another ML region or model.")
        coulomb = model.coulomb
        if self.periodic and coulomb is not None and coulomb.cutoff < 0:
            raise ValueError("this model's Coulomb term sums over all pairs of the molecule (a tensornet2 model "
                             "trained without coulomb_cutoff), which is not defined for a periodic ML system; use it "
                             "for a molecule in vacuum or as the ML region of a mixed system (createMixedSystem), or "
                             "use a model trained with a coulomb_cutoff.")
        if not static_shapes or self.neighbor_capacity is not None:
            return self
        volume = None
        if self.periodic:
            if self.box_vectors is None:
                raise ValueError(f"{reason} with a periodic ML system needs box_vectors (nm) to size the neighbour "
                                 "capacity, or an explicit neighbor_capacity.")
            volume = box_volume_nm3(self.box_vectors)
        from ..units import nm_to_length

        cutoff_nm = model.cutoff_upper / nm_to_length(model.length_unit)
        return replace(self, neighbor_capacity=estimate_neighbor_capacity(len(self.atomic_numbers), cutoff_nm,
                                                                          volume))


def _symbols(values) -> str:
    return ", ".join(f"{ELEMENTS[z][0] if z in ELEMENTS else '?'} ({z})" for z in values)


def estimate_neighbor_capacity(num_atoms: int, cutoff_nm: float, box_volume_nm3: Optional[float] = None) -> int:
    """A neighbour capacity (ordered pairs) for ``num_atoms`` atoms and a cutoff, sized from the density.

    Periodic (``box_volume_nm3`` given): the box's density x the cutoff sphere x ``num_atoms``, plus 30% and 64 pairs
    for fluctuations and a barostat. A molecule: the same with the densest condensed-phase packing (0.15 / A^3).
    Never more than ``num_atoms * (num_atoms - 1)``, every possible pair.
    """
    density = _DENSEST if box_volume_nm3 is None else num_atoms / box_volume_nm3
    per_atom = density * 4.0 / 3.0 * math.pi * cutoff_nm**3
    estimate = int(math.ceil(_CAPACITY_MARGIN * per_atom * num_atoms)) + 64
    return int(min(estimate, num_atoms * (num_atoms - 1)))


def box_volume_nm3(box_vectors) -> float:
    """Volume of a box given as three vectors (OpenMM ``Vec3``/``Quantity`` in nm, or plain numbers in nm)."""
    rows = []
    for vector in box_vectors:
        if hasattr(vector, "value_in_unit"):
            import openmm.unit as unit

            vector = vector.value_in_unit(unit.nanometer)
        rows.append([float(x) for x in vector])
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = rows
    return abs(ax * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx))
