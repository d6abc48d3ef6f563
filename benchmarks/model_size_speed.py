"""Cost of one MD step against the model's width: which default model the 2-core machine can afford (issue 15).

    python benchmarks/model_size_speed.py [--channels 32 48 64 96] [--steps 200]
    python benchmarks/model_size_speed.py --models OLD.pt NEW.pt [--steps 200]

TensorNet, 2 interaction layers, 16 RBF, 5 Å, float32 (the default model's shape) with random weights (the cost
does not depend on their values), through OpenMM's TorchForce on the CPU platform, Langevin 300 K, 1 fs:

* ``ibuprofenate``: 32 atoms, pure ML in vacuum (built with RDKit, as in ``default_model_md.py``);
* ``paracetamol-water``: ``systems/paracetamol-water`` set up by ``simulate.prepare`` (ML paracetamol, Amber14 +
  TIP3P-FB water, PME), so the MM part's cost is included as a user sees it.

Per step: the median of 3 blocks of ``--steps`` steps after 20 warm-up steps. All widths run in this one process,
one after another; the table gives ms/step and the ratio to the first width. ``--models``: trained checkpoints
(for example the shipped default model against its predecessor) instead of random widths, run the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import openmm
import openmm.unit as unit
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def model(channels):
    """A random model of ``channels`` channels, or the checkpoint at that path."""
    from openmm_tensornet import TensorNet, load_model

    if isinstance(channels, Path):
        return load_model(channels)
    torch.manual_seed(0)
    return TensorNet(hidden_channels=channels, num_layers=2, num_rbf=16, cutoff_upper=5.0, max_z=18,
                     dtype=torch.float32)


def per_step(system, positions, steps: int) -> float:
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 1 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 50)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(20)
    blocks = []
    for _ in range(3):
        begin = time.perf_counter()
        integrator.step(steps)
        blocks.append((time.perf_counter() - begin) / steps)
    return statistics.median(blocks)


def ibuprofenate(channels: int, steps: int) -> float:
    from default_model_md import SMILES, from_smiles

    from openmm_tensornet import TensorNetPotential

    topology, positions, charge = from_smiles(SMILES["ibuprofenate"])
    system = TensorNetPotential(model(channels)).createSystem(topology, charge=charge)
    return per_step(system, positions * unit.nanometer, steps)


def paracetamol_water(channels: int, steps: int) -> float:
    from openmm_tensornet import TensorNetPotential
    from openmm_tensornet.app.simulate import prepare

    setup = prepare(ROOT / "systems" / "paracetamol-water" / "input.pdb",
                    potential=TensorNetPotential(model(channels)))
    return per_step(setup.system, setup.positions, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 48, 64, 96])
    parser.add_argument("--models", type=Path, nargs="+", help="checkpoints to compare instead of random widths")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    chosen = args.models or args.channels
    labels = [c.name if isinstance(c, Path) else f"{c} ch" for c in chosen]
    print(f"torch threads: {torch.get_num_threads()}")
    print("| system | " + " | ".join(f"{label} (ms/step)" for label in labels) + " | " +
          " | ".join(f"{label}/{labels[0]}" for label in labels[1:]) + " |")
    print("|---" * (2 * len(chosen)) + "|")
    for name, run in (("ibuprofenate (vacuum, 32 atoms)", ibuprofenate),
                      ("paracetamol-water (ML/MM, PME)", paracetamol_water)):
        times = [run(c, args.steps) * 1000 for c in chosen]
        ratios = [f"{t / times[0]:.2f}×" for t in times[1:]]
        print(f"| {name} | " + " | ".join(f"{t:.2f}" for t in times) + " | " + " | ".join(ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
