"""openmm-tensornet: TensorNet machine-learned potentials as drop-in OpenMM forces."""

from .abi import check_torch_abi

check_torch_abi()

from .checkpoint import load_model, save_model  # noqa: E402
from .model import TensorNet, TensorNetOutput  # noqa: E402
from .neighbors import NeighborPairs, neighbor_pairs, neighbor_pairs_reference  # noqa: E402
from .ops import load_ops, ops_status  # noqa: E402

load_ops()

__version__ = "0.1.0"

__all__ = [
    "NeighborPairs",
    "TensorNet",
    "TensorNetOutput",
    "check_torch_abi",
    "load_model",
    "load_ops",
    "neighbor_pairs",
    "neighbor_pairs_reference",
    "ops_status",
    "save_model",
]
