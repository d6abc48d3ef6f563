"""Reports of MM -> ML/MM free energies: ``free_energy.md`` and plots for one leg, ``cycle.md`` for several."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from .free_energy_analysis import KJ_PER_KCAL, Estimate

LABELS = {"mbar": "MBAR", "ti": "TI (trapezoid)", "neq": "NEQ (BAR)", "jarzynski": "NEQ forward (Jarzynski)"}


def _row(label: str, estimate: Estimate) -> str:
    return (f"| {label} | {estimate.value:.2f} ± {estimate.sigma:.2f} | "
            f"{estimate.value_kcal:.2f} ± {estimate.sigma_kcal:.2f} |")


def _estimates_table(estimates: Mapping[str, Estimate]) -> List[str]:
    lines = ["| method | ΔG (kJ/mol) | ΔG (kcal/mol) |", "|---|---|---|"]
    lines += [_row(LABELS.get(method, method), estimate) for method, estimate in estimates.items()
              if estimate is not None]
    return lines


def write_leg_report(result, output: Optional[Path] = None) -> Path:
    """``free_energy.md``, ``dEdl.png``, ``work.png`` and ``overlap.png`` for a ``LegResult`` in ``output``."""
    output = Path(output or result.output)
    output.mkdir(parents=True, exist_ok=True)
    lambdas = result.lambdas
    lines = [f"# MM → ML/MM free energy: {result.name}", "",
             f"ΔG of switching lambda_interpolate 0 (MM) → 1 (ML/MM) at {result.temperature:.2f} K; "
             "σ is one standard error.", ""]
    lines += _estimates_table(result.estimates)
    lines += ["", "## Samples", "",
              f"- replica-exchange iterations stored: {result.iterations} "
              f"({result.equilibration_iterations} discarded as equilibration)",
              f"- decorrelated samples used by MBAR (all states): {result.samples}",
              f"- non-equilibrium switches: {len(result.forward_work)} forward, {len(result.reverse_work)} reverse",
              f"- storage: `{result.storage}`", "",
              "## ⟨dE/dλ⟩ per window (kJ/mol)", "", "| λ | ⟨dE/dλ⟩ | SEM |", "|---|---|---|"]
    lines += [f"| {x:.4f} | {m:.3f} | {s:.3f} |" for x, m, s in zip(lambdas, result.dEdl_mean, result.dEdl_sem)]
    lines += ["", "## MBAR overlap matrix", "",
              "Neighbouring windows should overlap by a few percent or more (off-diagonal entries).", "",
              "| | " + " | ".join(f"{x:.2f}" for x in lambdas) + " |", "|---" * (len(lambdas) + 1) + "|"]
    lines += [f"| {x:.2f} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for x, row in zip(lambdas, result.overlap)]
    path = output / "free_energy.md"
    path.write_text("\n".join(lines) + "\n")
    _plots(result, output)
    return path


def _plots(result, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.errorbar(result.lambdas, result.dEdl_mean, yerr=result.dEdl_sem, marker="o", capsize=3)
    axis.set_xlabel("lambda_interpolate")
    axis.set_ylabel("⟨dE/dλ⟩ (kJ/mol)")
    axis.set_title(f"{result.name}: TI integrand")
    figure.tight_layout()
    figure.savefig(output / "dEdl.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5, 3.5))
    if len(result.forward_work) or len(result.reverse_work):
        works = np.concatenate([result.forward_work, -result.reverse_work])
        bins = np.linspace(works.min(), works.max(), 21) if np.ptp(works) > 0 else 10
        axis.hist(result.forward_work, bins=bins, alpha=0.6, label="forward W (0→1)")
        axis.hist(-result.reverse_work, bins=bins, alpha=0.6, label="−reverse W (1→0)")
        if "neq" in result.estimates and result.estimates["neq"] is not None:
            axis.axvline(result.estimates["neq"].value, color="k", linestyle="--", label="BAR ΔG")
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no switching run", ha="center", transform=axis.transAxes)
    axis.set_xlabel("work (kJ/mol)")
    axis.set_ylabel("count")
    figure.tight_layout()
    figure.savefig(output / "work.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(4, 3.5))
    image = axis.imshow(result.overlap, vmin=0.0, vmax=1.0, cmap="viridis")
    figure.colorbar(image, ax=axis)
    axis.set_title("MBAR overlap")
    figure.tight_layout()
    figure.savefig(output / "overlap.png", dpi=120)
    plt.close(figure)


def write_cycle_report(legs: Mapping, output: Path, difference=None) -> Dict[str, Dict[str, Estimate]]:
    """See :func:`openmm_tensornet.app.free_energy.cycle_report`."""
    if not legs:
        raise ValueError("cycle_report needs at least one leg.")
    if difference is None and len(legs) == 2:
        difference = tuple(legs)
    pairs = ([] if not difference else [tuple(difference)] if isinstance(difference[0], str)
             else [tuple(pair) for pair in difference])
    for pair in pairs:
        missing = [name for name in pair if name not in legs]
        if len(pair) != 2 or missing:
            raise ValueError(f"difference must name two of the legs {list(legs)}; got {pair!r}.")
    numbers: Dict[str, Dict[str, Estimate]] = {name: {m: e for m, e in leg.estimates.items() if e is not None}
                                               for name, leg in legs.items()}
    lines = ["# MM → ML/MM free-energy cycle", "", "σ is one standard error; a difference's σ is the square root "
             "of the sum of the legs' squared σ (independent runs).", ""]
    for name, estimates in list(numbers.items()):
        lines += [f"## {name}", ""] + _estimates_table(estimates) + [""]
    for a, b in pairs:
        label = f"{a} - {b}"
        numbers[label] = {method: Estimate(numbers[a][method].value - numbers[b][method].value,
                                           math.hypot(numbers[a][method].sigma, numbers[b][method].sigma))
                          for method in numbers[a] if method in numbers[b]}
        lines += [f"## ΔΔG = {label}", ""] + _estimates_table(numbers[label]) + [""]
    output.mkdir(parents=True, exist_ok=True)
    (output / "cycle.md").write_text("\n".join(lines))
    return numbers


__all__ = ["KJ_PER_KCAL", "write_cycle_report", "write_leg_report"]
