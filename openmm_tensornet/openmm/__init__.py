"""Layer 3: OpenMM glue — TorchScript export into TorchForce, the PythonForce backend, ML/MM systems, openmm-ml
plugin, serialisation, platforms and ligands."""
