"""Translate torchmd-net TensorNet checkpoints (Lightning ``.ckpt``) into our hyper-parameters and weights.

Every tensor of the checkpoint is either mapped or explicitly ignored (listed below); anything else raises, so
nothing is dropped silently. Supported: ``model='tensornet'`` and ``'tensornet2'`` (with the development names
torchmd-net maps to it), the ``Scalar`` and (``tensornet2``) ``ScalarPlusWeightedCoulomb`` output models,
``reduce_op`` ``'add'`` (torchmd-train's default) or ``'sum'``, TensorNet2's ZBL ``repulsion``, the ``Atomref``,
``LearnableAtomref``, ``ZBL`` and ``D2`` priors, and the ``mean``/``std`` standardisation. Checkpoints written before torchmd-net moved
from the ``[N, F, 3, 3]`` to the ``[N, 3, 3, F]`` layout (they carry ``check_errors`` in their hyper-parameters)
have the rows of two linears reordered, as torchmd-net itself does.

Chirality of SO(3) models: since 3.0, torchmd-net evaluates TensorNet with warp kernels whose vector<->skew-tensor
map has the opposite sign of its own pure-PyTorch code (and of the paper), so an SO(3) model trained there sees
every molecule mirrored (E_warp(x) = E_pytorch(-x)). O(3) models are invariant under that and are unaffected.
For an SO(3) checkpoint trained with warp we negate the vector (A) part of the embedding's radial weights, which
is exactly that inversion, so the loaded model reproduces the energies it was trained on, enantiomers included.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

# Tensors of a torchmd-net checkpoint that carry nothing our model needs.
_IGNORED = (
    r"representation_model\.distance\.box",  # fixed box of the neighbour module; the box is an input here
    r"representation_model\.tensor_embedding\.Zij_map",  # inference cache, recomputed from the weights
    r"prior_model\.\d+\.initial_atomref",  # the atomref's initial value; the live one is atomref.weight
    r"output_model\.distance\.box",  # fixed box of the Coulomb neighbour module
    r"prior_model\.\d+\.distances?\.box",  # fixed box of a prior's neighbour module (ZBL, D2)
)

# torchmd-net's names of TensorNet2 (torchmd-net's load_model maps the development names the same way).
TENSORNET2_NAMES = ("tensornet2", "tensornetv2_alt", "tensornet-nqe")
# Output models and priors, and what we do with them.
OUTPUT_MODELS = ("Scalar", "ScalarPlusWeightedCoulomb")
SUPPORTED_PRIORS = ("Atomref", "LearnableAtomref", "ZBL", "D2")

_RENAMES = (
    (r"representation_model\.distance_expansion\.means", "rbf.means"),
    (r"representation_model\.distance_expansion\.betas", "rbf.betas"),
    (r"representation_model\.distance_expansion\.offset", "rbf.offsets"),
    (r"representation_model\.distance_expansion\.coeff", "rbf.coeff"),
    (r"representation_model\.tensor_embedding\.emb\.", "embedding.atom_embedding."),
    (r"representation_model\.tensor_embedding\.emb2\.", "embedding.pair_linear."),
    (r"representation_model\.tensor_embedding\.linears_tensor\.", "embedding.component_mix."),
    (r"representation_model\.tensor_embedding\.linears_scalar\.", "embedding.scalar_mlp."),
    (r"representation_model\.tensor_embedding\.init_norm\.", "embedding.norm."),
    (r"representation_model\.layers\.(\d+)\.linears_scalar\.", r"layers.\1.radial_mlp."),
    (r"representation_model\.linear\.", "readout_linear."),
    (r"representation_model\.out_norm\.", "readout_norm."),
    (r"representation_model\.charge_predict_0\.q_norm\.", "embedding_charges.norm."),
    (r"representation_model\.charge_predict_0\.q_mlp\.", "embedding_charges.mlp."),
    (r"representation_model\.charge_predicts\.(\d+)\.q_norm\.", r"layer_charges.\1.norm."),
    (r"representation_model\.charge_predicts\.(\d+)\.q_mlp\.", r"layer_charges.\1.mlp."),
    (r"representation_model\.repulsion\.", "repulsion."),
    (r"output_model\.qweights", "coulomb.qweights"),
    (r"output_model\.output_network\.layers\.", "energy_head.layers."),
    (r"output_model\.output_network\.(\d+)\.", r"energy_head.layers.\1."),  # before torchmd-net PR 314
)


def is_torchmdnet_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` (an unpickled object) looks like a torchmd-net Lightning checkpoint."""
    return (
        isinstance(checkpoint, Mapping)
        and isinstance(checkpoint.get("hyper_parameters"), Mapping)
        and "model" in checkpoint["hyper_parameters"]
        and isinstance(checkpoint.get("state_dict"), Mapping)
    )


def _prior_names_and_args(args: Mapping[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    prior = args.get("prior_model")
    if not prior:
        return []
    entries = prior if isinstance(prior, list) else [prior]
    found: List[Tuple[str, Dict[str, Any]]] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            found += [(name, dict(value or {})) for name, value in entry.items()]
        else:
            found.append((str(entry), {}))
    prior_args = args.get("prior_args")
    if prior_args is not None:
        prior_args = prior_args if isinstance(prior_args, list) else [prior_args]
        found = [(name, dict(extra or {})) for (name, _), extra in zip(found, prior_args)]
    return found


def _energy_head_linears(state_dict: Mapping[str, Any]) -> int:
    """Number of linear layers in the torchmd-net energy MLP, counted from the weights themselves.

    (torchmd-net 3.1's ``Scalar`` head ignores ``output_mlp_num_layers``, so the hyper-parameter cannot be trusted.)
    """
    pattern = r"(?:model\.)?output_model\.output_network\.(?:layers\.)?(\d+)\.weight"
    return sum(1 for key in state_dict if re.fullmatch(pattern, key))


def _prior_options(priors: List[Tuple[str, Dict[str, Any]]], state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Keyword arguments of :class:`openmm_tensornet.TensorNet` for the ZBL and D2 priors."""
    options: Dict[str, Any] = {}
    for number, (name, prior_args) in enumerate(priors):
        if name == "Coulomb":
            raise NotImplementedError(
                "the checkpoint uses torchmd-net's Coulomb prior, which takes per-atom partial charges from the data "
                "set as an extra input (extra_args['partial_charges']); an OpenMM force cannot supply them. Train "
                "without it, or use tensornet2 with output_model ScalarPlusWeightedCoulomb, whose charges are "
                "predicted by the model."
            )
        if name not in SUPPORTED_PRIORS:
            raise NotImplementedError(
                f"the checkpoint uses torchmd-net's prior model {name!r}; openmm-tensornet supports the priors "
                f"{list(SUPPORTED_PRIORS)}. Train without it, or evaluate this model with torchmd-net."
            )
        if name not in ("ZBL", "D2"):
            continue
        key = "zbl_prior" if name == "ZBL" else "d2_prior"
        if key in options:
            raise NotImplementedError(f"the checkpoint uses the {name} prior twice; openmm-tensornet supports one.")
        missing = [arg for arg in ("cutoff_distance", "distance_scale", "energy_scale") if prior_args.get(arg) is None]
        if missing:
            raise ValueError(f"the checkpoint's {name} prior lacks {missing} in prior_args (torchmd-train records "
                             "them); without them its energy unit is unknown.")
        spec = {arg: float(prior_args[arg]) for arg in ("cutoff_distance", "distance_scale", "energy_scale")}
        prefix = f"prior_model.{number}."
        if name == "ZBL":
            spec["atomic_number"] = [int(v) for v in state_dict[prefix + "atomic_number"].tolist()]
        else:
            spec["num_types"] = int(state_dict[prefix + "Z_map"].shape[0])
            spec["num_elements"] = int(state_dict[prefix + "C_6"].shape[0])
        options[key] = spec
    return options


def convert_hyper_parameters(args: Mapping[str, Any], state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """torchmd-net ``hyper_parameters`` (and weights) -> keyword arguments of :class:`openmm_tensornet.TensorNet`."""
    model = args.get("model")
    if model != "tensornet" and model not in TENSORNET2_NAMES:
        raise ValueError(
            f"the checkpoint holds a torchmd-net {model!r} model; openmm-tensornet loads 'tensornet' (TensorNet) "
            "and 'tensornet2' (TensorNet with charge equilibration). Use torchmd-net itself for other architectures."
        )
    tensornet2 = model in TENSORNET2_NAMES
    output_model = args.get("output_model", "Scalar")
    allowed_outputs = OUTPUT_MODELS if tensornet2 else OUTPUT_MODELS[:1]
    if output_model not in allowed_outputs:
        raise ValueError(
            f"output_model={output_model!r} is not supported for {model!r}; openmm-tensornet supports "
            f"{list(allowed_outputs)} (energies)."
        )
    if args.get("reduce_op", "sum") not in ("sum", "add"):
        raise ValueError(f"reduce_op={args.get('reduce_op')!r} is not supported; only 'add' and 'sum' (the same "
                         "reduction) give an extensive energy.")
    if args.get("atom_filter", -1) not in (-1, None):
        raise ValueError(f"atom_filter={args['atom_filter']} is not supported; only -1 (no filter) is.")
    precision = int(args.get("precision", 32))
    if precision not in (32, 64):
        raise ValueError(f"precision={precision} is not supported; only 32 and 64 are.")
    if args.get("box_vecs") is not None:
        warnings.warn(
            "this torchmd-net checkpoint fixes a periodic box (box_vecs); openmm-tensornet takes the box as an "
            "input instead. Pass box= to the model (OpenMM passes it automatically for periodic systems).",
            UserWarning,
            stacklevel=3,
        )
    num_layers = int(args["num_layers"])
    options: Dict[str, Any] = {}
    if tensornet2:
        q_dim = int(args.get("q_dim", 0) or 0)
        if q_dim < 1:
            raise ValueError("this tensornet2 checkpoint has q_dim=0 (no charge channels); openmm-tensornet loads "
                             "tensornet2 models with q_dim >= 1.")
        options.update(charge_channels=q_dim, repulsion=bool(args.get("repulsion", False)))
        if output_model == "ScalarPlusWeightedCoulomb":
            cutoff = args.get("coulomb_cutoff")
            # torchmd-net 3.1's create_model does not pass a solvent dielectric, so its default (78.3) holds.
            options.update(coulomb_weights=[list(map(float, row)) for row in args.get("q_weights") or []],
                           coulomb_cutoff=None if cutoff is None else float(cutoff), coulomb_epsilon=78.3)
            if len(options["coulomb_weights"]) != num_layers + 1:
                raise ValueError(f"q_weights must hold num_layers + 1 = {num_layers + 1} lists of q_dim weights; got "
                                 f"{args.get('q_weights')!r}.")
    weights = {re.sub(r"^model\.", "", key): value for key, value in state_dict.items()}
    options.update(_prior_options(_prior_names_and_args(args), weights))
    return dict(
        hidden_channels=int(args["embedding_dimension"]),
        num_layers=num_layers,
        num_rbf=int(args["num_rbf"]),
        rbf_type=args.get("rbf_type", "expnorm"),
        trainable_rbf=bool(args.get("trainable_rbf", False)),
        activation=args.get("activation", "silu"),
        cutoff_lower=float(args.get("cutoff_lower", 0.0)),
        cutoff_upper=float(args["cutoff_upper"]),
        max_z=int(args.get("max_z", 128)),
        equivariance_group=args.get("equivariance_invariance_group", "O(3)"),
        energy_head_hidden_layers=max(_energy_head_linears(state_dict) - 2, 0),
        dtype="float64" if precision == 64 else "float32",
        **options,
    )


def _reorder_old_layout(weight: Tensor, bias: Tensor) -> Tuple[Tensor, Tensor]:
    """Rows ordered (channel, component) -> (component, channel), for pre-``[N, 3, 3, F]`` checkpoints."""
    rows, cols = weight.shape
    weight = weight.view(rows // 3, 3, cols).transpose(0, 1).reshape(rows, cols)
    return weight, bias.view(rows // 3, 3).transpose(0, 1).reshape(rows)


def is_old_layout(checkpoint: Mapping[str, Any]) -> bool:
    """Pre-3.0 checkpoints (``[N, F, 3, 3]`` layout) carry ``check_errors`` among their hyper-parameters."""
    return "check_errors" in checkpoint["hyper_parameters"]


def convert_state_dict(
    checkpoint: Mapping[str, Any],
    hparams: Mapping[str, Any],
    trained_with_warp: Optional[bool] = None,
    old_layout: Optional[bool] = None,
    remove_ref_energy: Optional[bool] = None,
) -> Dict[str, Tensor]:
    """Map the weights of a torchmd-net TensorNet checkpoint onto :class:`openmm_tensornet.TensorNet`'s names.

    ``trained_with_warp`` (SO(3) models only) says whether torchmd-net's warp kernels were used in training;
    by default they were unless the checkpoint has the pre-3.0 layout. ``old_layout`` overrides the detection of
    that layout. ``remove_ref_energy=False`` (as in torchmd-net's and openmm-ml's loaders) switches on the
    disabled Atomref prior of a model trained on energies with the atomic references removed, so it predicts
    total energies; True or None keeps the priors as the checkpoint has them.
    """
    args = checkpoint["hyper_parameters"]
    old_layout = is_old_layout(checkpoint) if old_layout is None else old_layout
    trained_with_warp = (not old_layout) if trained_with_warp is None else trained_with_warp
    source = {re.sub(r"^model\.", "", key): value for key, value in checkpoint["state_dict"].items()}
    if old_layout:
        # TensorNet2's layers were written in the new layout from the start (as torchmd-net's loader assumes).
        layers = range(int(args["num_layers"])) if args.get("model") == "tensornet" else range(0)
        keys = ["representation_model.tensor_embedding.linears_scalar.1"] + [
            f"representation_model.layers.{layer}.linears_scalar.2" for layer in layers
        ]
        for key in keys:
            source[key + ".weight"], source[key + ".bias"] = _reorder_old_layout(
                source[key + ".weight"], source[key + ".bias"]
            )

    target: Dict[str, Tensor] = {}
    unknown: List[str] = []
    projections = [source.pop(f"representation_model.tensor_embedding.distance_proj{k}.{p}", None)
                   for p in ("weight", "bias") for k in (1, 2, 3)]
    if any(t is None for t in projections):
        raise ValueError("the checkpoint lacks the tensor embedding's distance_proj1..3 weights; is it TensorNet?")
    weight = torch.cat(projections[:3], dim=0)
    bias = torch.cat(projections[3:], dim=0)
    if trained_with_warp and hparams["equivariance_group"] == "SO(3)":
        channels = int(hparams["hidden_channels"])
        weight[channels : 2 * channels] *= -1.0
        bias[channels : 2 * channels] *= -1.0
    target["embedding.radial_linear.weight"] = weight
    target["embedding.radial_linear.bias"] = bias

    priors = _prior_names_and_args(args)
    _prior_options(priors, source)  # refuses unsupported priors with the reason
    enabled = [name == "LearnableAtomref" or bool(prior_args.get("enable", True)) for name, prior_args in priors]
    if remove_ref_energy is False and args.get("remove_ref_energy", False):
        atomrefs = [number for number, (name, _) in enumerate(priors) if name == "Atomref"]
        if not atomrefs or atomrefs[-1] != len(priors) - 1:
            raise ValueError("remove_ref_energy=False needs an Atomref prior as the checkpoint's last prior (added "
                             "with enable=False in training); this checkpoint has none, so total energies cannot "
                             "be restored.")
        enabled[-1] = True
    for key, value in source.items():
        if any(re.fullmatch(pattern, key) for pattern in _IGNORED):
            continue
        match = re.fullmatch(r"representation_model\.layers\.(\d+)\.linears_tensor\.(\d+)\.weight", key)
        if match:
            layer, index = int(match.group(1)), int(match.group(2))
            side = "mix_in" if index < 3 else "mix_out"
            target[f"layers.{layer}.{side}.{index % 3}.weight"] = value
            continue
        if key in ("mean", "std"):
            target["energy_" + key] = value.reshape(())
            continue
        match = re.fullmatch(r"prior_model\.(\d+)\.atomref\.weight", key)
        if match:
            if enabled[int(match.group(1))]:
                table = torch.zeros(int(hparams["max_z"]), dtype=value.dtype)
                count = min(table.shape[0], value.shape[0])
                table[:count] = value[:count, 0]
                target["atomref"] = target.get("atomref", torch.zeros_like(table)) + table
            continue
        match = re.fullmatch(r"prior_model\.(\d+)\.(atomic_number|Z_map|C_6|R_r)", key)
        if match:
            target[("zbl_prior." if match.group(2) == "atomic_number" else "d2_prior.") + match.group(2)] = value
            continue
        for pattern, replacement in _RENAMES:
            renamed, hits = re.subn("^" + pattern, replacement, key)
            if hits:
                target[renamed] = value
                break
        else:
            unknown.append(key)
    # No prior (or a disabled one) and no standardisation mean: E = sum of the network's atomic terms.
    target.setdefault("atomref", torch.zeros(int(hparams["max_z"])))
    target.setdefault("energy_mean", torch.zeros(()))
    target.setdefault("energy_std", torch.ones(()))
    if unknown:
        raise ValueError(
            f"the torchmd-net checkpoint holds tensors that openmm-tensornet does not know how to use: {unknown}. "
            "It may come from a newer torchmd-net or a modified TensorNet."
        )
    return target
