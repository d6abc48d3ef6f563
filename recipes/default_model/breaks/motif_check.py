"""How deep is a model's hole where an ammonium proton sits on a ring carbon? (issue 15, after motif.py)

    python motif_check.py [MODEL ...] [--motif motif] [--held-out ../held-out.json] [--each]

For every ``MOTIF/NAME.motif.npz`` of motif.py, the records whose N-H hydrogen has left its nitrogen (over 1.3 Å)
for a carbon (within 1.3 Å) are the proton-over frames. A molecule's depth is the model's mean energy error
(model - GFN2-xTB) on those frames minus its mean error on the molecule's other frames, in kJ/mol: negative means
the model puts the proton-over geometries too low, the hole that let dopamine's proton jump (breaks/README.md).
Prints, per model, the mean depth and the forces MAE of the training molecules and of the held-out ones (named in
``--held-out``) apart; ``--each`` lists every molecule. A molecule with no proton-over frame, or only such frames, has
no depth: it is left out of both figures, and the count left out is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OVER = 1.3  # Å: the proton is off its nitrogen beyond this, and on a carbon within it


def proton_over(positions: np.ndarray, z: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """[frames] bool: a hydrogen bonded to a nitrogen in the first frame (``bonds``) is over ``OVER`` from it and
    within ``OVER`` of a carbon."""
    from openmm_tensornet.training.datagen import hydrogen_pairs

    pairs = hydrogen_pairs(z, bonds, heavy=7)
    carbons = np.flatnonzero(z == 6)
    over = np.zeros(len(positions), dtype=bool)
    for hydrogen, nitrogen in pairs:
        off = np.linalg.norm(positions[:, hydrogen] - positions[:, nitrogen], axis=-1) > OVER
        on = np.linalg.norm(positions[:, [hydrogen]] - positions[:, carbons], axis=-1).min(axis=-1) < OVER
        over |= off & on
    return over


def main() -> None:
    import torch

    from openmm_tensornet import load_default_model, load_model
    from openmm_tensornet.io.data import read_molecule
    from openmm_tensornet.training.datagen import covalent_bonds
    from openmm_tensornet.training.error_breakdown import error_breakdown
    from openmm_tensornet.training.trainer import Batches, Record, read_held_out
    from openmm_tensornet.units import KJ_PER_MOL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="model files (default: the shipped default model)")
    parser.add_argument("--motif", type=Path, default=HERE / "motif", help="motif.py's output folder")
    parser.add_argument("--held-out", type=Path, default=HERE.parent / "held-out.json")
    parser.add_argument("--each", action="store_true", help="list every molecule's depth")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = sorted(args.motif.glob("*.motif.npz"))
    if not paths:
        raise SystemExit(f"{args.motif}: no NAME.motif.npz files; run motif.py first.")
    held_out = {name for names in read_held_out(args.held_out).values() for name in names}
    molecules = [read_molecule(path) for path in paths]
    overs = [proton_over(m.positions, np.asarray(m.z), covalent_bonds(np.asarray(m.z), m.positions[0]))
             for m in molecules]
    usable = [(molecule, over) for molecule, over in zip(molecules, overs) if over.any() and not over.all()]
    if len(usable) < len(molecules):
        print(f"{len(molecules) - len(usable)} of {len(molecules)} molecules left out: no proton-over frame, or "
              "only such frames\n")
    print("| model | molecules | proton-over frames | mean depth (kJ/mol) | deepest | forces MAE (meV/Å) |")
    print("|---|---|---|---|---|---|")
    models = {str(path): load_model(path) for path in args.models} or {"default (shipped)": load_default_model()}
    for name, model in models.items():
        rows = []
        for molecule, over in usable:
            result = error_breakdown(model, Batches([molecule], [Record(0, i) for i in range(len(molecule))],
                                                    torch.float32))
            error = (np.asarray(result.energy_predicted) - np.asarray(result.energy_reference)) * KJ_PER_MOL["eV"]
            forces = np.concatenate([np.abs(p - r).ravel() for p, r in zip(result.force_predicted,
                                                                             result.force_reference)])
            rows.append((molecule.name in held_out, molecule.name, int(over.sum()),
                         error[over].mean() - error[~over].mean(), forces))
        for held, label in ((False, "training"), (True, "held-out")):
            part = [row for row in rows if row[0] == held]
            if not part:
                continue
            depth = np.array([row[3] for row in part])
            forces = np.concatenate([row[4] for row in part]).mean() * 1000
            print(f"| {name} ({label}) | {len(part)} | {sum(row[2] for row in part)} | {depth.mean():+.1f} | "
                  f"{depth.min():+.1f} | {forces:.0f} |")
            if args.each:
                for _, molecule, count, value, _ in part:
                    print(f"|   {molecule} | 1 | {count} | {value:+.1f} | | |")


if __name__ == "__main__":
    main()
