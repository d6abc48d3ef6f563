"""The MM -> ML/MM correction of a ligand: its legs built from the input files, sampled, and put into one cycle.

* ``vacuum``: the ligand alone; ``solvent``: the ligand in a water box; ``complex``: the protein (PDB) with the
  docked ligand, solvated unless ``complex_solvent=False``.

Each leg is a system from :func:`openmm_tensornet.app.simulate.prepare` with ``interpolate=True``: the ligand (the ML
region) is GAFF2/AM1-BCC at ``lambda_interpolate = 0`` and TensorNet at 1, the rest stays MM. The cycle reports the
hydration correction (``solvent - vacuum``) and the binding correction (``complex - solvent``): what the ML
description changes in the hydration or binding free energy computed with the MM force field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Literal, Optional, Sequence, Union, get_args

from ..choices import parse_choice

Leg = Literal["vacuum", "solvent", "complex"]


def ligand_legs(ligand, protein=None, legs: Sequence[str] = ("vacuum", "solvent"), *, output: Union[str, Path],
                ligand_index: Optional[int] = None, potential=None,
                padding: float = 1.0, ionic_strength: float = 0.15, complex_solvent: bool = True, fix: bool = False,
                **sampling) -> Dict[str, Dict]:
    """Run the requested legs of a ligand's MM -> ML/MM correction and write ``output/cycle.md``.

    Parameters
    ----------
    ligand : path
        SDF or MOL2 file with hydrogens (one record, or pick one with ``ligand_index``).
    protein : path, optional
        PDB of the receptor, needed for the ``complex`` leg (the ligand pose must be docked into it).
    legs : sequence of "vacuum", "solvent", "complex"
    output : path
        Folder; each leg runs in ``output/<leg>`` (its storage, ``free_energy.md`` and plots).
    **sampling
        Passed to :func:`openmm_tensornet.app.free_energy.interpolation_free_energy` (lambdas, iterations, ...).

    Returns
    -------
    dict
        ``{"legs": {name: LegResult}, "cycle": {leg or "a - b": {method: Estimate}}}`` in kJ/mol.
    """
    from ..openmm.potential import TensorNetPotential
    from .free_energy import cycle_report, interpolation_free_energy, mpi_rank
    from .simulate import prepare

    chosen = [parse_choice("leg", leg, Leg) for leg in legs]
    if not chosen:
        raise ValueError(f"legs must name at least one of {get_args(Leg)}.")
    if "complex" in chosen and protein is None:
        raise ValueError("the complex leg needs the receptor: pass protein= (--protein receptor.pdb), or run only "
                         "the vacuum and solvent legs.")
    potential = potential or TensorNetPotential()
    output = Path(output)
    results = {}
    for leg in chosen:
        setup = prepare(protein if leg == "complex" else None, ligand=ligand, ligand_index=ligand_index,
                        potential=potential, interpolate=True, fix=fix,
                        solvate=leg == "solvent" or (leg == "complex" and complex_solvent), padding=padding,
                        ionic_strength=ionic_strength)
        results[leg] = interpolation_free_energy(setup.system, setup.positions, name=leg, output=output / leg,
                                                 **sampling)
    pairs = [pair for pair in (("solvent", "vacuum"), ("complex", "solvent")) if set(pair) <= set(results)]
    cycle = cycle_report(results, output, pairs) if mpi_rank() == 0 else {}
    return {"legs": results, "cycle": cycle}
