"""Energy + forces time and peak memory of our TensorNet and torchmd-net 3.1's, side by side, on the CPU.

    python benchmarks/model_speed.py [--atoms 22 200 1000 5000] [--channels 128] [--repeats 5]
                                     [--systems cloud molecule] [--threads N] [--model tensornet2]

Identical weights (our model is loaded from a torchmd-net checkpoint with random weights), 2 layers, 32 RBF, 5 Å
cutoff, float32, no box. Systems:

* ``cloud``: random atoms (H, C, N, O) at 0.1 atoms/Å³, the atom density of liquid water;
* ``molecule``: real molecules: alanine dipeptide (22 atoms) and the first N atoms of T4 lysozyme L99A
  (``systems/t4-lysozyme-l99a-p-xylene``, 2 621 atoms; sizes above that are skipped).

Each (implementation, system, size) runs in a fresh process, so its peak resident memory (above the process's
memory after building the model and inputs) is its own. Implementations: ``ours`` (eager PyTorch, the compiled
message-passing ops), ``ours-script`` (the TorchScript module, what OpenMM's TorchForce runs) and ``torchmd-net``
(its default path). Reports the median time per energy+forces evaluation and the ratio torchmd-net / ours.

``--model tensornet2``: torchmd-net's TensorNet2 instead, AceFF-2.0-like: 16 charge channels, the
``ScalarPlusWeightedCoulomb`` output (all pairs of the molecule) and the ZBL repulsion.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("ours", "ours-script", "torchmd-net")


def system_atoms(system: str, n: int):
    """Atomic numbers and positions (Å) of a benchmark system, or None when the size is not available."""
    import numpy as np
    import torch

    if system == "cloud":
        generator = np.random.default_rng(n)
        side = (n / 0.1) ** (1.0 / 3.0)
        pos = generator.random((n, 3)) * side
        z = generator.choice([1, 6, 7, 8], size=n)
        return torch.tensor(z), torch.tensor(pos, dtype=torch.float32)
    import openmm.app as app

    if n == 22:
        pdb = app.PDBFile(str(ROOT / "systems/alanine-dipeptide-vacuum/input.pdb"))
    else:
        pdb = app.PDBFile(str(ROOT / "systems/t4-lysozyme-l99a-p-xylene/input.pdb"))
    atoms = list(pdb.topology.atoms())
    if n > len(atoms):
        return None
    pos = np.array(pdb.getPositions(asNumpy=True)._value)[:n] * 10.0
    z = [atoms[i].element.atomic_number for i in range(n)]
    return torch.tensor(z), torch.tensor(pos, dtype=torch.float32)


def model_settings(model: str, channels: int) -> dict:
    settings = dict(embedding_dimension=channels, num_layers=2, num_rbf=32, cutoff_upper=5.0, max_z=20, precision=32,
                    max_num_neighbors=128)
    if model == "tensornet2":
        settings.update(model="tensornet2", q_dim=16, output_model="ScalarPlusWeightedCoulomb",
                        q_weights=[[1.0] * 16] * 3, coulomb_cutoff=None, repulsion=True)
    return settings


def measure(implementation: str, system: str, n: int, channels: int, repeats: int, threads: int,
            model: str = "tensornet") -> dict:
    """Runs in a child process: build, warm up, time, and report the peak memory added by the evaluations."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint

    from openmm_tensornet import load_model

    inputs = system_atoms(system, n)
    if inputs is None:
        return {"skipped": True}
    z, pos = inputs
    settings = torchmdnet_args(**model_settings(model, channels))
    reference = random_torchmdnet_model(settings, seed=1)
    if implementation == "torchmd-net":
        def run():
            reference(z, pos.clone())
    else:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "tensornet.ckpt"
            write_checkpoint(reference, settings, path)
            ours = load_model(path).eval()
        if implementation == "ours":
            def run():
                ours(z, pos, compute_forces=True)
        else:
            from openmm_tensornet.openmm.export import export_torchscript

            module = export_torchscript(ours, z.tolist())
            positions = (pos.double() / 10.0)

            def run():
                x = positions.clone().requires_grad_(True)
                energy = module(x)
                torch.autograd.grad(energy, x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()  # warm-up (allocations, TorchScript profiling runs)
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(times), "peak_mib": (peak - before) / 1024.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atoms", type=int, nargs="+", default=[22, 200, 1000, 5000])
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--systems", nargs="+", default=["cloud", "molecule"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", choices=["tensornet", "tensornet2"], default="tensornet")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    threads = args.threads or torch.get_num_threads()
    if args.child:
        implementation, system, n = args.child
        print(json.dumps(measure(implementation, system, int(n), args.channels, args.repeats, threads, args.model)))
        return
    print(f"{args.model}: CPU, {threads} threads, {args.channels} channels, 2 layers, 32 RBF, 5 Å, float32; median of "
          f"{args.repeats} energy+forces evaluations; peak memory above the idle process")
    print("| system | atoms | ours (ms) | ours TorchScript (ms) | torchmd-net 3.1 (ms) | torchmd-net / ours | "
          "peak MiB ours / script / torchmd-net |")
    print("|---|---|---|---|---|---|---|")
    for system in args.systems:
        for n in args.atoms:
            results = {}
            for implementation in IMPLEMENTATIONS:
                command = [sys.executable, __file__, "--child", implementation, system, str(n), "--channels",
                           str(args.channels), "--repeats", str(args.repeats), "--threads", str(threads), "--model", args.model]
                done = subprocess.run(command, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                if done.returncode != 0 or not lines:
                    raise RuntimeError(f"{implementation} {system} {n} failed:\n{done.stderr[-3000:]}")
                results[implementation] = json.loads(lines[-1])
            if results["ours"].get("skipped"):
                continue
            ms = {k: v["seconds"] * 1000 for k, v in results.items()}
            mib = " / ".join(f"{results[k]['peak_mib']:.0f}" for k in IMPLEMENTATIONS)
            print(f"| {system} | {n} | {ms['ours']:.1f} | {ms['ours-script']:.1f} | {ms['torchmd-net']:.1f} | "
                  f"{ms['torchmd-net'] / ms['ours']:.2f}× (script {ms['torchmd-net'] / ms['ours-script']:.2f}×) | "
                  f"{mib} |", flush=True)


if __name__ == "__main__":
    main()
