"""Accuracy: openmm-tensornet vs torchmd-net 3.1 TensorNet on identical random weights (float64).

Run from the repository root after `pip install ".[test]"`:  python benchmarks/accuracy_vs_torchmdnet.py
Prints a Markdown table (copied into benchmarks/README.md). 5 molecules of 22 atoms, total charge -1/0/+1,
32 channels, 16 RBFs, cutoff 4.5 Å; errors are max |E - E_ref| / |E_ref| and max |F - F_ref| / |F_ref|.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint
from conftest import random_molecule
from openmm_tensornet import load_model
from torchmdnet.models.model import load_model as tmn_load
import torchmdnet.models.tensornet as T
CKPT = Path(__file__).resolve().parent / "_agreement.ckpt"
rows = []
for path in ("warp","pytorch"):
    if path=="pytorch":
        for n in ("compose_tensor","decompose_tensor","tensor_matmul_o3","tensor_matmul_so3"): setattr(T,n,getattr(T,"_"+n))
    for layers in (0,1,2):
        for group in ("O(3)","SO(3)"):
            args = torchmdnet_args(num_layers=layers, equivariance_invariance_group=group, embedding_dimension=32, num_rbf=16)
            ref = random_torchmdnet_model(args, seed=layers, mean=0.5, std=1.2)
            if path=="pytorch":
                for m in ref.modules():
                    if hasattr(m,"opt"): m.opt=False
            write_checkpoint(ref, args, str(CKPT))
            ours = load_model(str(CKPT), torchmdnet_warp=(path=="warp"))
            if path=="warp": ref = tmn_load(str(CKPT))
            ee=ff=0.0
            for seed in range(5):
                z,pos = random_molecule(22, seed=100+seed)
                q = torch.tensor([float(seed%3-1)],dtype=torch.float64)
                e,f = ref(z,pos,q=q); o = ours(z,pos,total_charge=q,compute_forces=True)
                ee=max(ee,((o.energy-e.reshape(-1)).abs()/e.abs()).max().item())
                ff=max(ff,((o.forces-f).norm()/f.norm()).item())
            rows.append((path,layers,group,ee,ff))
print("| torchmd-net path | layers | group | max rel. energy error | max rel. force error (norm) |")
print("|---|---|---|---|---|")
for r in rows: print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1e} | {r[4]:.1e} |")
CKPT.unlink()
