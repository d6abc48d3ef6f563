"""Layer 4: training — the trainer, distributed runs, GFN2-xTB data generation and the training-set recipe helpers."""
