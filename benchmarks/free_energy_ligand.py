"""MM -> ML/MM free-energy correction of a ligand, end to end, with its figures (for benchmarks/README.md).

Runs :func:`openmm_tensornet.ligand_legs` on openmmtools' T4 lysozyme L99A ligand (p-xylene, MOL2 as shipped) or any
ligand file, and prints a Markdown table: Delta G +- sigma per leg and method, the cycle's differences, wall time and
the sampling speed (ns/day summed over replicas; replica exchange and switching both counted).

    python benchmarks/free_energy_ligand.py --legs vacuum,solvent --iterations 100 --output /tmp/fe
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ligand", default=str(ROOT / "systems" / "t4-lysozyme-l99a-mol2" / "ligand.mol2"))
    parser.add_argument("--protein", default=None)
    parser.add_argument("--legs", default="vacuum,solvent")
    parser.add_argument("--complex-vacuum", action="store_true")
    parser.add_argument("--lambdas", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--steps-per-iteration", type=int, default=50)
    parser.add_argument("--neq-switches", type=int, default=10)
    parser.add_argument("--neq-steps", type=int, default=200)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--output", default="free_energy_benchmark")
    args = parser.parse_args()

    from openmm_tensornet import ligand_legs

    legs = args.legs.split(",")
    began = time.perf_counter()
    result = ligand_legs(args.ligand, args.protein, legs, output=args.output, complex_solvent=not args.complex_vacuum,
                         lambdas=list(np.linspace(0, 1, args.lambdas)), iterations=args.iterations,
                         steps_per_iteration=args.steps_per_iteration, equilibration_iterations=5,
                         neq_switches=args.neq_switches, neq_steps=args.neq_steps, platform=args.platform, seed=1)
    seconds = time.perf_counter() - began
    steps = len(legs) * (args.lambdas * (args.iterations + 5) * args.steps_per_iteration
                         + 2 * args.neq_switches * args.neq_steps)
    ns_per_day = steps * 1e-6 / seconds * 86400  # 1 fs steps
    print("| leg | MBAR | TI | NEQ (BAR) | Jarzynski (forward) | samples | min. neighbour overlap |")
    print("|---|---|---|---|---|---|---|")
    for name, numbers in result["cycle"].items():
        cells = [f"{numbers[m].value:.2f} ± {numbers[m].sigma:.2f}" if m in numbers else "—"
                 for m in ("mbar", "ti", "neq", "jarzynski")]
        leg = result["legs"].get(name)
        extra = ([str(leg.samples), f"{min(leg.overlap[k, k + 1] for k in range(len(leg.lambdas) - 1)):.3f}"]
                 if leg is not None else ["", ""])
        print(f"| {name} | " + " | ".join(cells + extra) + " |")
    print(f"\nwall time {seconds:.0f} s for {len(legs)} legs, {steps} MD steps of 1 fs in all: {ns_per_day:.2f} ns/day "
          f"(kJ/mol; sigma one standard error)")


if __name__ == "__main__":
    main()
