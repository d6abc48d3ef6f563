#!/usr/bin/env bash
# The default model's next training set (issue 15): 2 205 molecules (choose_molecules.py) + 300 dimers, GFN2-xTB.
# Per molecule: Langevin MD at 300, 600 and 1000 K (4 frames each, every 10 steps of 0.5 fs, fresh velocities per
# temperature), 2 displaced copies per frame (0.05 Å, scaled by 1/sqrt(mass)) and 6 single-bond distortions
# (4 stretched to 1.2-1.8x, 2 compressed to 0.75-0.9x): 42 configurations. Dimers: molecule + water and
# molecule + molecule (at most 30 atoms each) at 1.8-3.0 Å closest contact, sampled the same way.
# Cost: 1-25 s per molecule on one core (mean about 6 s); resumable (finished shards are kept), so it can run over
# several sittings. DATA defaults to ./data-v2.
set -euo pipefail
cd "$(dirname "$0")"
python choose_molecules.py > /dev/null
OMP_NUM_THREADS=1 openmm-tensornet generate-data molecules.smi -o "${DATA:-data-v2}" --frames 4 --stride 10 \
    --temperature 300 600 1000 --perturbations 2 --distortions 6 --dimers 300 --dimer-max-atoms 30 --seed 0 \
    --workers "${WORKERS:-2}"
