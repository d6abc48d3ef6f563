"""A diagnostic, not a recipe for a shipped model: can the model hold the wall of a break window when it is shown
that window's own path? (issue 15, breaks/README.md)

    python own_path.py [WINDOW.npz] [--pulls 12] [--output own-path]
    openmm-tensornet train train_own_path.yaml
    python ../../../benchmarks/break_windows.py training-own-path/model.pt

It labels every tenth frame of the window with GFN2-xTB, then runs ``--pulls`` hydrogen pulls
(``datagen.pull_contact(pulled="hydrogen")``) of the hydrogen that broke away onto the heavy atom it jumped to, from
frames 20, 22, ... of the window (its last 0.3 ps). The hydrogen is the one whose bond to its heavy atom grew most
over the window; the acceptor is the heavy atom nearest to it at the end. The records go to ``OUTPUT/NAME.npz``;
about 2 min on one core for dopamine. A model trained on them alone (``train_own_path.yaml``) has seen nothing
else, so it only says whether the architecture can hold the wall (and, with ``benchmarks/default_model_md.py
--model training-own-path/model.pt --only dopamine --environment vacuum``, whether the run then holds). The
molecule is a stability molecule, so no shipped model may train on these records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED, FIRST = 5, 20  # the pulls' generator seed, and the window frame the first pull starts from


def broken_hydrogen(positions: np.ndarray, z: np.ndarray, bonds: np.ndarray) -> tuple:
    """(hydrogen, its heavy atom, acceptor) of a window: the X-H bond that grew most from the first frame to the
    last, and the heavy atom nearest to that hydrogen at the end, other than its own."""
    from openmm_tensornet.training.datagen import hydrogen_pairs

    first, last = positions[0], positions[-1]
    pairs = hydrogen_pairs(z, bonds)
    growth = [np.linalg.norm(last[h] - last[d]) - np.linalg.norm(first[h] - first[d]) for h, d in pairs]
    hydrogen, donor = pairs[int(np.argmax(growth))]
    distance = np.linalg.norm(last - last[hydrogen], axis=1)
    distance[(z == 1) | (np.arange(len(z)) == donor)] = np.inf
    return hydrogen, donor, int(np.argmin(distance))


def main() -> None:
    from openmm_tensornet.io.data import write_molecule
    from openmm_tensornet.training.datagen import XTB, covalent_bonds, label, pull_contact, records_molecule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("window", type=Path, nargs="?", default=HERE / "dopamine-vacuum.npz")
    parser.add_argument("--pulls", type=int, default=12)
    parser.add_argument("--output", type=Path, default=HERE / "own-path")
    args = parser.parse_args()
    window = np.load(args.window)
    z, frames, charge = window["z"], window["positions_angstrom"], int(window["charge"])
    bonds = covalent_bonds(z, frames[0])
    candidate = broken_hydrogen(frames, z, bonds)
    most = (len(frames) - 1 - FIRST) // 2 + 1
    if not 0 <= args.pulls <= most:
        raise SystemExit(f"--pulls must be 0 to {most} (one every second frame from frame {FIRST} on).")
    records = []
    for frame in frames[::10]:
        label(XTB(z, frame, charge), frame.copy(), records)
    rng = np.random.default_rng(SEED)
    for k in range(args.pulls):
        start = frames[FIRST + 2 * k]
        pull_contact(XTB(z, start, charge), [start], z, bonds, rng, records, pulled="hydrogen", candidate=candidate)
    name = args.window.stem
    molecule = records_molecule(name, z, charge, records, "GFN2-xTB")
    path = write_molecule(molecule, args.output / f"{name}.npz")
    print(f"{path}: {len(molecule)} records; pulled H{candidate[0]} from {candidate[1]} onto {candidate[2]}")


if __name__ == "__main__":
    main()
