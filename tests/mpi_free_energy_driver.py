"""Run by tests/integration/test_free_energy.py under ``mpirun -n 2``: a tiny alanine-dipeptide (vacuum) MM -> ML/MM leg.

Usage: ``mpirun -n 2 python tests/mpi_free_energy_driver.py OUTPUT``; rank 0 writes OUTPUT/result.json.
"""

import json
import sys
from pathlib import Path

import openmm.app as app
import torch

torch.set_num_threads(1)

from openmm_tensornet import TensorNetPotential  # noqa: E402
from openmm_tensornet.app.free_energy import interpolation_free_energy, mpi_rank  # noqa: E402

PDB = Path(__file__).resolve().parent.parent / "systems" / "alanine-dipeptide-vacuum" / "input.pdb"


def main(output: str) -> None:
    pdb = app.PDBFile(str(PDB))
    mm = app.ForceField("amber14-all.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    mixed = TensorNetPotential().createMixedSystem(pdb.topology, mm, list(range(22)), interpolate=True)
    leg = interpolation_free_energy(mixed, pdb.positions, output=output, name="mpi", lambdas=[0.0, 0.5, 1.0],
                                    iterations=4, steps_per_iteration=10, equilibration_iterations=1,
                                    neq_switches=2, neq_steps=10, platform="CPU", seed=3)
    if mpi_rank() == 0:
        numbers = {method: [e.value, e.sigma] for method, e in leg.estimates.items() if e is not None}
        (Path(output) / "result.json").write_text(json.dumps({"estimates": numbers, "iterations": leg.iterations,
                                                              "forward_work": list(leg.forward_work)}))
    else:
        (Path(output) / "rank1_done").write_text("ok")


if __name__ == "__main__":
    main(sys.argv[1])
