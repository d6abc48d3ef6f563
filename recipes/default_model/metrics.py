"""The default model's held-out report: errors against GFN2-xTB on the test molecules of the training split, by
element, by total charge and for single molecules against non-covalent pairs, with a parity plot.

    python metrics.py MODEL [--config train_v2.yaml] [--data DIR] [--set test|validation] [--plot parity.png]
        [--no-transfers]

The split is the one ``openmm-tensornet train CONFIG`` made (same data, split, split_by and seed), so the test
molecules were never seen in training. Prints markdown tables (pasted into openmm_tensornet/models/default-metrics.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from openmm_tensornet import load_model
from openmm_tensornet.io.data import read_dataset
from openmm_tensornet.training.error_breakdown import error_breakdown, markdown, parity_plot
from openmm_tensornet.training.trainer import Batches, TrainingConfig, split_records, within_max_force

HERE = Path(__file__).resolve().parent


# data.sh's layout of one shard: per temperature (300, 600, 1000 K) 4 MD frames, each followed by its 2 displaced
# copies, then 6 bond distortions; 42 records. data_v3.py adds 4 hydrogen transfers after them (46 records). A shard
# that lost records (SCF failures) has another count and its records cannot be told apart by position.
TEMPERATURES, FRAMES, COPIES, DISTORTIONS, TRANSFERS = (300, 600, 1000), 4, 2, 6, 4
FULL_SHARD = len(TEMPERATURES) * FRAMES * (1 + COPIES) + DISTORTIONS
# The files other scripts write for a molecule NAME (NAME.SUFFIX, in the data folder or their own output folder),
# and what their records are.
ADDED = {
    ".through-space.npz": "hydrogen moved through space (through_space.py)",
    ".contacts.npz": "hydrogen's atom pulled to an acceptor (contacts.py)",
    ".protons.npz": "hydrogen pulled onto an acceptor (contacts.py --pulled hydrogen)",
    ".motif.npz": "hydrogen pulled onto a ring from a folded ammonium chain (breaks/motif.py)",
}


def sample_kind(index: int, records_in_shard: int, source: str = "") -> str:
    """How data.sh (or data_v3.py, through_space.py, contacts.py, breaks/motif.py) made record ``index`` of a shard
    (file ``source``) of ``records_in_shard`` records."""
    for suffix, kind in ADDED.items():
        if source.endswith(suffix):
            return kind
    if records_in_shard not in (FULL_SHARD, FULL_SHARD + TRANSFERS):
        return "shard with lost records (kind unknown)"
    per_temperature = FRAMES * (1 + COPIES)
    if index >= FULL_SHARD:
        return "hydrogen moved towards another heavy atom"
    if index >= len(TEMPERATURES) * per_temperature:
        return "bond stretched/compressed"
    temperature = TEMPERATURES[index // per_temperature]
    return f"{temperature} K MD frame" if index % (1 + COPIES) == 0 else f"{temperature} K MD frame, displaced"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--config", type=Path, default=HERE / "train_v2.yaml")
    parser.add_argument("--data", type=Path, help="the data set (default: the config's)")
    parser.add_argument("--set", choices=["test", "validation"], default="test")
    parser.add_argument("--plot", type=Path, default=Path("parity.png"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-transfers", action="store_true",
                        help="leave out data_v3.py's and through_space.py's hydrogen transfers and contacts.py's and "
                             "breaks/motif.py's pulls: data.sh's configurations only, comparable with a report on "
                             "data.sh's set")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainingConfig.from_yaml(args.config)
    molecules = read_dataset(args.data or config.data)
    _, validation, test = split_records(molecules, config)

    def kind(molecule: int, index: int) -> str:
        return sample_kind(index, len(molecules[molecule]), molecules[molecule].source)

    # The records training left out (max_force: clashing atoms, failed labels) are left out here too.
    records, left_out = within_max_force(molecules, test if args.set == "test" else validation, config.max_force)
    if args.no_transfers:
        records = [r for r in records if not kind(r.molecule, r.index).startswith("hydrogen")]
    model = load_model(args.model)
    result = error_breakdown(model, Batches(molecules, records, torch.float32))
    conformational = np.abs(result.conformational_errors()).mean() * 1000
    forces = np.concatenate([(p - r).ravel() for p, r in zip(result.force_predicted, result.force_reference)])
    print(f"{args.set} set: {len({result.molecule[i] for i in range(len(result.atoms))})} molecules never seen in "
          f"training, {len(result.atoms)} configurations"
          + (f" ({len(left_out)} left out: a force component above max_force {config.max_force})" if left_out
             else ""))
    print(f"conformational energy MAE {conformational:.2f} meV/atom; forces MAE {1000 * np.abs(forces).mean():.1f} "
          f"meV/Å, RMSE {1000 * np.sqrt((forces ** 2).mean()):.1f} meV/Å\n")
    print("\n".join(markdown(result.by_element(), "element", ["atoms", "forces_mae_meV_per_A",
                                                              "forces_rmse_meV_per_A"])) + "\n")
    columns = ["molecules", "records", "conformational_energy_mae_meV_per_atom", "forces_mae_meV_per_A",
               "forces_rmse_meV_per_A"]
    print("\n".join(markdown(result.table(lambda r: f"{result.charge[r]:+d}"), "total charge (e)", columns)) + "\n")
    print("\n".join(markdown(result.table(lambda r: "pair (non-covalent)" if result.dimer[r] else "single molecule"),
                             "kind", columns)))
    print("\n" + "\n".join(markdown(result.table(lambda r: kind(result.molecule[r], result.index[r])),
                                    "sample (data.sh)", columns)))
    parity_plot(result, args.plot, title=f"{args.model.name}: {args.set} molecules (GFN2-xTB)")
    print(f"\nparity plot: {args.plot}")


if __name__ == "__main__":
    main()
