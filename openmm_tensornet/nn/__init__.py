"""Layer 1: the TensorNet model in torch — tensor algebra, radial basis, embedding, interaction, heads, physics terms.

Imports only torch and ``openmm_tensornet.ops`` (never OpenMM): the same modules train, export and run.
"""
