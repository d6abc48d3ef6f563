"""openmm-tensornet: TensorNet machine-learned potentials as drop-in OpenMM forces."""

from .abi import check_torch_abi

check_torch_abi()

from .checkpoint import load_default_model, load_model, save_model  # noqa: E402
from .model import TensorNet, TensorNetOutput  # noqa: E402
from .neighbors import NeighborPairs, neighbor_pairs, neighbor_pairs_reference  # noqa: E402
from .ops import load_ops, ops_status  # noqa: E402

load_ops(compile=False)  # a cached library only: importing (and so `import openmmml`) never compiles

from .export import TorchForceModule, create_torch_force, ensure_torch_plugins, export_torchscript  # noqa: E402

ensure_torch_plugins()
from .potential import TensorNetPotential  # noqa: E402
from .python_force import create_python_force  # noqa: E402
from .report import energy_report  # noqa: E402
from .serialization import deserialize_system, install_safe_copies, serialize_system  # noqa: E402

install_safe_copies()
from .training import TrainingConfig, train  # noqa: E402
from .free_energy import LegResult, cycle_report, interpolation_free_energy  # noqa: E402
from .free_energy_legs import ligand_legs  # noqa: E402
from .ligands import Ligand, LigandError, read_ligands  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "LegResult",
    "Ligand",
    "LigandError",
    "NeighborPairs",
    "TensorNet",
    "TensorNetOutput",
    "TensorNetPotential",
    "TorchForceModule",
    "TrainingConfig",
    "check_torch_abi",
    "create_python_force",
    "create_torch_force",
    "cycle_report",
    "deserialize_system",
    "energy_report",
    "export_torchscript",
    "interpolation_free_energy",
    "ligand_legs",
    "load_default_model",
    "load_model",
    "load_ops",
    "neighbor_pairs",
    "neighbor_pairs_reference",
    "ops_status",
    "read_ligands",
    "save_model",
    "serialize_system",
    "train",
]
