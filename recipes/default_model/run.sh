#!/usr/bin/env bash
# Rebuild the shipped default model (openmm_tensornet/models/default.pt, 32 channels, 60 curated molecules) from
# scratch with the project's commands: about 5 min of GFN2-xTB labelling and up to 35 min of training on 2 CPU cores.
# Its successor (issue 15, in progress): data.sh (2 505 molecules and pairs, GFN2-xTB), then
# `openmm-tensornet train train_v2.yaml` (64 channels; resumable, run it again after each sitting), then
# `python metrics.py training-v2/model.pt` (held-out errors by element and charge, parity plot) and
# `python ../../benchmarks/default_model_md.py --model training-v2/model.pt` (the stability set, stability.smi).
set -euo pipefail
cd "$(dirname "$0")"
openmm-tensornet generate-data curated.smi -o data --frames 20 --stride 10 --perturbations 4 --temperature 500
openmm-tensornet train train.yaml
cp training/model.pt ../../openmm_tensornet/models/default.pt
cp training/metrics.md ../../openmm_tensornet/models/default-metrics.md
