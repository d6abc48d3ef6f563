"""Saving and loading models: our own checkpoints and torchmd-net TensorNet checkpoints."""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..nn.model import TensorNet
from .torchmdnet_compat import convert_hyper_parameters, convert_state_dict, is_torchmdnet_checkpoint

# Pretrained TensorNet models that openmm-ml knows by name (and downloads): name -> (repository, file).
NAMED_MODELS = {
    "aceff-1.0": ("Acellera/AceFF-1.0", "aceff_v1.0.ckpt"),
    "aceff-1.1": ("Acellera/AceFF-1.1", "aceff_v1.1.ckpt"),
    "aceff-2.0": ("Acellera/AceFF-2.0", "aceff_v2.0.ckpt"),
}

FORMAT_NAME = "openmm-tensornet"
FORMAT_VERSION = 1


def save_model(model: TensorNet, path: Union[str, os.PathLike]) -> None:
    """Write ``model`` (hyper-parameters, units and weights) to ``path``; read back with :func:`load_model`."""
    if not isinstance(model, TensorNet):
        raise TypeError(f"save_model expects an openmm_tensornet.TensorNet; got {type(model).__name__}.")
    torch.save(
        {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "hyper_parameters": dict(model.hparams),
            "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        },
        os.fspath(path),
    )


def _read(path: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Lightning checkpoints pickle more than tensors and dicts (e.g. hyper-parameter containers).
        # The user asked for this file explicitly; load it in full, as torchmd-net itself does, and say so.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        warnings.warn(f"{path} holds Python objects besides tensors (a Lightning checkpoint), so it was unpickled in "
                      "full, which can run code stored in the file: load only checkpoints you trust. "
                      "save_model(load_model(path), 'model.pt') writes a tensors-only copy.", UserWarning,
                      stacklevel=4)
        return checkpoint


@dataclass(frozen=True)
class LoadOptions:
    """How to read a checkpoint: the keyword options of :func:`load_model` (None: what the checkpoint says)."""

    energy_unit: Optional[str] = None
    length_unit: Optional[str] = None
    torchmdnet_warp: Optional[bool] = None
    torchmdnet_old_layout: Optional[bool] = None
    remove_ref_energy: Optional[bool] = None


def model_from_checkpoint(checkpoint: Dict[str, Any], options: LoadOptions = LoadOptions()) -> TensorNet:
    """Build a :class:`TensorNet` from an already-read checkpoint dictionary (either format), read as ``options``
    say (see :func:`load_model`)."""
    if is_torchmdnet_checkpoint(checkpoint):
        hparams = convert_hyper_parameters(checkpoint["hyper_parameters"], checkpoint["state_dict"])
        state_dict = convert_state_dict(checkpoint, hparams, options.torchmdnet_warp, options.torchmdnet_old_layout,
                                        options.remove_ref_energy)
    elif isinstance(checkpoint, dict) and checkpoint.get("format") == FORMAT_NAME:
        version = checkpoint.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"checkpoint format version {version!r} is not supported by this openmm-tensornet "
                f"(it reads version {FORMAT_VERSION}); upgrade openmm-tensornet."
            )
        hparams = dict(checkpoint["hyper_parameters"])
        state_dict = checkpoint["state_dict"]
    else:
        raise ValueError(
            "not a model checkpoint that openmm-tensornet can read: expected one written by "
            "openmm_tensornet.save_model or a torchmd-net TensorNet .ckpt (with 'hyper_parameters' and 'state_dict')."
        )
    if options.energy_unit is not None:
        hparams["energy_unit"] = options.energy_unit
    if options.length_unit is not None:
        hparams["length_unit"] = options.length_unit
    try:
        model = TensorNet(**hparams)
    except TypeError as error:
        raise ValueError(f"the checkpoint's hyper-parameters do not fit this version of TensorNet: {error}") from None
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the checkpoint's weights do not match the model: missing {list(missing)}, unexpected {list(unexpected)}."
        )
    return model.eval()


def load_model(
    path: Union[str, os.PathLike],
    device: Optional[Union[str, torch.device]] = None,
    energy_unit: Optional[str] = None,
    length_unit: Optional[str] = None,
    torchmdnet_warp: Optional[bool] = None,
    torchmdnet_old_layout: Optional[bool] = None,
    remove_ref_energy: Optional[bool] = None,
) -> TensorNet:
    """Load a TensorNet from our checkpoint or from a torchmd-net TensorNet ``.ckpt``, in eval mode.

    Parameters
    ----------
    path : str or PathLike
        File written by :func:`save_model`, or a torchmd-net (Lightning) checkpoint of a TensorNet model.
    device : str or torch.device, optional
        Where to put the model (default CPU).
    energy_unit, length_unit : str, optional
        Units of the model's training data. torchmd-net checkpoints record none, so Å and eV are assumed unless
        given here (e.g. ``energy_unit="kcal/mol"``); for our checkpoints the recorded units are overridden.
    torchmdnet_warp : bool, optional
        torchmd-net SO(3) checkpoints only: whether the model was trained with torchmd-net's warp kernels (the
        default in torchmd-net >= 3.0), whose convention mirrors the molecule. Default: True, except for
        checkpoints in the pre-3.0 layout. Decides the sign of chirality; O(3) models are unaffected.
    torchmdnet_old_layout : bool, optional
        Force (True) or forbid (False) the pre-3.0 ``[N, F, 3, 3]`` weight layout; by default it is detected from
        the ``check_errors`` hyper-parameter, as torchmd-net does.
    remove_ref_energy : bool, optional
        torchmd-net checkpoints trained with ``remove_ref_energy`` (energies minus atomic references, an Atomref
        prior added with ``enable=False``): False switches that prior on, so the model predicts total energies, as
        torchmd-net's and openmm-ml's ``remove_ref_energy=False`` do. Default: the priors as stored.

    Examples
    --------
    >>> model = load_model("epoch=99.ckpt", energy_unit="kcal/mol")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        if path.lower() in NAMED_MODELS:
            repository, filename = NAMED_MODELS[path.lower()]
            raise FileNotFoundError(
                f"{path!r} is the name of a pretrained model that openmm-ml downloads at run time (Hugging Face "
                f"repository {repository}, file {filename}); openmm-tensornet downloads nothing. Fetch that file once "
                f"where you have network access and pass its path: TensorNetPotential('{filename}') or "
                f"MLPotential('tensornet', modelPath='{filename}').")
        raise FileNotFoundError(f"model checkpoint {path!r} does not exist.")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        checkpoint = _read(path)
    model = model_from_checkpoint(checkpoint, LoadOptions(energy_unit, length_unit, torchmdnet_warp,
                                                          torchmdnet_old_layout, remove_ref_energy))
    return model.to(device) if device is not None else model


DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.pt"


def load_default_model(device: Optional[str] = None) -> TensorNet:
    """The model shipped with openmm-tensornet (no download): TensorNet trained on GFN2-xTB energies and forces of
    drug-like molecules and capped amino acids (H, C, N, O, F, S, Cl; neutral and charged). GFN2-xTB quality, not
    DFT: see ``openmm_tensornet/models/default-metrics.md`` for its data and held-out accuracy, and
    ``recipes/default_model/run.sh`` to rebuild it."""
    if not DEFAULT_MODEL.exists():
        raise FileNotFoundError(f"the default model {DEFAULT_MODEL} is missing from this installation; reinstall "
                                "openmm-tensornet, or pass a model path (ours or a torchmd-net TensorNet .ckpt).")
    return load_model(DEFAULT_MODEL, device=device)
