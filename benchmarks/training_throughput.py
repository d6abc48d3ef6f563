"""Training throughput against the batch size: configurations per second for one optimiser step (energy + force
loss, backward, AdamW) of the default model's successor (64 channels, 2 layers, 16 RBF, 5 Å) on its data set.

    python benchmarks/training_throughput.py DATA [--batch-sizes 16 32 64] [--steps 8] [--threads 2]

A short probe (``--steps`` steps per batch size after one warm-up step, random records of the training split);
the long-run figure is the trainer's own progress line ("configurations/s") over whole epochs.
"""

from __future__ import annotations

import argparse
import time

import torch

from openmm_tensornet.io.data import read_dataset
from openmm_tensornet.training.distributed import world_from_environment
from openmm_tensornet.training.trainer import (_RECIPE, Batches, TrainingConfig, _backward_share, fit_atomrefs,
                                               split_records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    molecules = read_dataset(args.data)
    config = TrainingConfig(data=args.data, model=dict(hidden_channels=64, num_layers=2, num_rbf=16, cutoff_upper=5.0,
                                                       max_z=18))
    training, _, _ = split_records(molecules, config)
    batches = Batches(molecules, training, torch.float32)
    hyper = dict(config.model, dtype="float32", dipole_head=False, polarizability_head=False,
                 elements=sorted({int(z) for m in molecules for z in m.z}))
    model = _RECIPE.build(hyper, fit_atomrefs(molecules, training[:2000], 18), 1.0)
    world = world_from_environment(torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    print("| batch size | configurations/s | one pass over the training split (min) |\n|---|---|---|")
    for size in args.batch_sizes:
        done, began = 0, time.perf_counter()
        for step, chosen in enumerate(batches.epoch_records(size, torch.Generator().manual_seed(0))):
            if step == 1:  # the first step warms up
                done, began = 0, time.perf_counter()
            optimizer.zero_grad()
            _backward_share(model, batches, chosen, world, torch.device("cpu"), config, _RECIPE)
            optimizer.step()
            done += len(chosen) if step else 0
            if step == args.steps:
                break
        rate = done / (time.perf_counter() - began)
        print(f"| {size} | {rate:.1f} | {len(training) / rate / 60:.0f} |", flush=True)


if __name__ == "__main__":
    main()
