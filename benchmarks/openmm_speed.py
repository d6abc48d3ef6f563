"""MD speed inside OpenMM (CPU platform): our backends vs openmm-ml's torchmd-net path, OpenMM's overhead over the
bare model, and ns/day of the ``systems/`` examples with the default model.

    python benchmarks/openmm_speed.py [--parts openmmml overhead systems] [--steps 200]

* ``openmmml``: alanine dipeptide in vacuum, one TensorNet (torchmd-net 3.1 checkpoint with random weights; 64
  channels, 2 layers, 32 RBF, 5 Å, float32), Langevin 1 fs. openmm-ml 1.8 (``MLPotential("torchmdnet")``:
  ``openmm.PythonForce`` + ``torch.compile``) against our ``TorchForce`` backend and our ``PythonForce`` backend
  (eager and ``torchCompile=True``), all from the same checkpoint. Start-up = ``createSystem`` + ``Context`` +
  the first step (which is when torch.compile compiles); per step = median of 3 blocks of ``--steps`` steps.
* ``overhead``: the same scripted module called from Python (positions in, forces out by autograd) against one
  OpenMM force evaluation (``getState(getForces=True)``) of the TorchForce holding it, for alanine dipeptide and a
  1 000-atom cloud; overhead = OpenMM time / model time - 1.
* ``systems``: ``openmm_tensornet.app.simulate.build_simulation`` on every ``systems/*/input.pdb`` (default model, default
  ML region, Langevin 1 fs), ns/day over ``--steps`` steps after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def checkpoint(folder: Path, channels: int = 64) -> Path:
    from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint

    settings = torchmdnet_args(embedding_dimension=channels, num_layers=2, num_rbf=32, cutoff_upper=5.0, max_z=20,
                               precision=32, max_num_neighbors=64)
    path = folder / "tensornet.ckpt"
    write_checkpoint(random_torchmdnet_model(settings, seed=2), settings, path)
    return path


def md_speed(make_system, pdb, steps: int) -> tuple:
    """(start-up s, seconds per step) for a System factory; start-up includes the first step."""
    start = time.perf_counter()
    system = make_system()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 1 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(pdb.positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(1)
    startup = time.perf_counter() - start
    integrator.step(10)
    blocks = []
    for _ in range(3):
        begin = time.perf_counter()
        integrator.step(steps)
        blocks.append((time.perf_counter() - begin) / steps)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    if not np.isfinite(energy):
        raise RuntimeError("the run blew up")
    return startup, statistics.median(blocks)


def part_openmmml(steps: int) -> None:
    from openmmml import MLPotential

    from openmm_tensornet import TensorNetPotential

    pdb = app.PDBFile(str(ROOT / "systems/alanine-dipeptide-vacuum/input.pdb"))
    with tempfile.TemporaryDirectory() as folder:
        path = checkpoint(Path(folder))
        candidates = {
            "openmm-ml 1.8 torchmdnet (PythonForce + torch.compile)":
                lambda: MLPotential("torchmdnet", modelPath=str(path)).createSystem(pdb.topology),
            "openmm-tensornet TorchForce":
                lambda: TensorNetPotential(path).createSystem(pdb.topology),
            "openmm-tensornet PythonForce (eager)":
                lambda: TensorNetPotential(path).createSystem(pdb.topology, backend="PythonForce"),
            "openmm-tensornet PythonForce (torch.compile)":
                lambda: TensorNetPotential(path).createSystem(pdb.topology, backend="PythonForce", torchCompile=True),
        }
        print(f"alanine dipeptide (22 atoms), vacuum, TensorNet 64 channels / 2 layers / 32 RBF / 5 Å, float32, CPU "
              f"platform, {torch.get_num_threads()} threads, Langevin 1 fs")
        print("| path | start-up (s) | ms/step | ns/day | speed-up vs openmm-ml |")
        print("|---|---|---|---|---|")
        reference = None
        for name, make in candidates.items():
            startup, per_step = md_speed(make, pdb, steps)
            reference = reference or per_step
            print(f"| {name} | {startup:.1f} | {per_step * 1000:.2f} | {86400e-6 / per_step:.1f} | "
                  f"{reference / per_step:.1f}× |", flush=True)


def part_overhead(repeats: int = 50) -> None:
    from openmm_tensornet import load_model
    from openmm_tensornet.openmm.export import create_torch_force, export_torchscript

    print("| system | atoms | model call from Python (ms) | OpenMM TorchForce evaluation (ms) | overhead |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(checkpoint(Path(folder), channels=128))
    pdb = app.PDBFile(str(ROOT / "systems/alanine-dipeptide-vacuum/input.pdb"))
    generator = np.random.default_rng(0)
    side = (1000 / 0.1) ** (1 / 3) / 10.0  # nm
    cases = {
        "alanine dipeptide": ([a.element.atomic_number for a in pdb.topology.atoms()],
                              np.asarray(pdb.getPositions(asNumpy=True)._value)),
        "cloud (0.1 atoms/Å³)": (list(generator.choice([1, 6, 7, 8], size=1000)), generator.random((1000, 3)) * side),
    }
    for name, (numbers, positions) in cases.items():
        module = export_torchscript(model, numbers)
        x = torch.tensor(positions, dtype=torch.float64)

        def call():
            p = x.clone().requires_grad_(True)
            energy = module(p)
            energy.backward()
            return p.grad

        system = openmm.System()
        for _ in numbers:
            system.addParticle(12.0)
        system.addForce(create_torch_force(model, numbers))
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(positions)

        def openmm_call():
            context.setPositions(positions)  # new positions each time, as in MD (no cached forces)
            return context.getState(getForces=True)

        timings = []
        for function in (call, openmm_call):
            for _ in range(3):
                function()
            runs = repeats if len(numbers) < 500 else 5
            samples = []
            for _ in range(runs):
                begin = time.perf_counter()
                function()
                samples.append(time.perf_counter() - begin)
            timings.append(statistics.median(samples))
        print(f"| {name} | {len(numbers)} | {timings[0] * 1000:.2f} | {timings[1] * 1000:.2f} | "
              f"{(timings[1] / timings[0] - 1) * 100:+.1f} % |", flush=True)


def part_systems(steps: int) -> None:
    from openmm_tensornet.app.simulate import build_simulation

    print("| system | atoms | ML atoms | ms/step | ns/day |")
    print("|---|---|---|---|---|")
    for folder in sorted((ROOT / "systems").iterdir()):
        pdb = folder / "input.pdb"
        if not pdb.is_file():
            continue
        simulation = build_simulation(pdb)
        simulation.step(20)
        begin = time.perf_counter()
        simulation.step(steps)
        per_step = (time.perf_counter() - begin) / steps
        setup = simulation.setup
        print(f"| {folder.name} | {setup.topology.getNumAtoms()} | {len(setup.ml_atoms)} | {per_step * 1000:.2f} | "
              f"{86400e-6 / per_step:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["openmmml", "overhead", "systems"])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if "openmmml" in args.parts:
        part_openmmml(args.steps)
    if "overhead" in args.parts:
        part_overhead()
    if "systems" in args.parts:
        part_systems(args.steps)


if __name__ == "__main__":
    main()
