"""The fused inference ops against their pure-torch twins, values and first derivatives: the interaction layer
(plugin/interaction; its CPU passes and the ATen composition other devices run), the pair geometry
(plugin/geometry) and the end of the embedding (plugin/embedding); and the whole frozen model (the inference path,
which runs them all) against train mode (the twins)."""

from __future__ import annotations

import pytest
import torch
from conftest import TOLERANCES, assert_close, random_molecule, small_model
from test_message_ops import half_list

from openmm_tensornet import ops_status
from openmm_tensornet.ops.pairs import pair_index
from openmm_tensornet.ops.reference import interaction_reference
from openmm_tensornet.ops.tensors import basis

pytestmark = pytest.mark.skipif(not ops_status().compiled, reason="the compiled ops are not loaded")


@pytest.fixture(params=["cpu passes", "generic"])
def implementation(request, monkeypatch):
    """The op's CPU passes, or (OPENMM_TENSORNET_GENERIC_OPS=1) the ATen composition used on other devices."""
    if request.param == "generic":
        monkeypatch.setenv("OPENMM_TENSORNET_GENERIC_OPS", "1")
    else:
        monkeypatch.delenv("OPENMM_TENSORNET_GENERIC_OPS", raising=False)
    return request.param


def layer_inputs(num_atoms, channels, seed, capacity=None, dtype=torch.float64):
    """Features, pair weights (zero on padding rows), self-loop weights, charge factors and mixing matrices."""
    _, pairs = half_list(num_atoms, seed, capacity, dtype)
    raw = pairs.indices
    generator = torch.Generator().manual_seed(seed)
    valid = (raw[0] >= 0).to(dtype)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator, dtype=dtype) * scale

    features = rand(num_atoms, 9, channels)
    radial = rand(raw.shape[1], 3, channels) * valid[:, None, None]
    loop = rand(3, channels)
    charge_factor = 1.0 + 0.1 * torch.randint(-2, 3, (num_atoms,), generator=generator).to(dtype)
    mix_in = rand(3, channels, channels, scale=channels ** -0.5)
    mix_out = rand(3, channels, channels, scale=channels ** -0.5)
    return raw, features, radial, loop, charge_factor, mix_in, mix_out


def fused(raw, features, radial, loop, charge_factor, mix_in, mix_out, so3):
    index = pair_index(raw, features.shape[0])
    return torch.ops.openmm_tensornet.tensor_interaction(features, radial, loop, charge_factor, mix_in, mix_out,
                                                         *index, so3)


def twin(raw, features, radial, loop, charge_factor, mix_in, mix_out, so3):
    index = pair_index(raw, features.shape[0])
    b = basis(features.dtype).reshape(9, 9)
    return interaction_reference(features, radial, loop, charge_factor, mix_in, mix_out, raw.clamp(min=0), index,
                                 so3, b, False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("so3", [False, True])
@pytest.mark.parametrize("num_atoms, channels, capacity", [(40, 16, None), (40, 20, 900), (1, 16, None),
                                                           (0, 16, None), (300, 8, None), (12, 3, None)])
def test_layer_op_matches_the_twin_with_gradients(implementation, dtype, so3, num_atoms, channels, capacity):
    """Values and the gradients of a random projection with respect to features and radial weights; channel counts
    that are not multiples of the CPU passes' block (16) included."""
    raw, features, radial, loop, factor, mix_in, mix_out = layer_inputs(num_atoms, channels, 5, capacity, dtype)
    tol = TOLERANCES[dtype]["tensor"]
    results = []
    for function in (fused, twin):
        x = features.clone().requires_grad_(True)
        w = radial.clone().requires_grad_(True)
        out = function(raw, x, w, loop, factor, mix_in, mix_out, so3)
        projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (out * projection).sum().backward()
        results.append((out.detach(), x.grad, w.grad))
    (out, gx, gw), (out_ref, gx_ref, gw_ref) = results
    assert out.shape == (num_atoms, 9, channels) and out.is_contiguous()
    valid = raw[0] >= 0  # the twin indexes padding rows as pair (0, 0); their weights are zero in the model
    assert gx.shape == features.shape and gw.shape == radial.shape
    for actual, expected, what in ((out, out_ref, "output"), (gx, gx_ref, "features gradient"),
                                   (gw[valid], gw_ref[valid], "radial gradient")):
        if expected.numel():
            assert_close(actual, expected, tol, what)
    if capacity is not None:  # padding rows get no weight gradient from the op
        assert float(gw[~valid].abs().max()) == 0.0


@pytest.mark.parametrize("so3", [False, True])
def test_layer_op_gradients_equal_finite_differences(implementation, so3):
    raw, features, radial, loop, factor, mix_in, mix_out = layer_inputs(7, 5, 3, capacity=60)

    def function(x, w):
        return fused(raw, x, w, loop, factor, mix_in, mix_out, so3)

    assert torch.autograd.gradcheck(function, (features.clone().requires_grad_(), radial.clone().requires_grad_()))


def test_layer_op_refuses_weights_that_need_gradients_and_second_derivatives():
    raw, features, radial, loop, factor, mix_in, mix_out = layer_inputs(6, 4, 1)
    with pytest.raises(RuntimeError, match="mix_in and mix_out require gradients.*model.train"):
        fused(raw, features, radial, loop, factor, mix_in.requires_grad_(True), mix_out, False)
    x = features.clone().requires_grad_(True)
    out = fused(raw, x, radial, loop, factor, mix_in.detach(), mix_out, False)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(out.square().sum(), x, create_graph=True)


def test_layer_op_bad_arguments_give_clear_errors():
    raw, features, radial, loop, factor, mix_in, mix_out = layer_inputs(6, 4, 1)
    with pytest.raises(RuntimeError, match=r"loop must have shape \[3, F\] \(or \[9, F\] per component\) with F = 4"):
        fused(raw, features, radial, loop[:, :3], factor, mix_in, mix_out, False)
    with pytest.raises(RuntimeError, match=r"charge_factor must have shape \[N\] = \[6\]"):
        fused(raw, features, radial, loop, factor[:2], mix_in, mix_out, False)
    with pytest.raises(RuntimeError, match="all floating inputs must be Double; got Float"):
        fused(raw, features, radial, loop, factor, mix_in.float(), mix_out, False)


def test_layer_op_fake_kernel_matches():
    raw, features, radial, loop, factor, mix_in, mix_out = layer_inputs(20, 4, 2)
    index = pair_index(raw, 20)
    strided = features.transpose(0, 1).contiguous().transpose(0, 1)
    torch.library.opcheck(torch.ops.openmm_tensornet.tensor_interaction.default,
                          (strided, radial, loop, factor, mix_in, mix_out, *index, False),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("static", [False, True])
def test_frozen_model_equals_the_twin_path(implementation, group, periodic, static):
    """With frozen weights (as exported for OpenMM) eval mode runs every layer as one op; train mode the twins."""
    model = small_model(seed=3, equivariance_group=group, num_layers=2, hidden_channels=20)
    z, pos = random_molecule(30, seed=11, density=0.1)
    box = torch.eye(3, dtype=torch.float64) * 10.0 if periodic else None
    if static:
        model.set_neighbor_capacity(3000, static=True)
    charge = torch.tensor([1.0], dtype=torch.float64)
    model.requires_grad_(False)
    model.freeze_for_inference(z)
    fast = model(z, pos, box=box, total_charge=charge, compute_forces=True)
    model.train()
    twin_out = model(z, pos, box=box, total_charge=charge, compute_forces=True)
    assert_close(fast.energy, twin_out.energy, 1e-12, "energy")
    assert_close(fast.forces, twin_out.forces, 1e-10, "forces")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rbf_type", ["expnorm", "gauss"])
@pytest.mark.parametrize("lower", [0.0, 0.7])
def test_pair_geometry_op_matches_the_twins(dtype, rbf_type, lower):
    """Radial basis, cutoff and edge components of one pass against radial.py and tensors.py, with gradients; rows
    at distance 0 (self-loops), beyond the cutoff and padding rows (zero vector, distance = cutoff) included."""
    from openmm_tensornet.ops.radial import CosineCutoff, make_rbf
    from openmm_tensornet.ops.tensors import edge_components, unit_vectors

    upper = 4.0
    generator = torch.Generator().manual_seed(7)
    vectors = torch.randn(50, 3, generator=generator, dtype=dtype) * 2.0
    vectors[3] = 0.0
    vectors[4] = 0.0
    distances = vectors.norm(dim=-1)
    distances[4] = upper  # a padding row
    vectors[5] *= 5.0 / float(vectors[5].norm())  # beyond the cutoff
    distances[5] = 5.0
    vectors[6] *= 0.3 / float(vectors[6].norm())  # below cutoff_lower when it is 0.7
    distances[6] = 0.3
    rbf_module = make_rbf(rbf_type, lower, upper, 6, False, dtype)
    means, betas = rbf_module.basis_tensors()
    tol = TOLERANCES[dtype]["tensor"]
    results = []
    for use_op in (True, False):
        v = vectors.clone().requires_grad_(True)
        d = distances.clone().requires_grad_(True)
        if use_op:
            outputs = torch.ops.openmm_tensornet.pair_geometry(v, d, means, betas, lower, upper, rbf_type)[:3]
        else:
            outputs = (rbf_module(d), CosineCutoff(lower, upper)(d), edge_components(unit_vectors(v, d)))
        projections = [torch.randn(o.shape, generator=torch.Generator().manual_seed(i), dtype=dtype)
                       for i, o in enumerate(outputs)]
        sum((o * w).sum() for o, w in zip(outputs, projections)).backward()
        results.append([o.detach() for o in outputs] + [v.grad, d.grad])
    for actual, expected, what in zip(results[0], results[1], ("rbf", "cutoff", "edge", "d/dvectors", "d/ddistances")):
        assert_close(actual, expected, tol, what)


def test_pair_geometry_op_gradients_equal_finite_differences():
    generator = torch.Generator().manual_seed(2)
    vectors = torch.randn(9, 3, generator=generator, dtype=torch.float64) * 1.5
    distances = vectors.norm(dim=-1)
    means = torch.linspace(0.1, 1.0, 4, dtype=torch.float64)
    betas = torch.full((4,), 3.0, dtype=torch.float64)

    def function(v, d):
        return torch.ops.openmm_tensornet.pair_geometry(v, d, means, betas, 0.0, 4.0, "expnorm")[:3]

    assert torch.autograd.gradcheck(function, (vectors.requires_grad_(), distances.requires_grad_()))
    with pytest.raises(RuntimeError, match="rbf_type must be 'expnorm' or 'gauss'"):
        torch.ops.openmm_tensornet.pair_geometry(vectors, distances, means, betas, 0.0, 4.0, "bessel")
    with pytest.raises(RuntimeError, match=r"distances must have shape \[P\] = \[9\]"):
        torch.ops.openmm_tensornet.pair_geometry(vectors, distances[:3], means, betas, 0.0, 4.0, "expnorm")
    torch.library.opcheck(torch.ops.openmm_tensornet.pair_geometry.default,
                          (vectors.detach(), distances.detach(), means, betas, 0.0, 4.0, "expnorm"),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def gate_inputs(num_atoms, channels, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator, dtype=dtype) * scale

    f = channels
    return (rand(num_atoms, 9, f), rand(num_atoms, f), 1.0 + 0.2 * rand(f), 0.2 * rand(f), 1e-5,
            rand(2 * f, f, scale=f ** -0.5), 0.2 * rand(2 * f), rand(3 * f, 2 * f, scale=(2 * f) ** -0.5),
            0.2 * rand(3 * f), rand(3, f, f, scale=f ** -0.5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["silu", "tanh", "sigmoid", "mish", "ssp"])
@pytest.mark.parametrize("num_atoms, channels", [(30, 16), (1, 5), (0, 8)])
def test_embedding_gate_op_matches_the_twin(dtype, activation, num_atoms, channels):
    from openmm_tensornet.ops.reference import embedding_gate_reference

    sums, loop, nw, nb, eps, w1, b1, w2, b2, mix = gate_inputs(num_atoms, channels, 4, dtype)
    results = []
    for function in (torch.ops.openmm_tensornet.embedding_gate, embedding_gate_reference):
        x = sums.clone().requires_grad_(True)
        out = function(x, loop, nw, nb, eps, w1, b1, w2, b2, activation, mix)
        projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (out * projection).sum().backward()
        results.append((out.detach(), x.grad))
    tol = TOLERANCES[dtype]["tensor"]
    assert results[0][0].shape == (num_atoms, 9, channels) and results[0][1].shape == sums.shape
    if num_atoms:
        assert_close(results[0][0], results[1][0], tol, "output")
        assert_close(results[0][1], results[1][1], tol, "gradient")


def test_embedding_gate_op_gradcheck_errors_and_fake_kernel():
    sums, loop, nw, nb, eps, w1, b1, w2, b2, mix = gate_inputs(5, 3, 2)

    def function(x):
        return torch.ops.openmm_tensornet.embedding_gate(x, loop, nw, nb, eps, w1, b1, w2, b2, "silu", mix)

    assert torch.autograd.gradcheck(function, (sums.clone().requires_grad_(),))
    with pytest.raises(RuntimeError, match=r"weight2 must have shape \[3F, H\] = \[9, 6\]"):
        torch.ops.openmm_tensornet.embedding_gate(sums, loop, nw, nb, eps, w1, b1, w2[:4], b2, "silu", mix)
    with pytest.raises(RuntimeError, match="unknown activation 'relu'"):
        torch.ops.openmm_tensornet.embedding_gate(sums, loop, nw, nb, eps, w1, b1, w2, b2, "relu", mix)
    with pytest.raises(RuntimeError, match="weights require gradients.*model.train"):
        torch.ops.openmm_tensornet.embedding_gate(sums, loop, nw, nb, eps, w1.requires_grad_(True), b1, w2, b2,
                                                  "silu", mix)
    torch.library.opcheck(torch.ops.openmm_tensornet.embedding_gate.default,
                          (sums, loop, nw, nb, eps, w1.detach(), b1, w2, b2, "silu", mix),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_frozen_inference_constants_equal_the_unfrozen_model_and_refuse_other_atoms():
    """freeze_for_inference (used by every exported force) precomputes position-independent terms: same energies
    and forces as without them, other atoms are refused, and train() discards them."""
    model = small_model(seed=5, num_layers=2, hidden_channels=12)
    z, pos = random_molecule(14, seed=3)
    model.requires_grad_(False)
    plain = model(z, pos, compute_forces=True)
    model.freeze_for_inference(z)
    frozen = model(z, pos, compute_forces=True)
    assert_close(frozen.energy, plain.energy, 1e-13, "energy")
    assert_close(frozen.forces, plain.forces, 1e-12, "forces")
    with pytest.raises(ValueError, match="frozen for inference on other atoms"):
        model(z.flip(0), pos)
    # Weights made trainable again: the constants are bypassed and every parameter gets its gradient.
    model.requires_grad_(True)
    model(z, pos).energy.sum().backward()
    assert all(parameter.grad is not None for name, parameter in model.named_parameters() if "rbf" not in name)
    model.requires_grad_(False)
    # New weights through load_state_dict discard the constants.
    other = small_model(seed=6, num_layers=2, hidden_channels=12)
    model.load_state_dict(other.state_dict())
    assert model.frozen_z.numel() == 0
    assert_close(model(z, pos).energy, other(z, pos).energy, 1e-12, "energy after load_state_dict")
    model.freeze_for_inference(z)
    model.train()
    assert model.frozen_z.numel() == 0 and model.layers[0].frozen_loop.numel() == 0
    model.eval()
    assert_close(model(z.flip(0), pos).energy, other(z.flip(0), pos).energy, 1e-12, "energy after unfreezing")
    model.requires_grad_(True)
    with pytest.raises(RuntimeError, match="needs frozen weights"):
        model.freeze_for_inference(z)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["silu", "tanh", "ssp"])
@pytest.mark.parametrize("num_atoms", [25, 1, 0])
def test_invariant_readout_op_matches_the_twin(dtype, activation, num_atoms):
    from openmm_tensornet.ops.reference import invariant_readout_reference

    generator = torch.Generator().manual_seed(6)
    f = 7
    features = torch.randn(num_atoms, 9, f, generator=generator, dtype=dtype)
    arguments = (1.0 + 0.2 * torch.randn(3 * f, generator=generator, dtype=dtype),
                 0.2 * torch.randn(3 * f, generator=generator, dtype=dtype), 1e-5,
                 torch.randn(5, 3 * f, generator=generator, dtype=dtype) * 0.3,
                 torch.randn(5, generator=generator, dtype=dtype) * 0.2, activation)
    results = []
    for function in (torch.ops.openmm_tensornet.invariant_readout, invariant_readout_reference):
        x = features.clone().requires_grad_(True)
        out = function(x, *arguments)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)).sum().backward()
        results.append((out.detach(), x.grad))
    assert results[0][0].shape == (num_atoms, 5) and results[0][1].shape == features.shape
    if num_atoms:
        tol = TOLERANCES[dtype]["tensor"]
        assert_close(results[0][0], results[1][0], tol, "scalars")
        assert_close(results[0][1], results[1][1], tol, "gradient")


def test_invariant_readout_op_gradcheck_errors_and_fake_kernel():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(4, 9, 3, generator=generator, dtype=torch.float64)
    weights = (torch.rand(9, dtype=torch.float64) + 0.5, torch.rand(9, dtype=torch.float64), 1e-5,
               torch.randn(2, 9, generator=generator, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: torch.ops.openmm_tensornet.invariant_readout(x, *weights, "silu"),
                                    (features.clone().requires_grad_(),))
    with pytest.raises(RuntimeError, match=r"weight must have shape \[F_out, 3F\] = \[F_out, 9\]"):
        torch.ops.openmm_tensornet.invariant_readout(features, *weights[:3], weights[3][:, :4], weights[4], "silu")
    torch.library.opcheck(torch.ops.openmm_tensornet.invariant_readout.default, (features, *weights, "silu"),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("periodic", [False, True])
def test_pair_vectors_op_matches_the_twin(dtype, periodic):
    """Vectors and distances of a padded periodic list (neighbor_pairs uses the op on the CPU) against
    vectors_from_shifts and the norm, with position gradients; the box must not need gradients."""
    from openmm_tensornet.ops.neighbors import neighbor_search_reference, vectors_from_shifts

    generator = torch.Generator().manual_seed(8)
    positions = torch.rand(30, 3, generator=generator, dtype=dtype) * 9.0
    box = torch.tensor([[9.0, 0, 0], [1.0, 9.0, 0], [-2.0, 1.5, 9.0]], dtype=dtype) if periodic else None
    indices, shifts, _ = neighbor_search_reference(positions, 4.0, box, None, 600, True)
    assert bool((indices[0] < 0).any())  # padding rows included
    results = []
    for use_op in (True, False):
        x = positions.clone().requires_grad_(True)
        if use_op:
            vectors, distances = torch.ops.openmm_tensornet.pair_vectors(x, indices, shifts, box)
        else:
            vectors = vectors_from_shifts(x, indices, shifts, box)
            distances = torch.linalg.vector_norm(vectors, dim=-1)
        weights = torch.randn(vectors.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        ((vectors * weights).sum() + distances.square().sum() + distances.sum()).backward()
        results.append((vectors.detach(), distances.detach(), x.grad))
    tol = TOLERANCES[dtype]["tensor"]
    for actual, expected, what in zip(results[0], results[1], ("vectors", "distances", "gradient")):
        assert_close(actual, expected, tol, what)
    if periodic:
        with pytest.raises(RuntimeError, match="box requires gradients"):
            torch.ops.openmm_tensornet.pair_vectors(positions, indices, shifts, box.clone().requires_grad_(True))
    x64 = positions[:8].double().requires_grad_(True)
    small = neighbor_search_reference(x64.detach(), 4.0, None, None, 40, True)
    assert torch.autograd.gradcheck(lambda x: torch.ops.openmm_tensornet.pair_vectors(x, small[0], small[1], None),
                                    (x64,))
    torch.library.opcheck(torch.ops.openmm_tensornet.pair_vectors.default, (positions, indices, shifts, box),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_layer_op_takes_weights_per_component(implementation):
    """loop [9, F] and mix [9, F, F] (freeze_for_inference's constants) give what loop [3, F] and mix [3, F, F] do."""
    from openmm_tensornet.ops.tensors import part_rows

    raw, features, radial, loop, factor, mix_in, mix_out = layer_inputs(20, 6, 4, capacity=500)
    results = []
    for rows in (lambda x: x, part_rows):
        x = features.clone().requires_grad_(True)
        w = radial.clone().requires_grad_(True)
        out = fused(raw, x, w, rows(loop.unsqueeze(-1)).squeeze(-1), factor, rows(mix_in), rows(mix_out), False)
        out.square().sum().backward()
        results.append((out.detach(), x.grad, w.grad))
    for actual, expected, what in zip(results[0], results[1], ("output", "features gradient", "radial gradient")):
        assert torch.equal(actual, expected), what


def test_backward_ops_refuse_mismatched_inputs():
    """The backward-only ops are public too: inputs that do not fit give an error, never an out-of-bounds write."""
    vectors, distances = torch.rand(4, 3), torch.rand(4)
    with pytest.raises(RuntimeError, match="pair_vectors_backward: pair 0 indexes beyond the 2 atoms"):
        torch.ops.openmm_tensornet.pair_vectors_backward(vectors, distances, vectors, distances,
                                                         torch.tensor([[3, 0, 1, 0], [0, 1, 0, 1]]), 2)
    with pytest.raises(RuntimeError, match=r"pair_vectors_backward: expected indices int64 \[2, P\]"):
        torch.ops.openmm_tensornet.pair_vectors_backward(vectors, distances, vectors, distances[:3],
                                                         torch.zeros(2, 4, dtype=torch.long), 2)
    with pytest.raises(RuntimeError, match=r"pair_geometry_backward: grad_edge must have shape \[4, 9\]"):
        torch.ops.openmm_tensornet.pair_geometry_backward(None, None, torch.rand(4, 8), vectors, distances,
                                                          torch.rand(4, 5), torch.rand(4))
