"""Why did a stability run break? Replay it and compare the model with GFN2-xTB where it broke (issue 15).

    python benchmarks/stability_replay.py NAME [--model PATH] [--picoseconds 100] [--window 0.5] [--every 10]
        [--frames FILE.npz]

NAME is a molecule of ``benchmarks/default_model_md.py``'s set. The replay is that script's vacuum run (pure ML), step
for step: the same molecule, minimisation, seed and 1 fs Langevin at 300 K on the CPU platform with one thread. It
stops when a bond of the molecule has changed by more than 0.4 Å (the benchmark's limit) and keeps the last
``--window`` ps before that, a frame every ``--every`` steps. For that window it prints:

- the bond that broke and the atoms nearest to its lighter atom at the end (where it went);
- the model's and GFN2-xTB's (tblite) energy of each frame, both relative to the window's first frame. Where the
  model's curve falls and GFN2-xTB's climbs, the model has a hole there: the run followed a path that the
  reference forbids.

Step for step holds on the machine (CPU, and builds of OpenMM and torch) that ran the benchmark. 100 ps of MD is
chaotic: elsewhere the last bits of the forces differ and the trajectory drifts apart, so a break may come sooner,
later or not at all (a fresh machine's rerun of the vacuum set, 2026-12-05, gave other bond maxima in each of its
28 runs). The windows kept in ``recipes/default_model/breaks/`` are the lasting record of a break.

``--frames`` writes the window (positions in Å, atomic numbers, charge, both energies in kJ/mol) for training data or
a closer look.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from pathlib import Path

import numpy as np
import openmm.unit as unit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import default_model_md as stability  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a molecule of the stability set, as named in its table")
    parser.add_argument("--model", type=Path, help="a model file (default: the shipped default model)")
    parser.add_argument("--picoseconds", type=float, default=100.0, help="give up after this long (default 100)")
    parser.add_argument("--window", type=float, default=0.5, help="ps kept before the break (default 0.5)")
    parser.add_argument("--every", type=int, default=10, help="steps between kept frames (default 10)")
    parser.add_argument("--frames", type=Path, help="write the kept frames here (.npz)")
    args = parser.parse_args()

    import torch

    from openmm_tensornet import TensorNetPotential, load_default_model, load_model
    from openmm_tensornet.training.datagen import XTB
    from openmm_tensornet.units import KJ_PER_MOL

    found = [e for e in stability.entries("all") if e.name == args.name]
    if not found:
        parser.error(f"{args.name!r} is not in the set; names: {[e.name for e in stability.entries('all')]}")
    if args.every < 1 or args.window <= 0:
        parser.error("--every must be at least 1 step and --window more than 0 ps")
    torch.set_num_threads(1)
    potential = TensorNetPotential(load_model(args.model) if args.model else load_default_model())
    topology, positions, charge = found[0].molecule()
    system = potential.createSystem(topology, charge=charge)
    context, integrator = stability.start_langevin(positions, system, 1.0, 1)
    bonds = stability.bonds_of(topology, range(len(positions)))
    reference = stability._lengths(stability._positions(context), bonds)

    kept = deque(maxlen=max(1, int(round(args.window * 1000 / args.every))))
    step, total, change = 0, int(round(args.picoseconds * 1000)), np.zeros(len(bonds))
    while step < total:
        integrator.step(args.every)
        step += args.every
        state = context.getState(getPositions=True, getEnergy=True)
        x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        if not np.isfinite(x).all():
            print(f"{args.name}: positions became NaN between {(step - args.every) / 1000:.3f} and "
                  f"{step / 1000:.3f} ps, before any bond changed by more than {stability.MAX_BOND_CHANGE} Å; "
                  f"rerun with a smaller --every to see the last finite frames")
            return
        kept.append((step, x * 10.0, state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)))
        change = np.abs(stability._lengths(x, bonds) - reference)
        if change.max() > stability.MAX_BOND_CHANGE:
            break
    if step >= total:
        print(f"{args.name}: no bond changed by more than {stability.MAX_BOND_CHANGE} Å in {args.picoseconds} ps "
              f"(largest {change.max():.3f} Å); nothing to explain")
        return

    atoms = list(topology.atoms())
    names = [f"{a.element.symbol}{a.index}" for a in atoms]
    z = np.array([a.element.atomic_number for a in atoms])
    broken = bonds[int(change.argmax())]
    moved = min(broken, key=lambda i: atoms[i].element.mass.value_in_unit(unit.dalton))
    last = kept[-1][1]
    distance = np.linalg.norm(last - last[moved], axis=1)
    nearest = [f"{names[j]} {distance[j]:.2f} Å" for j in np.argsort(distance)[1:4]]
    print(f"{args.name} (charge {charge:+d}): bond {names[broken[0]]}-{names[broken[1]]} changed by "
          f"{change.max():.2f} Å at {step / 1000:.3f} ps; nearest to {names[moved]} then: {', '.join(nearest)}")

    xtb = XTB(z, kept[0][1], charge)
    steps = np.array([s for s, _, _ in kept])
    model = np.array([e for _, _, e in kept])
    reference_energy = np.array([xtb(x)[0] * KJ_PER_MOL["eV"] for _, x, _ in kept])
    model, reference_energy = model - model[0], reference_energy - reference_energy[0]
    print("| time (ps) | model (kJ/mol) | GFN2-xTB (kJ/mol) | model - GFN2-xTB |")
    print("|---|---|---|---|")
    shown = sorted(set(range(0, len(kept), max(1, len(kept) // 10))) | set(range(max(0, len(kept) - 5), len(kept))))
    for k in shown:
        print(f"| {steps[k] / 1000:.3f} | {model[k]:+.1f} | {reference_energy[k]:+.1f} | "
              f"{model[k] - reference_energy[k]:+.1f} |")
    error = model - reference_energy
    print(f"model - GFN2-xTB over the window: RMS {np.sqrt(np.mean(error ** 2)):.1f} kJ/mol, at the break "
          f"{error[-1]:+.1f} kJ/mol")
    if args.frames:
        np.savez(args.frames, positions_angstrom=np.array([x for _, x, _ in kept]), z=z, charge=charge,
                 steps=steps, model_kj_per_mol=model, xtb_kj_per_mol=reference_energy)
        print(f"wrote {len(kept)} frames to {args.frames}")


if __name__ == "__main__":
    main()
