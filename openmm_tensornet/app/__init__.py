"""Layer 5: applications — the ``openmm-tensornet`` command line, simulations, free energies, environment checks."""
