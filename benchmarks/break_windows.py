"""Does a model follow GFN2-xTB where an earlier model broke a bond in MD? (issue 15)

    python benchmarks/break_windows.py [MODEL ...] [--windows recipes/default_model/breaks/*.npz]

Each window (written by ``stability_replay.py --frames``) holds the last 0.5 ps before a stability run broke, with
GFN2-xTB's energies relative to its first frame. For every model (default: the shipped one) this prints the
model's energy along the window, relative to the same first frame, against GFN2-xTB's: at the end of the window
(where the broken model had its hole) and the RMS difference over the window. A model that has learnt the wall
climbs with GFN2-xTB; the broken model stays flat or falls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from openmm_tensornet import load_default_model, load_model
from openmm_tensornet.io.data import Molecule
from openmm_tensornet.training.error_breakdown import error_breakdown
from openmm_tensornet.training.trainer import Batches, Record
from openmm_tensornet.units import KJ_PER_MOL

BREAKS = Path(__file__).resolve().parent.parent / "recipes" / "default_model" / "breaks"


def model_energies(model, window) -> np.ndarray:
    """The model's energies (kJ/mol) of a window's frames, relative to its first frame."""
    positions = window["positions_angstrom"]
    frames = len(positions)
    molecule = Molecule(name="window", z=window["z"], positions=positions, energy=np.zeros(frames),
                        forces=np.zeros_like(positions), charge=float(window["charge"]))
    result = error_breakdown(model, Batches([molecule], [Record(0, k) for k in range(frames)], torch.float32))
    energy = np.asarray(result.energy_predicted) * KJ_PER_MOL["eV"]
    return energy - energy[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="model files (default: the shipped default model)")
    parser.add_argument("--windows", nargs="+", type=Path, default=sorted(BREAKS.glob("*.npz")))
    args = parser.parse_args()
    models = {str(path): load_model(path) for path in args.models} or {"default (shipped)": load_default_model()}
    print("| window | model | model at the end (kJ/mol) | GFN2-xTB at the end | RMS model - GFN2-xTB |")
    print("|---|---|---|---|---|")
    for path in args.windows:
        window = np.load(path)
        reference = window["xtb_kj_per_mol"]
        for name, model in models.items():
            energy = model_energies(model, window)
            rms = float(np.sqrt(np.mean((energy - reference) ** 2)))
            print(f"| {path.name} | {name} | {energy[-1]:+.1f} | {reference[-1]:+.1f} | {rms:.1f} |")


if __name__ == "__main__":
    main()
