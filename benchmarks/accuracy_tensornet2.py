"""Accuracy: openmm-tensornet vs torchmd-net 3.1 on checkpoints written as torchmd-train writes them (float64).

Run from the repository root after `pip install ".[test]"`:  python benchmarks/accuracy_tensornet2.py
Prints a Markdown table (copied into benchmarks/README.md). torchmd-net evaluates with its default path (warp
kernels). Rows: TensorNet2 (q_dim 8, 0/1/2 layers, O(3)/SO(3), output Scalar, Coulomb over all pairs, reaction
field at 6 Å, ZBL repulsion) and TensorNet/TensorNet2 with the Atomref, ZBL and D2 priors. Each row: 5 molecules
of 22 atoms (atoms as close as 0.7 Å, so ZBL matters), total charge -1/0/+1, in vacuum; for the Scalar and
reaction-field rows also 5 periodic boxes (12.5 Å) filled with 104 atoms, so pairs cross the faces. Errors: max |E - E_ref| / |E_ref|
and max |F - F_ref| / |F_ref| (norms).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import random_molecule  # noqa: E402
from reference_torchmdnet import torchmd_train_checkpoint  # noqa: E402

from openmm_tensornet import load_model  # noqa: E402

BASE = dict(embedding_dimension=32, num_rbf=16, max_z=20, cutoff_upper=4.5, max_num_neighbors=64)
BOX = torch.tensor([[12.5, 0.0, 0.0], [0.0, 12.5, 0.0], [0.0, 0.0, 12.5]], dtype=torch.float64)
SI_EV = dict(atomic_number=list(range(20)), distance_scale=1e-10, energy_scale=1.602176634e-19)
PRIORS = [{"ZBL": dict(SI_EV, cutoff_distance=3.0, max_num_neighbors=32)},
          {"D2": dict(SI_EV, cutoff_distance=10.0, max_num_neighbors=128)}, {"Atomref": {"max_z": 20}}]


def tensornet2(layers, group, output, repulsion=False):
    options = dict(BASE, model="tensornet2", num_layers=layers, equivariance_invariance_group=group, q_dim=8,
                   repulsion=repulsion)
    if output != "Scalar":
        options.update(output_model="ScalarPlusWeightedCoulomb", q_weights=[[1.0] * 8] * (layers + 1),
                       coulomb_cutoff=None if output == "all pairs" else 6.0)
    return options


def errors(path, periodic):
    from torchmdnet.models.model import load_model as torchmdnet_load

    reference, ours = torchmdnet_load(str(path), derivative=True), load_model(path)
    energy_error = force_error = 0.0
    for seed in range(5):
        box = BOX if periodic else None
        if periodic:  # 104 atoms fill 12 Å of the 12.5 Å box
            z, pos = random_molecule(104, seed=100 + seed, min_distance=0.7, density=0.06)
        else:
            z, pos = random_molecule(22, seed=100 + seed, min_distance=0.7, density=0.1)
        q = torch.tensor([float(seed % 3 - 1)], dtype=torch.float64)
        e, f = reference(z, pos, box=box, q=q)
        out = ours(z, pos, box=box, total_charge=q, compute_forces=True)
        energy_error = max(energy_error, float(((out.energy - e.reshape(-1)).abs() / e.abs()).max()))
        force_error = max(force_error, float((out.forces - f).norm() / f.norm()))
    return energy_error, force_error


def main() -> None:
    cases = []
    for layers in (0, 1, 2):
        for group in ("O(3)", "SO(3)"):
            for output in ("Scalar", "all pairs", "reaction field"):
                cases.append((f"tensornet2, {output}", layers, group, tensornet2(layers, group, output)))
    cases.append(("tensornet2, all pairs, repulsion", 2, "O(3)", tensornet2(2, "O(3)", "all pairs", True)))
    cases.append(("tensornet + Atomref, ZBL, D2", 2, "O(3)", dict(BASE, model="tensornet", num_layers=2,
                                                                   prior_model=PRIORS)))
    cases.append(("tensornet2 + Atomref, ZBL, D2", 2, "O(3)", dict(tensornet2(2, "O(3)", "reaction field"),
                                                                    prior_model=PRIORS)))
    print("| model | layers | group | vacuum: energy / force error | periodic: energy / force error |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for number, (name, layers, group, options) in enumerate(cases):
            path = Path(folder) / f"{number}.ckpt"
            torchmd_train_checkpoint(path, seed=number, mean=0.3, std=1.4, **options)
            vacuum = "%.1e / %.1e" % errors(path, False)
            periodic = "—" if "all pairs" in name else "%.1e / %.1e" % errors(path, True)
            print(f"| {name} | {layers} | {group} | {vacuum} | {periodic} |", flush=True)


if __name__ == "__main__":
    main()
