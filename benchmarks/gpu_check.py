"""The CUDA path in one go, for a machine with an NVIDIA GPU (run by ``benchmarks/gpu_check.sh``).

    python benchmarks/gpu_check.py [--out DIR] [--steps 500] [--cpu]

Checks, each a row of ``DIR/gpu_check.md`` (DIR: ``$OUT`` or the current folder), each guarded so that one
failure does not hide the others:

1. the CUDA tests (``pytest -m cuda``);
2. energies and forces of a TorchForce on the CUDA platform against the CPU platform, float32 and float64
   (alanine dipeptide, a TensorNet with random weights);
3. CUDA-graph replay (``cudaGraphs=True``) equal to the eager force, and a neighbour overflow under CUDA graphs
   (a compressed structure) giving NaN or an error, never a silently short list;
4. MD of every ``systems/`` example (default model, default ML region, ``platform="CUDA"``), ns/day;
5. the speed table: ms per energy+forces call of the TorchScript module (what the TorchForce runs) against
   torchmd-net 3.1 on the same GPU, for alanine dipeptide, a 200- and a 5 000-atom box of water density.

``--cpu`` runs the same steps on the CPU with small sizes: a dry run of this script where no GPU is lent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

ROWS = []


def row(check: str, ok, detail: str) -> None:
    mark = {True: "ok", False: "FAILED", None: "skipped"}[ok]
    ROWS.append(f"| {check} | {mark} | {detail} |")
    print(ROWS[-1], flush=True)


def guarded(check: str):
    def wrap(function):
        def run(*args):
            try:
                function(*args)
            except Exception as error:  # noqa: BLE001 (reported, the next check runs)
                row(check, False, f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300] if str(error).strip() else ''}")
                traceback.print_exc()
        return run
    return wrap


def random_model(dtype: str, channels: int = 64):
    from openmm_tensornet import TensorNet

    torch.manual_seed(0)
    model = TensorNet(hidden_channels=channels, num_layers=2, num_rbf=32, cutoff_upper=5.0, max_z=20, dtype=dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def evaluate(system, positions, platform: str, properties=None):
    import openmm

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform),
                             properties or {})
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    return state.getPotentialEnergy()._value, np.asarray(state.getForces(asNumpy=True)._value)


def alanine_dipeptide():
    import openmm.app as app

    pdb = app.PDBFile(str(ROOT / "systems/alanine-dipeptide-vacuum/input.pdb"))
    z = [atom.element.atomic_number for atom in pdb.topology.atoms()]
    return pdb.topology, z, np.asarray(pdb.getPositions(asNumpy=True)._value)


def pure_ml_system(model, z, **options):
    import openmm

    from openmm_tensornet import create_torch_force

    system = openmm.System()
    for _ in z:
        system.addParticle(12.0)
    system.addForce(create_torch_force(model, z, **options))
    return system


@guarded("CUDA tests (pytest -m cuda)")
def cuda_tests(args) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                           str(ROOT / "tests")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    tail = [line for line in done.stdout.splitlines() if "passed" in line or "failed" in line or "skipped" in line]
    row("CUDA tests (pytest -m cuda)", done.returncode in (0, 5) and "failed" not in "".join(tail[-1:]),
        tail[-1] if tail else done.stdout[-300:])


@guarded("TorchForce: GPU platform vs CPU platform")
def platform_agreement(args) -> None:
    _, z, positions = alanine_dipeptide()
    for dtype, tolerance in (("float32", 1e-4), ("float64", 1e-9)):
        system = pure_ml_system(random_model(dtype), z)
        energy, forces = evaluate(system, positions, args.platform, args.properties)
        reference, reference_forces = evaluate(system, positions, "CPU")
        energy_error = abs(energy - reference) / max(abs(reference), 1.0)
        force_error = np.abs(forces - reference_forces).max() / np.abs(reference_forces).max()
        row(f"TorchForce {args.platform} vs CPU, {dtype}", bool(energy_error < tolerance and force_error < 10 * tolerance),
            f"relative energy error {energy_error:.1e}, force error {force_error:.1e} (E = {energy:.4f} kJ/mol)")


@guarded("CUDA graphs: replay and neighbour overflow")
def cuda_graphs(args) -> None:
    _, z, positions = alanine_dipeptide()
    from openmm_tensornet import neighbor_pairs

    model = random_model("float32")
    found = int(neighbor_pairs(torch.tensor(positions * 10), model.cutoff_upper).num_pairs)  # ordered pairs
    capacity = found + found // 10 + 2  # room for the structure, not for a compressed one
    eager = pure_ml_system(model, z)
    graphs = pure_ml_system(model, z, cuda_graphs=True, neighbor_capacity=capacity)
    import openmm

    context = openmm.Context(graphs, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(args.platform),
                             args.properties)
    context.setPositions(positions)
    first = context.getState(getEnergy=True).getPotentialEnergy()._value
    replays = [context.getState(getEnergy=True, getForces=True).getPotentialEnergy()._value for _ in range(5)]
    expected, _ = evaluate(eager, positions, args.platform, args.properties)
    same = all(abs(e - expected) <= 1e-4 * max(abs(expected), 1.0) for e in [first] + replays)
    row("CUDA-graph replay equals the eager force", same, f"{first:.4f} then {replays[-1]:.4f} vs eager {expected:.4f}")
    compressed = positions * 0.5  # every pair within the cutoff: more than the capacity
    try:
        context.setPositions(compressed)
        energy = context.getState(getEnergy=True).getPotentialEnergy()._value
        outcome = "NaN energy" if not np.isfinite(energy) else f"finite energy {energy:.3f} (pairs dropped?)"
        row("neighbour overflow under CUDA graphs", not np.isfinite(energy), outcome)
    except Exception as error:  # noqa: BLE001
        text = str(error)
        row("neighbour overflow under CUDA graphs", "overflow" in text, "error: " + text.strip().splitlines()[0][:200])


@guarded("MD of the systems/ examples")
def systems_md(args) -> None:
    from openmm_tensornet.app.simulate import build_simulation

    for folder in sorted((ROOT / "systems").iterdir()):
        pdb = folder / "input.pdb"
        if not pdb.exists():
            continue
        with tempfile.TemporaryDirectory() as output:
            simulation = build_simulation(str(pdb), output, platform=args.platform,
                                          precision=None if args.cpu else "mixed")
            simulation.step(20)  # warm-up
            start = time.perf_counter()
            simulation.step(args.steps)
            seconds = time.perf_counter() - start
            energy = simulation.context.getState(getEnergy=True).getPotentialEnergy()._value
            ns_per_day = args.steps * 1e-6 / seconds * 86400
            row(f"MD {folder.name}", bool(np.isfinite(energy)),
                f"{ns_per_day:.1f} ns/day on {simulation.context.getPlatform().getName()}, {args.steps} steps, "
                f"E = {energy:.1f} kJ/mol")


@guarded("speed vs torchmd-net")
def speed(args) -> None:
    from model_speed import system_atoms
    from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint

    from openmm_tensornet import load_model
    from openmm_tensornet.openmm.export import export_torchscript

    device = torch.device(args.device)
    settings = torchmdnet_args(embedding_dimension=128, num_layers=2, num_rbf=32, cutoff_upper=5.0, max_z=20,
                               precision=32, max_num_neighbors=128)
    reference = random_torchmdnet_model(settings, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tensornet.ckpt"
        write_checkpoint(reference, settings, path)
        ours = load_model(path)
    reference = reference.to(device)
    sizes = [("alanine dipeptide", "molecule", 22), ("box", "cloud", 200), ("box", "cloud", 5000)]
    if args.cpu:
        sizes = sizes[:2]
    lines = ["| system | atoms | ours TorchScript (ms) | torchmd-net 3.1 (ms) | torchmd-net / ours |", "|---|---|---|---|---|"]
    for name, kind, n in sizes:
        z, pos = system_atoms(kind, n)
        module = export_torchscript(ours, z.tolist()).to(device)
        positions = (pos.double() / 10.0).to(device).to(torch.float32)
        z_device, pos_device = z.to(device), pos.to(device)

        def ours_call():
            x = positions.clone().requires_grad_(True)
            torch.autograd.grad(module(x), x)

        def reference_call():
            reference(z_device, pos_device.clone())

        times = {key: _median_ms(call, device) for key, call in (("ours", ours_call), ("ref", reference_call))}
        lines.append(f"| {name} | {n} | {times['ours']:.2f} | {times['ref']:.2f} | {times['ref'] / times['ours']:.2f}× |")
    row("speed vs torchmd-net", True, "table below")
    ROWS.append("")
    ROWS.extend(lines)


def _median_ms(call, device: torch.device, repeats: int = 10) -> float:
    for _ in range(3):
        call()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU with small sizes")
    args = parser.parse_args()
    args.platform, args.device = ("CPU", "cpu") if args.cpu else ("CUDA", "cuda")
    args.properties = {} if args.cpu else {"Precision": "mixed"}
    import openmm

    header = (f"torch {torch.__version__} (CUDA {torch.version.cuda}), OpenMM {openmm.__version__}, "
              f"GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(header, flush=True)
    ROWS.extend(["# GPU check", "", header, "", "| check | result | detail |", "|---|---|---|"])
    started = time.time()
    for check in (cuda_tests, platform_agreement, cuda_graphs, systems_md, speed):
        check(args)
    ROWS.append("")
    ROWS.append(f"total {time.time() - started:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text("\n".join(ROWS) + "\n")
    print(f"wrote {out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()
