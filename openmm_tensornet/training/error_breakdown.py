"""Errors of a model on a data set, broken down by element, by total charge and by kind of record (the default
model's report, ``recipes/default_model/metrics.py``), with a parity plot.

Energies are compared as *conformational* energies: each molecule's mean signed error is removed first (what MD
and relative energies feel; a constant offset per molecule does not move atoms), per atom. Forces are compared
component by component and grouped by the element of the atom they act on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from ..elements import ELEMENTS

__all__ = ["ErrorBreakdown", "error_breakdown", "markdown", "parity_plot"]


@dataclass
class ErrorBreakdown:
    """Per-record and per-atom errors of one evaluation (eV, eV/Å), with the labels to group them by."""

    energy_reference: List[float] = field(default_factory=list)  # per record, eV
    energy_predicted: List[float] = field(default_factory=list)
    atoms: List[int] = field(default_factory=list)  # per record
    molecule: List[int] = field(default_factory=list)  # per record: index into the data set's molecules
    index: List[int] = field(default_factory=list)  # per record: its index among its molecule's configurations
    charge: List[int] = field(default_factory=list)  # per record
    dimer: List[bool] = field(default_factory=list)  # per record: a non-covalent pair ("A+B" names)
    force_reference: List[np.ndarray] = field(default_factory=list)  # per record, [N, 3]
    force_predicted: List[np.ndarray] = field(default_factory=list)
    z: List[np.ndarray] = field(default_factory=list)  # per record, [N]

    def conformational(self, energies) -> np.ndarray:
        """Per record: the energy minus its molecule's mean, per atom (the unit of ``energies`` per atom)."""
        values = np.asarray(energies, dtype=np.float64)
        molecule = np.asarray(self.molecule)
        centred = values.copy()
        for m in np.unique(molecule):
            chosen = molecule == m
            centred[chosen] -= values[chosen].mean()
        return centred / np.asarray(self.atoms)

    def conformational_errors(self) -> np.ndarray:
        """Per record: (predicted - reference - that molecule's mean of the same) / atoms, eV/atom."""
        return self.conformational(np.asarray(self.energy_predicted) - np.asarray(self.energy_reference))

    def table(self, key) -> Dict[object, Dict[str, float]]:
        """Rows of errors grouped by ``key(record index) -> group``: records, molecules, conformational energy MAE
        (meV/atom), force MAE and RMSE (meV/Å)."""
        conformational = self.conformational_errors()
        groups: Dict[object, List[int]] = defaultdict(list)
        for record in range(len(self.atoms)):
            groups[key(record)].append(record)
        rows = {}
        for group, records in sorted(groups.items(), key=lambda item: str(item[0])):
            forces = np.concatenate([(self.force_predicted[r] - self.force_reference[r]).ravel() for r in records])
            rows[group] = {"records": len(records), "molecules": len({self.molecule[r] for r in records}),
                           "conformational_energy_mae_meV_per_atom": 1000 * float(np.abs(conformational[records]).mean()),
                           "forces_mae_meV_per_A": 1000 * float(np.abs(forces).mean()),
                           "forces_rmse_meV_per_A": 1000 * float(np.sqrt((forces ** 2).mean()))}
        return rows

    def by_element(self) -> Dict[str, Dict[str, float]]:
        """Force errors on the atoms of each element: atoms (records x atoms), MAE and RMSE (meV/Å)."""
        z = np.concatenate(self.z)
        error = np.concatenate([(p - r) for p, r in zip(self.force_predicted, self.force_reference)])
        rows = {}
        for element in sorted(set(z.tolist())):
            chosen = error[z == element]
            rows[ELEMENTS[int(element)][0]] = {"atoms": int(chosen.shape[0]),
                                      "forces_mae_meV_per_A": 1000 * float(np.abs(chosen).mean()),
                                      "forces_rmse_meV_per_A": 1000 * float(np.sqrt((chosen ** 2).mean()))}
        return rows


def error_breakdown(model, batches, batch_size: int = 32) -> ErrorBreakdown:
    """Evaluate ``model`` on every record of ``batches`` (an :class:`openmm_tensornet.training.trainer.Batches`)."""
    from .trainer import _RECIPE

    result = ErrorBreakdown()
    was_training = model.training
    model.eval()
    records = batches.records
    position = 0
    device = next(model.parameters()).device
    for batch in batches.epoch(batch_size, None, device):
        out = _RECIPE.evaluate(model, batch)
        count = int(batch["energy"].shape[0])
        index = batch["batch"].cpu()
        for k in range(count):
            record = records[position + k]
            molecule = batches.molecules[record.molecule]
            atoms = (index == k).nonzero().flatten()
            result.energy_reference.append(float(batch["energy"][k]))
            result.energy_predicted.append(float(out.energy[k].detach()))
            result.atoms.append(int(atoms.numel()))
            result.molecule.append(record.molecule)
            result.index.append(record.index)
            result.charge.append(int(round(float(molecule.charge))))
            result.dimer.append("+" in molecule.name)
            result.force_reference.append(batch["forces"][atoms].detach().cpu().double().numpy())
            result.force_predicted.append(out.forces[atoms].detach().cpu().double().numpy())
            result.z.append(batch["z"][atoms].cpu().numpy())
        position += count
    model.train(was_training)
    return result


def parity_plot(breakdown: ErrorBreakdown, path, title: str = "") -> None:
    """Two panels: conformational energy (each molecule's mean removed, meV/atom) and force components (eV/Å),
    model against reference, with the MAE in each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference_conf = 1000 * breakdown.conformational(breakdown.energy_reference)
    predicted_conf = 1000 * breakdown.conformational(breakdown.energy_predicted)
    forces_ref = np.concatenate([f.ravel() for f in breakdown.force_reference])
    forces_pred = np.concatenate([f.ravel() for f in breakdown.force_predicted])
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for axis, x, y, label, unit in ((axes[0], reference_conf, predicted_conf, "conformational energy", "meV/atom"),
                                    (axes[1], forces_ref, forces_pred, "force component", "eV/Å")):
        axis.hexbin(x, y, gridsize=80, bins="log", mincnt=1, cmap="viridis")
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        axis.plot([low, high], [low, high], color="black", linewidth=0.6)
        axis.set_xlabel(f"GFN2-xTB {label} ({unit})")
        axis.set_ylabel(f"model {label} ({unit})")
        axis.set_title(f"MAE {np.abs(y - x).mean():.3g} {unit}")
        axis.set_aspect("equal")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(rows: Dict[object, Dict[str, float]], first: str, columns: Sequence[str]) -> List[str]:
    """A markdown table of ``rows`` (group -> values), the group in column ``first``."""
    names = {"records": "records", "molecules": "molecules", "atoms": "atoms",
             "conformational_energy_mae_meV_per_atom": "conformational energy MAE (meV/atom)",
             "forces_mae_meV_per_A": "forces MAE (meV/Å)", "forces_rmse_meV_per_A": "forces RMSE (meV/Å)"}
    lines = [f"| {first} | " + " | ".join(names[c] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for group, values in rows.items():
        cells = [f"{values[c]:.0f}" if c in ("records", "molecules", "atoms") else f"{values[c]:.1f}"
                 if c.startswith("forces") else f"{values[c]:.2f}" for c in columns]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines

