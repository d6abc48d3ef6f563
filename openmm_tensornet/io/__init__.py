"""Layer 2: files to objects — checkpoints (ours and torchmd-net's) and reference data sets."""
