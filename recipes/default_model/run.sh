#!/usr/bin/env bash
# Rebuild the shipped default model (openmm_tensornet/models/default.pt) from scratch, with the project's commands.
# About 5 min of GFN2-xTB labelling and up to 35 min of training on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")"
openmm-tensornet generate-data molecules.smi -o data --frames 20 --stride 10 --perturbations 4 --temperature 500
openmm-tensornet train train.yaml
cp training/model.pt ../../openmm_tensornet/models/default.pt
cp training/metrics.md ../../openmm_tensornet/models/default-metrics.md
