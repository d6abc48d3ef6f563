"""Train our TensorNet and torchmd-net 3.1's TensorNet side by side: same data, split, hyper-parameters, loop, budget.

Both models go through ``openmm_tensornet.training.trainer.train`` (AdamW, warm-up, plateau, EMA, early stopping, atomref
baseline, zero-initialised last layer, RMS-force output scale); only the model implementation differs. Reports the
validation and test MAEs and the training throughput (molecules per second).

    python benchmarks/training_vs_torchmdnet.py DATA_DIR [--molecules 12] [--epochs 8] [--channels 32]

DATA_DIR is a data set from ``openmm-tensornet generate-data`` (e.g. recipes/default_model/data).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from openmm_tensornet.io.data import read_dataset
from openmm_tensornet.training.trainer import TensorNetRecipe, TrainingConfig, train


class TorchMDNetRecipe(TensorNetRecipe):
    """torchmd-net's TensorNet (``create_model``) behind the training loop, with the same baseline and scale."""

    def __init__(self, hyper):
        self.hyper = hyper

    def _args(self, hyper):
        return dict(model="tensornet", embedding_dimension=hyper["hidden_channels"], num_layers=hyper["num_layers"],
                    num_rbf=hyper["num_rbf"], rbf_type="expnorm", trainable_rbf=False, activation="silu",
                    cutoff_lower=0.0, cutoff_upper=hyper["cutoff_upper"], max_z=hyper.get("max_z", 128),
                    max_num_neighbors=128, equivariance_invariance_group="O(3)", static_shapes=False,
                    precision=64 if hyper.get("dtype") == "float64" else 32, derivative=True, atom_filter=-1,
                    prior_model=None, output_model="Scalar", reduce_op="sum", output_mlp_num_layers=0)

    def build(self, hyper, atomrefs, scale):
        from torchmdnet.models.model import create_model

        model = create_model(self._args(hyper), mean=torch.tensor(0.0), std=torch.tensor(scale))
        dtype = next(model.parameters()).dtype
        model.register_buffer("baseline", atomrefs[: hyper.get("max_z", 128)].to(dtype))
        with torch.no_grad():
            last = [m for m in model.output_model.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
        self.scale = scale
        return model

    def evaluate(self, model, batch):
        energy, forces = model(batch["z"], batch["pos"], batch["batch"], q=batch["charge"])
        baseline = torch.zeros_like(energy.view(-1)).index_add(0, batch["batch"], model.baseline[batch["z"]])
        return SimpleNamespace(energy=energy.view(-1) + baseline, forces=forces, dipole=None, polarizability=None)

    def save(self, model, path):
        torch.save(model.state_dict(), path)

    def load(self, path):
        state = torch.load(path, weights_only=True)
        model = self.build(self.hyper, state["baseline"], self.scale)
        model.load_state_dict(state)
        return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--molecules", type=int, default=12, help="use the first N molecules (sorted by name)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--output", default="/tmp/openmm-tensornet-training-benchmark")
    args = parser.parse_args()
    molecules = sorted(read_dataset(args.data), key=lambda m: m.name)[: args.molecules]
    hyper = dict(hidden_channels=args.channels, num_layers=2, num_rbf=32, cutoff_upper=5.0, max_z=18)
    rows = []
    for label, recipe in (("openmm-tensornet", None), ("torchmd-net 3.1", TorchMDNetRecipe(dict(hyper)))):
        config = TrainingConfig(data=args.data, output=str(Path(args.output) / label.split()[0]), model=dict(hyper),
                                epochs=args.epochs, batch_size=16, lr=1e-3, warmup_steps=50, ema_decay=0.99,
                                split=(0.7, 0.15, 0.15), split_by="record", seed=7, resume=False, progress=False)
        start = time.perf_counter()
        result = train(config, molecules=molecules, recipe=recipe)
        seconds = time.perf_counter() - start
        records = sum(len(m) for m in molecules) * 0.7
        best = min(result.history, key=lambda row: row["val_loss"])
        rows.append((label, best["val_forces_mae_meV_per_A"], best["val_energy_per_atom_mae_meV"],
                     result.test["forces_mae_meV_per_A"], result.test["energy_per_atom_mae_meV"],
                     records * len(result.history) / seconds, seconds))
    print(f"{len(molecules)} molecules, {sum(len(m) for m in molecules)} records, split by record 70/15/15, "
          f"{args.epochs} epochs, {args.channels} channels, 2 layers, 32 RBF, 5 Å, float32, "
          f"{torch.get_num_threads()} threads")
    print("| model | val forces MAE (meV/Å) | val energy MAE (meV/atom) | test forces MAE (meV/Å) | "
          "test energy MAE (meV/atom) | training molecules/s | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]:.1f} | {row[2]:.2f} | {row[3]:.1f} | {row[4]:.2f} | {row[5]:.1f} | {row[6]:.0f} |")


if __name__ == "__main__":
    main()
