#!/usr/bin/env bash
# Rebuild the shipped default model (openmm_tensornet/models/default.pt: 64 channels, 2 505 molecules and pairs,
# GFN2-xTB, fine-tuned for hydrogen transfers and dopamine's motif) from scratch with the project's commands.
# data.sh: 2-4 h of GFN2-xTB labelling on 2 cores (resumable); train_v2.yaml, the base model: about 7 min per epoch
# alone on 2 cores, 32 epochs (resumable: run it again after each sitting); data_v3.py over the training set (about
# 1.7 h on 2 cores) and breaks/motif.py (about 1 h); train_v9.yaml and train_v9b.yaml, the fine-tuning (about 50 min
# together); metrics.py: the held-out report and parity plot; then the stability set:
# python ../../benchmarks/default_model_md.py --model training-v9b/model.pt --shard K/2 --threads 1 (K = 0, 1).
# The first default (32 channels, 60 curated molecules, train.yaml) is rebuilt by the commented lines at the end.
set -euo pipefail
cd "$(dirname "$0")"
bash data.sh
openmm-tensornet train train_v2.yaml
cp training-v2/model.pt base-model.pt  # the fine-tuning configs start from it (committed: 4ad144cd7a91)
python data_v3.py --train 2246 --output data-v4
(cd breaks && python motif.py)
openmm-tensornet train train_v9.yaml
openmm-tensornet train train_v9b.yaml
python metrics.py training-v9b/model.pt --config train_v9.yaml --no-transfers \
    --plot ../../openmm_tensornet/models/default-parity.png
cp training-v9b/model.pt ../../openmm_tensornet/models/default.pt
# First default: openmm-tensornet generate-data curated.smi -o data --frames 20 --stride 10 --perturbations 4 \
#     --temperature 500 && openmm-tensornet train train.yaml
