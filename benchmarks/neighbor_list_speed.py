"""Time to build a neighbour list at liquid-water density: our compiled op vs the pure-torch reference, vesin and
torchmd-net, side by side in one run.

    python benchmarks/neighbor_list_speed.py [--threads 2] [--sizes 1000 10000 100000] [--device cpu]

Systems: N random atoms in a periodic cubic box at 0.1 atoms/Å^3 (float32), cutoff 5 Å (about 52 neighbours per atom).
Every implementation returns a full list (both i-j and j-i) with displacement vectors and distances (and ours also a
half list, j < i, which is what a symmetric pair model needs); times are the
median of several calls after one warm-up call. The pair counts of all implementations are compared (vesin, which
works in float64, with ours in float64), so a faster but wrong list cannot go unnoticed. vesin and torchmd-net are optional (skipped with a note when not installed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch

from openmm_tensornet import neighbor_pairs, neighbor_pairs_reference, ops_status

DENSITY = 0.1  # atoms / Å^3
CUTOFF = 5.0  # Å


def system(num_atoms: int, device: str, seed: int = 0):
    side = (num_atoms / DENSITY) ** (1.0 / 3.0)
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(num_atoms, 3, generator=generator) * side
    box = torch.eye(3) * side
    return positions.to(device), box.to(device)


def timed(function: Callable[[], int], repeats: int, device: str) -> Dict[str, float]:
    count = function()  # warm-up (and the pair count)
    times: List[float] = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"ms": 1e3 * statistics.median(times), "pairs": count}


def ours(positions, box, algorithm="auto", half=False):
    def run() -> int:
        return int(neighbor_pairs(positions, CUTOFF, box, algorithm=algorithm, half=half).num_pairs) * (1 + half)
    return run


def reference(positions, box):
    def run() -> int:
        return int(neighbor_pairs_reference(positions, CUTOFF, box).num_pairs)
    return run


def vesin_list(positions, box, threads: int) -> Optional[Callable[[], int]]:
    try:
        from vesin import NeighborList
    except ImportError:
        return None
    calculator = NeighborList(cutoff=CUTOFF, full_list=True, n_threads=threads)
    points = positions.cpu().double().numpy()
    cell = box.cpu().double().numpy()

    def run() -> int:
        i, j, shifts, distances, vectors = calculator.compute(points, cell, periodic=True, quantities="ijSdD")
        return len(i)
    return run


def torchmdnet_list(positions, box) -> Optional[Callable[[], int]]:
    try:
        from torchmdnet.models.utils import OptimizedDistance
    except ImportError:
        return None
    strategy = "cell" if positions.is_cuda else "brute"  # torchmd-net's CPU path is brute force only
    module = OptimizedDistance(cutoff_upper=CUTOFF, max_num_pairs=-128, return_vecs=True, strategy=strategy,
                               include_transpose=True, resize_to_fit=True, box=box)

    def run() -> int:
        edge_index, _, _ = module(positions, box=box)
        return int(edge_index.shape[1])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-limit", type=int, default=10000, help="largest N for the O(N^2) reference")
    parser.add_argument("--torchmdnet-limit", type=int, default=10000, help="largest N for torchmd-net's CPU list")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    device = arguments.device
    print(f"torch {torch.__version__}, {arguments.threads} threads, device {device}; ops: {ops_status().reason}")
    print("| atoms | pairs | ours, auto (ms) | ours, cell list (ms) | ours, half list (ms) | pure-torch reference (ms) "
          "| vesin (ms) | torchmd-net (ms) | reference / ours | vesin / ours | torchmd-net / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in arguments.sizes:
        positions, box = system(size, device)
        repeats = 5 if size <= 10000 else 3
        results: Dict[str, Optional[Dict[str, float]]] = {
            "auto": timed(ours(positions, box), repeats, device),
            "cells": timed(ours(positions, box, "cells"), repeats, device),
            "half": timed(ours(positions, box, half=True), repeats, device),
            "reference": timed(reference(positions, box), 1, device) if size <= arguments.reference_limit else None,
            "vesin": None,
            "torchmdnet": None,
        }
        candidate = vesin_list(positions, box, arguments.threads)
        if candidate is not None:
            results["vesin"] = timed(candidate, repeats, "cpu")
        candidate = torchmdnet_list(positions, box)
        if candidate is not None and (size <= arguments.torchmdnet_limit or device == "cuda"):
            results["torchmdnet"] = timed(candidate, repeats, device)
        pairs = results["auto"]["pairs"]
        # vesin works in float64: compare it with our list computed in float64 from the same coordinates
        pairs64 = int(neighbor_pairs(positions.double(), CUTOFF, box.double()).num_pairs)
        for name, result in results.items():
            expected = pairs64 if name == "vesin" else pairs
            if result is not None and result["pairs"] != expected:
                raise SystemExit(f"{name} found {result['pairs']} pairs for {size} atoms, ours {expected}")

        def cell(name: str) -> str:
            result = results[name]
            return "—" if result is None else f"{result['ms']:.1f}"

        def ratio(name: str) -> str:
            result = results[name]
            return "—" if result is None else f"{result['ms'] / results['auto']['ms']:.1f}×"

        print(f"| {size} | {pairs} | {cell('auto')} | {cell('cells')} | {cell('half')} | {cell('reference')} "
              f"| {cell('vesin')} "
              f"| {cell('torchmdnet')} | {ratio('reference')} | {ratio('vesin')} | {ratio('torchmdnet')} |",
              flush=True)


if __name__ == "__main__":
    main()
