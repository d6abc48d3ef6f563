#!/usr/bin/env bash
# Rebuild the shipped default model (openmm_tensornet/models/default.pt, 32 channels, 60 curated molecules) from
# scratch with the project's commands: about 5 min of GFN2-xTB labelling and up to 35 min of training on 2 CPU cores.
# The larger data set for its successor is made by data.sh (issue 15, in progress).
set -euo pipefail
cd "$(dirname "$0")"
openmm-tensornet generate-data curated.smi -o data --frames 20 --stride 10 --perturbations 4 --temperature 500
openmm-tensornet train train.yaml
cp training/model.pt ../../openmm_tensornet/models/default.pt
cp training/metrics.md ../../openmm_tensornet/models/default-metrics.md
