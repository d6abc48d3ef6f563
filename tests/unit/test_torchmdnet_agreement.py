"""Identical weights give identical results: openmm-tensornet vs torchmd-net 3.1 (the reference implementation).

torchmd-net runs TensorNet through warp kernels by default and through plain PyTorch when warp is absent; both are
compared. The warp kernels agree with the PyTorch code to ~1e-8 in float64 (they are not bit-identical), and for SO(3)
models they evaluate the mirror image (see ``openmm_tensornet/io/torchmdnet_compat.py``).
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, random_molecule
from reference_torchmdnet import random_torchmdnet_model, torchmdnet_args, write_checkpoint

from openmm_tensornet import load_model

tensornet_module = pytest.importorskip("torchmdnet.models.tensornet", reason="torchmd-net is in the test extra")
from torchmdnet.models.model import load_model as torchmdnet_load  # noqa: E402

# Required by the foundation issue: float64, energies within 1e-5 and forces within 1e-4 (relative).
ENERGY_RTOL, FORCE_RTOL = 1e-5, 1e-4


@pytest.fixture
def pytorch_path(monkeypatch):
    """Switch torchmd-net from its warp kernels to its own pure-PyTorch TensorNet code."""
    for name in ("compose_tensor", "decompose_tensor", "tensor_matmul_o3", "tensor_matmul_so3"):
        monkeypatch.setattr(tensornet_module, name, getattr(tensornet_module, "_" + name))

    def disable(model):
        for module in model.modules():
            if hasattr(module, "opt"):
                module.opt = False
        return model

    return disable


def _pair(tmp_path, seed=0, mean=0.0, std=1.0, **overrides):
    args = torchmdnet_args(**overrides)
    reference = random_torchmdnet_model(args, seed=seed, mean=mean, std=std)
    path = tmp_path / "tensornet.ckpt"
    write_checkpoint(reference, args, path)
    return torchmdnet_load(str(path)), load_model(path), path


def _compare(reference, ours, z, pos, energy_rtol, force_rtol, **inputs):
    dtype = ours.energy_mean.dtype
    pos = pos.to(dtype)
    ref_energy, ref_forces = reference(z, pos, batch=inputs.get("batch"), box=inputs.get("box"), q=inputs.get("q"))
    out = ours(z, pos, batch=inputs.get("batch"), box=inputs.get("box"), total_charge=inputs.get("q"), compute_forces=True)
    assert_close(out.energy, ref_energy.detach().reshape(-1), energy_rtol, "energy")
    assert_close(out.forces, ref_forces.detach(), force_rtol, "forces")
    return out


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_float64_agreement_with_torchmdnet_default_warp_path(tmp_path, layers, group):
    reference, ours, _ = _pair(tmp_path, num_layers=layers, equivariance_invariance_group=group)
    z, pos = random_molecule(14, seed=layers)
    _compare(reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL, q=torch.tensor([1.0], dtype=torch.float64))


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("inference", [False, True])
def test_float64_agreement_with_torchmdnet_pytorch_path_to_round_off(tmp_path, pytorch_path, layers, group, inference):
    """torchmd-net's PyTorch code is the paper's definition; we match it to round-off (with warp=False), also on the
    fused inference path of exported forces (frozen weights and constants)."""
    args = torchmdnet_args(num_layers=layers, equivariance_invariance_group=group)
    reference = pytorch_path(random_torchmdnet_model(args, seed=layers))
    path = tmp_path / "tensornet.ckpt"
    write_checkpoint(reference, args, path)
    ours = load_model(path, torchmdnet_warp=False)
    z, pos = random_molecule(14, seed=layers)
    if inference:
        ours.requires_grad_(False)
        ours.freeze_for_inference(z)
    _compare(reference, ours, z, pos, 1e-12, 1e-10, q=torch.tensor([-1.0], dtype=torch.float64))


def test_so3_checkpoints_from_warp_training_keep_their_chirality(tmp_path):
    """A warp-trained SO(3) model loaded as if PyTorch-trained would give the enantiomer's energy."""
    reference, ours, path = _pair(tmp_path, seed=3, num_layers=2, equivariance_invariance_group="SO(3)")
    z, pos = random_molecule(12, seed=5)
    warp_energy = reference(z, pos)[0].detach().reshape(-1)
    assert_close(ours(z, pos).energy, warp_energy, ENERGY_RTOL, "default (warp-trained) loading")
    unmirrored = load_model(path, torchmdnet_warp=False)
    assert float((unmirrored(z, pos).energy.detach() - warp_energy).abs()) > 1e-3 * float(warp_energy.abs())
    assert_close(unmirrored(z, -pos).energy, warp_energy, ENERGY_RTOL, "PyTorch convention sees the mirror image")


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(dict(rbf_type="gauss", cutoff_lower=0.6), id="gauss-lower-cutoff"),
        pytest.param(dict(activation="tanh", trainable_rbf=True), id="tanh-trainable-rbf"),
        pytest.param(dict(output_mlp_num_layers=2, embedding_dimension=24, num_rbf=12), id="wider"),
        pytest.param(dict(prior_model="Atomref", prior_args={"max_z": 20}), id="atomref"),
        pytest.param(dict(prior_model=[{"Atomref": {"max_z": 20, "enable": False}}]), id="atomref-disabled"),
    ],
)
def test_agreement_for_other_hyper_parameters(tmp_path, overrides):
    reference, ours, _ = _pair(tmp_path, seed=4, mean=0.75, std=1.6, **overrides)
    z, pos = random_molecule(13, seed=8)
    _compare(reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL)


def test_agreement_for_a_batch_with_charges_and_a_periodic_box(tmp_path):
    reference, ours, _ = _pair(tmp_path, seed=5, num_layers=2)
    molecules = [random_molecule(n, seed=30 + n) for n in (6, 10)]
    z = torch.cat([m[0] for m in molecules])
    pos = torch.cat([m[1] for m in molecules])
    batch = torch.cat([torch.full((len(m[0]),), i) for i, m in enumerate(molecules)])
    charges = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    _compare(reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL, batch=batch, q=charges)

    z, pos = random_molecule(20, seed=9, density=0.1)
    box = torch.tensor([[9.2, 0.0, 0.0], [0.0, 9.4, 0.0], [0.0, 0.0, 9.6]], dtype=torch.float64)
    out = _compare(reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL, box=box)
    assert float((out.energy - ours(z, pos).energy).abs().detach()) > 1e-6, "the test must actually exercise the box"


def test_float32_agreement(tmp_path):
    reference, ours, _ = _pair(tmp_path, seed=6, precision=32)
    assert ours.energy_mean.dtype == torch.float32
    z, pos = random_molecule(14, seed=10, dtype=torch.float32)
    _compare(reference, ours, z, pos, 1e-4, 1e-3)


def test_checkpoints_in_the_pre_3_0_layout(tmp_path):
    """Old checkpoints stored two linears with rows ordered (channel, component); both loaders reorder them."""
    args = torchmdnet_args(num_layers=2)
    reference = random_torchmdnet_model(args, seed=7)
    state = {"model." + k: v.clone() for k, v in reference.state_dict().items()}
    channels = args["embedding_dimension"]
    keys = ["model.representation_model.tensor_embedding.linears_scalar.1"] + [
        f"model.representation_model.layers.{i}.linears_scalar.2" for i in range(2)
    ]
    for key in keys:  # component-major -> channel-major, the inverse of the migration
        weight, bias = state[key + ".weight"], state[key + ".bias"]
        state[key + ".weight"] = weight.view(3, channels, -1).transpose(0, 1).reshape(weight.shape)
        state[key + ".bias"] = bias.view(3, channels).transpose(0, 1).reshape(-1)
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": dict(args, check_errors=True), "state_dict": state}, str(path))
    ours = load_model(path)
    z, pos = random_molecule(12, seed=11)
    _compare(reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL)
    with pytest.warns(UserWarning, match="Old-format"):
        old_reference = torchmdnet_load(str(path))
    _compare(old_reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL)


def test_unsupported_checkpoints_are_refused_with_a_reason(tmp_path):
    args = torchmdnet_args()
    reference = random_torchmdnet_model(args)
    path = tmp_path / "x.ckpt"
    write_checkpoint(reference, dict(args, model="equivariant-transformer"), path)
    with pytest.raises(ValueError, match="loads 'tensornet'"):
        load_model(path)
    write_checkpoint(reference, dict(args, reduce_op="mean"), path)
    with pytest.raises(ValueError, match="reduce_op='mean'"):
        load_model(path)
    state = {"model." + k: v for k, v in reference.state_dict().items()}
    state["model.prior_model.0.something"] = torch.zeros(3)
    torch.save({"hyper_parameters": dict(args, prior_model="Magic"), "state_dict": state}, str(path))
    with pytest.raises(NotImplementedError, match="'Magic'"):
        load_model(path)
    state.pop("model.prior_model.0.something")
    state["model.representation_model.new_thing.weight"] = torch.zeros(2)
    torch.save({"hyper_parameters": args, "state_dict": state}, str(path))
    with pytest.raises(ValueError, match="new_thing"):
        load_model(path)


def test_energy_head_depth_is_read_from_the_weights(tmp_path):
    """A checkpoint whose energy MLP has an extra hidden layer (as written by other torchmd-net versions)."""
    args = torchmdnet_args(num_layers=1)
    reference = random_torchmdnet_model(args, seed=8)
    head = reference.output_model.output_network.layers
    hidden = head[0].out_features
    extra = torch.nn.Linear(hidden, hidden, dtype=torch.float64)
    reference.output_model.output_network.layers = torch.nn.Sequential(head[0], head[1], extra, torch.nn.SiLU(), head[2])
    path = tmp_path / "deep.ckpt"
    write_checkpoint(reference, args, path)
    ours = load_model(path)
    assert ours.hparams["energy_head_hidden_layers"] == 1
    z, pos = random_molecule(10, seed=12)
    _compare(reference, ours, z, pos, ENERGY_RTOL, FORCE_RTOL)
