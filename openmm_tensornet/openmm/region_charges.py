"""The ML region's MM charges from the model: the atomic charges a charge-predicting TensorNet (torchmd-net's
``tensornet2``, or a model with a dipole head) assigns at one geometry, written into a System's NonbondedForce so
that the region's electrostatics with the MM atoms use them."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import openmm
import openmm.unit as unit
import torch

from ..nn.model import TensorNet
from ..units import nm_to_length

CHARGE_SUM_TOLERANCE = 1e-3  # e


def predicted_charges(model: TensorNet, atomic_numbers: Sequence[int], positions_nm, total_charge: float = 0.0
                      ) -> List[float]:
    """Atomic charges (e) the model predicts for one molecule at ``positions_nm`` ([N, 3] nm or a Quantity)."""
    if unit.is_quantity(positions_nm):
        positions_nm = positions_nm.value_in_unit(unit.nanometer)
    positions = np.asarray(positions_nm, dtype=np.float64)
    if positions.shape != (len(atomic_numbers), 3):
        raise ValueError(f"positions must have shape [{len(atomic_numbers)}, 3] (one row per region atom); got "
                         f"{list(positions.shape)}.")
    dtype = model.energy_mean.dtype
    device = model.energy_mean.device
    z = torch.tensor(list(atomic_numbers), dtype=torch.long, device=device)
    pos = torch.tensor(positions * nm_to_length(model.length_unit), dtype=dtype, device=device)
    with torch.no_grad():
        out = model(z, pos, total_charge=torch.tensor([float(total_charge)], dtype=dtype, device=device))
    if out.charges is None:
        raise ValueError("this model predicts no atomic charges: only torchmd-net tensornet2 models (q_dim >= 1) "
                         "and models with a dipole head do. Use the MM force field's charges instead.")
    return [float(q) for q in out.charges.cpu()]


def set_region_charges(system: openmm.System, atoms: Sequence[int], charges: Sequence[float],
                       total_charge: Optional[float] = None) -> None:
    """Give the particles ``atoms`` the ``charges`` (e, in the order of ``atoms``) in every NonbondedForce of
    ``system``, in place. Exceptions between a region atom and an MM atom (1-4 pairs across the boundary) keep their
    scaling: their charge product is multiplied by ``q_new / q_old`` of the region atom."""
    atoms, charges = list(atoms), [float(q) for q in charges]
    if len(charges) != len(atoms):
        raise ValueError(f"regionCharges has {len(charges)} values for {len(atoms)} atoms; give one charge per atom, "
                         "in the order of atoms.")
    if total_charge is not None and abs(sum(charges) - total_charge) > CHARGE_SUM_TOLERANCE:
        raise ValueError(f"regionCharges sum to {sum(charges):.4f} e but the region's charge is {total_charge} e; "
                         "give charges that sum to it (the model's predictions do), or pass the right charge.")
    new: Dict[int, float] = dict(zip(atoms, charges))
    for force in system.getForces():
        if not isinstance(force, openmm.NonbondedForce):
            continue
        for k in range(force.getNumParticleParameterOffsets()):
            _, particle, charge_scale, _, _ = force.getParticleParameterOffset(k)
            if particle in new and charge_scale != 0.0:
                raise ValueError(f"particle {particle} has a charge offset (a parameter offset of the NonbondedForce); "
                                 "regionCharges cannot replace charges that a global parameter changes.")
        old: Dict[int, float] = {}
        for index, charge in new.items():
            q, sigma, epsilon = force.getParticleParameters(index)
            old[index] = q.value_in_unit(unit.elementary_charge)
            force.setParticleParameters(index, charge, sigma, epsilon)
        for k in range(force.getNumExceptions()):
            i, j, product, sigma, epsilon = force.getExceptionParameters(k)
            inside = [a for a in (i, j) if a in new]
            product = product.value_in_unit(unit.elementary_charge ** 2)
            if len(inside) != 1 or product == 0.0:
                continue  # both inside: excluded by the embedding; neither: unchanged; no Coulomb: nothing to scale
            atom = inside[0]
            if old[atom] == 0.0:
                raise ValueError(f"the exception between particles {i} and {j} has a charge product although particle "
                                 f"{atom} has no charge, so its scaling is unknown; set the region's charges in the "
                                 "force field instead.")
            force.setExceptionParameters(k, i, j, product * new[atom] / old[atom], sigma, epsilon)
