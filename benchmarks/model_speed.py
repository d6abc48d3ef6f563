"""Energy + forces time of our TensorNet and torchmd-net 3.1's, side by side, on the CPU.

    python benchmarks/model_speed.py [--atoms 22 200 1000] [--channels 128] [--repeats 5]

Random clouds at 0.1 atoms/Å³ (H, C, N, O), no box, 2 layers, 32 RBF, 5 Å cutoff, float32, identical weights (our
model is loaded from torchmd-net's weights). Reports the median time per evaluation and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import random_molecule  # noqa: E402
from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint  # noqa: E402

from openmm_tensornet import load_model  # noqa: E402


def median_time(function, repeats: int) -> float:
    function()  # warm-up (JIT, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atoms", type=int, nargs="+", default=[22, 200, 1000])
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = torchmdnet_args(embedding_dimension=args.channels, num_layers=2, num_rbf=32, cutoff_upper=5.0,
                               max_z=10, precision=32)
    reference = random_torchmdnet_model(settings, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tensornet.ckpt"
        write_checkpoint(reference, settings, path)
        ours = load_model(path).eval()
    print(f"CPU, {torch.get_num_threads()} threads, {args.channels} channels, 2 layers, 32 RBF, 5 Å, float32; "
          "median of energy+forces")
    print("| atoms | ours (ms) | torchmd-net 3.1 (ms) | torchmd-net / ours |")
    print("|---|---|---|---|")
    for n in args.atoms:
        z, pos = random_molecule(n, seed=n, dtype=torch.float32, density=0.1)
        z = torch.tensor([[1, 6, 7, 8][int(v) % 4] for v in z])

        def run_ours():
            ours(z, pos, compute_forces=True)

        def run_reference():
            reference(z, pos.clone())

        t_ours = median_time(run_ours, args.repeats)
        t_reference = median_time(run_reference, args.repeats)
        print(f"| {n} | {t_ours * 1000:.1f} | {t_reference * 1000:.1f} | {t_reference / t_ours:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
