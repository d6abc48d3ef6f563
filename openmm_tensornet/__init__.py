"""openmm-tensornet: TensorNet machine-learned potentials as drop-in OpenMM forces.

Layers (``docs/architecture.md``): ``ops`` (torch custom ops) → ``nn`` (the model) → ``io`` (checkpoints, data) →
``openmm`` (OpenMM glue) → ``training`` → ``app`` (command line, simulations, free energies). The public names below
load their module on first use, so ``import openmm_tensornet`` (and ``import openmmml``) stays light.
"""

from __future__ import annotations

import importlib

from . import _moved
from .ops.abi import check_torch_abi

check_torch_abi()

from .ops.library import load_ops, ops_status  # noqa: E402, F401

load_ops(compile=False)  # a cached library only: importing (and so `import openmmml`) never compiles

from .openmm.export import ensure_torch_plugins  # noqa: E402
from .openmm.serialization import install_safe_copies  # noqa: E402

ensure_torch_plugins()  # openmm-torch's plugins, when openmm was imported before torch
install_safe_copies()  # XmlSerializer.clone/deserialize of a TorchForce (plain OpenMM crashes without this)
_moved.install()

__version__ = "0.1.0"

_PUBLIC = {
    "ForceSpec": "openmm.force_spec",
    "LegResult": "app.free_energy",
    "Ligand": "openmm.ligands",
    "LigandError": "openmm.ligands",
    "NeighborPairs": "ops.neighbors",
    "TensorNet": "nn.model",
    "TensorNetOutput": "nn.model",
    "TensorNetPotential": "openmm.potential",
    "TorchForceModule": "openmm.export",
    "TrainingConfig": "training.trainer",
    "check_torch_abi": "ops.abi",
    "create_python_force": "openmm.python_force",
    "create_torch_force": "openmm.export",
    "cycle_report": "app.free_energy",
    "deserialize_system": "openmm.serialization",
    "energy_report": "openmm.report",
    "ensure_torch_plugins": "openmm.export",
    "export_torchscript": "openmm.export",
    "install_safe_copies": "openmm.serialization",
    "interpolation_free_energy": "app.free_energy",
    "ligand_legs": "app.free_energy_legs",
    "load_default_model": "io.checkpoint",
    "load_model": "io.checkpoint",
    "load_ops": "ops.library",
    "neighbor_pairs": "ops.neighbors",
    "neighbor_pairs_reference": "ops.neighbors",
    "ops_status": "ops.library",
    "read_ligands": "openmm.ligands",
    "save_model": "io.checkpoint",
    "serialize_system": "openmm.serialization",
    "train": "training.trainer",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
