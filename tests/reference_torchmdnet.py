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


def torchmd_train_checkpoint(path, seed: int = 0, mean: float = 0.0, std: float = 1.0, **options: Any):
    """Write a checkpoint as ``torchmd-train`` does: its own argument parser's defaults (``reduce_op: add``) updated
    with ``options`` (as a YAML ``--conf`` would), its ``remove_ref_energy`` handling and ``prior_args``, an
    ``LNNP`` module with random weights, saved by a Lightning ``Trainer``. Returns the hyper-parameters."""
    import lightning.pytorch as pl
    from torchmdnet.models.model import create_prior_models
    from torchmdnet.module import LNNP
    from torchmdnet.scripts.train import get_argparse

    args = get_argparse().parse_args([])
    for key, value in dict(derivative=True, precision=64, **options).items():
        setattr(args, key, value)
    if args.remove_ref_energy:  # torchmd-train's main()
        prior = args.prior_model or []
        args.prior_model = (prior if isinstance(prior, list) else [prior]) + [{"Atomref": {"enable": False}}]
        for entry in args.prior_model:
            for name, prior_args in entry.items():
                if name == "Atomref":
                    prior_args.setdefault("max_z", args.max_z)
    priors = create_prior_models(vars(args))
    args.prior_args = [prior.get_init_args() for prior in priors]
    torch.manual_seed(seed)
    module = LNNP(args, prior_model=priors, mean=torch.tensor(mean), std=torch.tensor(std))
    with torch.no_grad():
        for name, parameter in module.model.named_parameters():
            scale = 0.5 if parameter.dim() > 1 else 0.3
            parameter.copy_(torch.randn_like(parameter) * scale + (1.0 if name.endswith("norm.weight") else 0.0))
        for prior in module.model.prior_model or []:
            if hasattr(prior, "atomref"):
                prior.atomref.weight.copy_(torch.randn_like(prior.atomref.weight))
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(path) + ".d")
    trainer.strategy.connect(module)
    trainer.save_checkpoint(str(path))
    return vars(args)
