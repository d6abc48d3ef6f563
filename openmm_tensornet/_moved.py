"""The module paths of openmm-tensornet 0.1 (one flat package) still import, as aliases of their new homes.

``import openmm_tensornet.simulate`` gives ``openmm_tensornet.app.simulate`` itself (one module object, so patching
and pickles that name the old path keep working) and a ``DeprecationWarning`` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "abi": "ops.abi", "ops": "ops.library", "neighbors": "ops.neighbors",
    "tensors": "ops.tensors", "activations": "ops.activations", "radial": "ops.radial", "messages": "ops.messages",
    "embedding": "nn.embedding", "interaction": "nn.interaction", "heads": "nn.heads",
    "charge_equilibration": "nn.charge_equilibration", "coulomb": "nn.coulomb", "dispersion": "nn.dispersion",
    "repulsion": "nn.repulsion", "model": "nn.model",
    "checkpoint": "io.checkpoint", "torchmdnet_compat": "io.torchmdnet_compat", "data": "io.data",
    "export": "openmm.export", "potential": "openmm.potential", "python_force": "openmm.python_force",
    "interpolation": "openmm.interpolation", "region_charges": "openmm.region_charges",
    "platforms": "openmm.platforms", "serialization": "openmm.serialization", "report": "openmm.report",
    "openmmml_entry": "openmm.openmmml_entry", "openmmml_plugin": "openmm.openmmml_plugin",
    "ligands": "openmm.ligands", "ligand_forcefield": "openmm.ligand_forcefield",
    "training": "training.trainer", "distributed": "training.distributed", "datagen": "training.datagen",
    "cli": "app.cli", "simulate": "app.simulate", "doctor": "app.doctor", "free_energy": "app.free_energy",
    "free_energy_analysis": "app.free_energy_analysis", "free_energy_cli": "app.free_energy_cli",
    "free_energy_legs": "app.free_energy_legs", "free_energy_report": "app.free_energy_report",
    "free_energy_sampling": "app.free_energy_sampling", "ligand_parameters": "app.ligand_parameters",
}
PACKAGE = __name__.rpartition(".")[0]


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in MOVED or name in ("ops", "training"):
            return None  # `ops` and `training` are subpackages now: they import as themselves
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__.rpartition(".")[2]
        new = f"{PACKAGE}.{MOVED[name]}"
        warnings.warn(f"{module.__name__} moved to {new}; import it from there (the old name is an alias in 0.x).",
                      DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)  # the import statement returns this entry


def install() -> None:
    if not any(isinstance(finder, _Aliases) for finder in sys.meta_path):
        sys.meta_path.append(_Aliases())
