"""Helpers that build torchmd-net TensorNet models with random weights and write them as Lightning checkpoints.

torchmd-net 3.1.0 (the ``test`` extra) is the reference implementation we must agree with on identical weights.
"""

from __future__ import annotations

from typing import Any, Dict

import torch


def torchmdnet_args(**overrides: Any) -> Dict[str, Any]:
    """Hyper-parameters as torchmd-net's ``create_model`` expects them (a small but complete TensorNet)."""
    args: Dict[str, Any] = dict(
        model="tensornet", embedding_dimension=16, num_layers=2, num_rbf=8, rbf_type="expnorm",
        trainable_rbf=False, activation="silu", cutoff_lower=0.0, cutoff_upper=4.5, max_z=20,
        max_num_neighbors=128, equivariance_invariance_group="O(3)", static_shapes=False, precision=64,
        derivative=True, atom_filter=-1, prior_model=None, output_model="Scalar", reduce_op="sum",
        output_mlp_num_layers=0,
    )
    args.update(overrides)
    return args


def random_torchmdnet_model(args: Dict[str, Any], seed: int = 0, mean: float = 0.0, std: float = 1.0):
    """A torchmd-net ``TorchMD_Net`` with every weight, bias and norm parameter drawn at random."""
    from torchmdnet.models.model import create_model

    torch.manual_seed(seed)
    model = create_model(dict(args), mean=torch.tensor(mean), std=torch.tensor(std))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.5 if parameter.dim() > 1 else 0.3
            parameter.copy_(torch.randn_like(parameter) * scale + (1.0 if name.endswith("norm.weight") else 0.0))
        for prior in model.prior_model or []:
            prior.atomref.weight.copy_(torch.randn_like(prior.atomref.weight))
    return model.eval()


def write_checkpoint(model, args: Dict[str, Any], path) -> None:
    """Save like Lightning does: ``hyper_parameters`` plus the state dict under the ``model.`` prefix."""
    state = {"model." + key: value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": dict(args), "state_dict": state, "epoch": 0}, str(path))
