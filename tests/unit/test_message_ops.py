"""The fused ops of plugin/messages (embedding sum, message passing, tensor product) against their pure-torch twins,
finite differences and the 3x3-matrix definition; and the whole model, compiled path vs twin path."""

from __future__ import annotations

import pytest
import torch
from conftest import TOLERANCES, assert_close, random_molecule, small_model

from openmm_tensornet import neighbor_pairs, ops_status
from openmm_tensornet.ops.messages import tensor_embedding, tensor_messages, tensor_product
from openmm_tensornet.ops.pairs import pair_index
from openmm_tensornet.ops.reference import (
    tensor_embedding_reference,
    tensor_messages_reference,
    tensor_product_reference,
)
from openmm_tensornet.ops.tensors import basis, edge_components, from_matrix, to_matrix

compiled = pytest.mark.skipif(not ops_status().compiled, reason="the compiled ops are not loaded")


def half_list(num_atoms: int, seed: int, capacity=None, dtype=torch.float64):
    """A real half neighbour list of a random cloud; with ``capacity``, padded with -1 rows."""
    pos = random_molecule(num_atoms, seed=seed, dtype=dtype, density=0.1)[1] if num_atoms else torch.zeros(0, 3, dtype=dtype)
    pairs = neighbor_pairs(pos, 4.0, half=True, max_pairs=capacity)
    return pos, pairs


def random_inputs(num_atoms, channels, seed, capacity=None, dtype=torch.float64):
    pos, pairs = half_list(num_atoms, seed, capacity, dtype)
    generator = torch.Generator().manual_seed(seed)
    count = pairs.indices.shape[1]
    valid = (pairs.indices[0] >= 0).to(dtype)
    weights = torch.randn(count, 3, channels, generator=generator, dtype=dtype) * valid[:, None, None]
    features = torch.randn(num_atoms, 9, channels, generator=generator, dtype=dtype)
    return pairs.indices, weights, features, pairs


@compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_atoms, capacity", [(40, None), (40, 900), (1, None), (0, None), (2, 4), (300, None)])
def test_messages_match_the_twin_and_the_full_list_definition(dtype, num_atoms, capacity):
    raw, weights, features, _ = random_inputs(num_atoms, 5, seed=num_atoms, capacity=capacity, dtype=dtype)
    safe = raw.clamp(min=0)
    index = pair_index(raw, num_atoms)
    actual = tensor_messages(weights, features, index)
    expected = tensor_messages_reference(weights, features, safe)
    # The definition, written out over the full (ordered) list, one component at a time.
    explicit = torch.zeros_like(features)
    part = [0, 1, 1, 1, 2, 2, 2, 2, 2]
    for p in range(raw.shape[1]):
        i, j = int(raw[0, p]), int(raw[1, p])
        if i < 0:
            continue
        for k in range(9):
            explicit[i, k] += weights[p, part[k]] * features[j, k]
            explicit[j, k] += weights[p, part[k]] * features[i, k]
    if num_atoms == 0:
        assert actual.shape == expected.shape == (0, 9, 5)
        return
    tol = TOLERANCES[dtype]["tensor"]
    assert_close(actual, explicit, tol, "messages vs definition")
    assert_close(expected, explicit, tol, "twin vs definition")


def _grads(function, inputs):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = function(*inputs)
    generator = torch.Generator().manual_seed(7)
    cotangent = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return out, torch.autograd.grad(out, inputs, cotangent)


@compiled
@pytest.mark.parametrize("capacity", [None, 900])
def test_messages_backward_equals_twin_and_finite_differences(capacity):
    raw, weights, features, _ = random_inputs(25, 4, seed=3, capacity=capacity)
    index = pair_index(raw, 25)
    out, grads = _grads(lambda w, x: tensor_messages(w, x, index), [weights, features])
    ref_out, ref_grads = _grads(lambda w, x: tensor_messages_reference(w, x, raw.clamp(min=0)), [weights, features])
    valid = raw[0] >= 0
    assert_close(grads[0][valid], ref_grads[0][valid], 1e-12, "weight gradient")
    assert_close(grads[1], ref_grads[1], 1e-12, "feature gradient")
    small_raw, small_w, small_x, _ = random_inputs(9, 2, seed=4)
    small_index = pair_index(small_raw, 9)
    assert torch.autograd.gradcheck(lambda w, x: tensor_messages(w, x, small_index),
                                    (small_w.requires_grad_(), small_x.requires_grad_()))


def _embedding_inputs(num_atoms, channels, seed, capacity=None, dtype=torch.float64):
    raw, radial, _, pairs = random_inputs(num_atoms, channels, seed, capacity, dtype)
    unit = pairs.vectors / torch.where(pairs.distances > 0, pairs.distances, 1.0).unsqueeze(-1)
    generator = torch.Generator().manual_seed(seed + 1)
    receiver = torch.randn(num_atoms, channels, generator=generator, dtype=dtype)
    sender = torch.randn(num_atoms, channels, generator=generator, dtype=dtype)
    return raw, radial, edge_components(unit), receiver, sender, unit


@compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_atoms, capacity", [(40, None), (40, 900), (1, None), (0, None), (300, None)])
def test_embedding_matches_the_twin_and_the_definition(dtype, num_atoms, capacity):
    raw, radial, edge, receiver, sender, unit = _embedding_inputs(num_atoms, 6, num_atoms + 1, capacity, dtype)
    actual = tensor_embedding(radial, edge, receiver, sender, pair_index(raw, num_atoms))
    expected = tensor_embedding_reference(radial, edge, receiver, sender, raw.clamp(min=0))
    # Definition: every ordered edge i <- j carries (R_i + S_j) * radial * edge tensors of u_ij = -u_ji.
    explicit = torch.zeros(num_atoms, 9, 6, dtype=dtype)
    part = [0, 1, 1, 1, 2, 2, 2, 2, 2]
    for p in range(raw.shape[1]):
        i, j = int(raw[0, p]), int(raw[1, p])
        if i < 0:
            continue
        for receiving, sending, u in ((i, j, unit[p]), (j, i, -unit[p])):
            components = edge_components(u.unsqueeze(0))[0]
            for k in range(9):
                explicit[receiving, k] += (receiver[receiving] + sender[sending]) * radial[p, part[k]] * components[k]
    if num_atoms == 0:
        assert actual.shape == expected.shape == (0, 9, 6)
        return
    tol = TOLERANCES[dtype]["tensor"]
    assert_close(actual, explicit, tol, "embedding vs definition")
    assert_close(expected, explicit, tol, "twin vs definition")


@compiled
@pytest.mark.parametrize("capacity", [None, 900])
def test_embedding_backward_equals_twin_and_finite_differences(capacity):
    raw, radial, edge, receiver, sender, _ = _embedding_inputs(25, 4, 5, capacity)
    index = pair_index(raw, 25)
    inputs = [radial, edge, receiver, sender]
    _, grads = _grads(lambda *a: tensor_embedding(*a, index), inputs)
    _, ref_grads = _grads(lambda *a: tensor_embedding_reference(*a, raw.clamp(min=0)), inputs)
    valid = raw[0] >= 0
    for name, mine, theirs, per_pair in zip(("radial", "edge", "receiver", "sender"), grads, ref_grads,
                                            (True, True, False, False)):
        if per_pair:
            mine, theirs = mine[valid], theirs[valid]
        assert_close(mine, theirs, 1e-12, name + " gradient")
    small = _embedding_inputs(9, 2, 6)
    small_index = pair_index(small[0], 9)
    assert torch.autograd.gradcheck(lambda *a: tensor_embedding(*a, small_index),
                                    tuple(x.clone().requires_grad_() for x in small[1:5]))


@compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tensor_product_is_the_matrix_product(dtype):
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(7, 9, 5, generator=generator, dtype=dtype)
    right = torch.randn(7, 9, 5, generator=generator, dtype=dtype)
    b = basis(dtype).reshape(9, 9)
    # Definition: build the matrices with einsum from the basis, multiply with torch.matmul.
    matrices_l = torch.einsum("kab,nkf->nfab", basis(dtype), left)
    matrices_r = torch.einsum("kab,nkf->nfab", basis(dtype), right)
    expected = torch.einsum("kab,nfab->nkf", basis(dtype), matrices_l @ matrices_r)
    tol = TOLERANCES[dtype]["tensor"]
    assert_close(tensor_product(left, right), expected, tol, "compiled product")
    assert_close(tensor_product_reference(left, right, b), expected, tol, "twin product")
    assert_close(from_matrix(to_matrix(left, b), b), left, tol, "basis round trip")
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(tensor_product, (left[:2].requires_grad_(), right[:2].requires_grad_()))
        square = left[:2].clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda x: tensor_product(x, x), (square,))


def test_basis_is_orthonormal_and_ordered_by_irreducible_part():
    b = basis()
    gram = torch.einsum("kab,lab->kl", b, b)
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64))
    assert torch.allclose(b[0], torch.eye(3, dtype=torch.float64) / 3 ** 0.5)
    assert torch.allclose(b[1:4], -b[1:4].transpose(1, 2))  # skew
    assert torch.allclose(b[4:], b[4:].transpose(1, 2))  # symmetric
    assert torch.allclose(torch.diagonal(b[4:], dim1=1, dim2=2).sum(-1), torch.zeros(5, dtype=torch.float64))


@compiled
@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("layers", [0, 2])
def test_model_compiled_path_equals_the_twin_path(group, periodic, static, layers):
    """Eval mode runs the compiled ops, train mode the pure-torch twins: same energies and forces."""
    model = small_model(seed=layers, equivariance_group=group, num_layers=layers)
    z, pos = random_molecule(30, seed=11, density=0.1)
    box = torch.eye(3, dtype=torch.float64) * 10.0 if periodic else None
    if static:
        model.set_neighbor_capacity(3000, static=True)
    charge = torch.tensor([-1.0], dtype=torch.float64)
    fast = model(z, pos, box=box, total_charge=charge, compute_forces=True)
    model.train()
    twin = model(z, pos, box=box, total_charge=charge, compute_forces=True)
    assert_close(fast.energy, twin.energy.detach(), 1e-12, "energy")
    assert_close(fast.forces, twin.forces.detach(), 1e-10, "forces")


@compiled
def test_model_forces_equal_finite_differences_on_the_compiled_path():
    model = small_model(seed=2)
    z, pos = random_molecule(12, seed=2)
    forces = model(z, pos, compute_forces=True).forces
    step = 1e-5
    for atom, axis in ((0, 0), (5, 1), (11, 2)):
        shifted = []
        for sign in (1.0, -1.0):
            moved = pos.clone()
            moved[atom, axis] += sign * step
            shifted.append(float(model(z, moved).energy.detach()))
        assert float(forces[atom, axis]) == pytest.approx(-(shifted[0] - shifted[1]) / (2 * step), rel=1e-6, abs=1e-8)


@compiled
def test_second_derivatives_through_the_compiled_ops_are_refused():
    """Force training needs create_graph; the compiled ops say to use train mode instead of giving wrong gradients."""
    model = small_model()
    z, pos = random_molecule(8, seed=1)
    pos.requires_grad_(True)
    energy = model(z, pos).energy.sum()
    with pytest.raises(RuntimeError, match="no second derivative.*model.train"):
        torch.autograd.grad(energy, pos, create_graph=True)
    model.train()
    forces = model(z, pos, compute_forces=True).forces  # the twin path supports create_graph
    forces.square().sum().backward()
    assert model.embedding.radial_linear.weight.grad is not None


@compiled
def test_bad_arguments_give_clear_errors():
    features = torch.zeros(3, 9, 4)
    index = pair_index(torch.zeros(2, 0, dtype=torch.long), 3)
    with pytest.raises(RuntimeError, match=r"weights must have shape \[P, 3, F\]"):
        tensor_messages(torch.zeros(0, 2, 4), features, index)
    with pytest.raises(RuntimeError, match=r"left and right must both have shape \[N, 9, F\]"):
        tensor_product(features, torch.zeros(3, 9, 5))


@compiled
@pytest.mark.parametrize("activation", ["silu", "tanh", "sigmoid", "mish", "ssp", "none"])
def test_radial_mlp_matches_the_twin_and_finite_differences(activation):
    from openmm_tensornet.ops.reference import radial_mlp_reference

    generator = torch.Generator().manual_seed(3)
    rbf = torch.rand(30, 6, generator=generator, dtype=torch.float64)
    cutoff = torch.rand(30, generator=generator, dtype=torch.float64)
    widths = [6, 5, 7] if activation != "none" else [6, 9]
    weights = [torch.randn(widths[i + 1], widths[i], generator=generator, dtype=torch.float64)
               for i in range(len(widths) - 1)]
    biases = [torch.randn(w, generator=generator, dtype=torch.float64) for w in widths[1:]]

    def fused(r, c):
        return torch.ops.openmm_tensornet.radial_mlp(r, c, weights, biases, activation)

    assert_close(fused(rbf, cutoff), radial_mlp_reference(rbf, cutoff, weights, biases, activation), 1e-12, "value")
    assert torch.autograd.gradcheck(fused, (rbf.clone().requires_grad_(), cutoff.clone().requires_grad_()))


@compiled
def test_radial_mlp_refuses_weights_that_need_gradients():
    weights = [torch.randn(4, 3, requires_grad=True)]
    with pytest.raises(RuntimeError, match="weights require gradients"):
        torch.ops.openmm_tensornet.radial_mlp(torch.rand(5, 3), torch.rand(5), weights, [torch.zeros(4)], "silu")


@pytest.mark.parametrize("problem", ["nan", "overlap", "box"])
def test_exported_module_raises_evaluation_errors_at_its_top_level(problem):
    """Errors found inside the model are deferred and raised by the TorchForce module itself (openmm-torch 1.5
    crashes when an exception comes from code inlined from a submodule); the message is the model's own."""
    from openmm_tensornet.openmm.export import export_torchscript

    model = small_model(4)
    z, pos = random_molecule(10, seed=4)
    periodic = problem == "box"
    module = export_torchscript(model, z.tolist(), periodic=periodic)
    x = pos / 10.0
    box = torch.eye(3, dtype=torch.float64) * 2.0
    expected = {"nan": r"positions of atoms \[3\] contain NaN", "overlap": "atoms 2 and 5 are at the same position",
                "box": "periodic box is too small for the cutoff"}[problem]
    if problem == "nan":
        x[3, 1] = float("nan")
    elif problem == "overlap":
        x[5] = x[2]
    else:
        box = box * 0.3
    with pytest.raises((RuntimeError, torch.jit.Error), match=expected):
        module(x, box) if periodic else module(x)
    # The model's own (not deferred) errors are unchanged.
    model.defer_errors = True
    out = model(z, x * 10.0, box=box * 10.0 if periodic else None)
    assert torch.isnan(out.energy).all() and model.error != ""


@compiled
def test_fake_kernels_match_the_compiled_ops():
    """torch.compile traces the ops through their fake kernels: shapes, strides and dtypes must match (opcheck),
    including for non-contiguous inputs."""
    raw, weights, features, _ = random_inputs(20, 4, seed=1)
    index = pair_index(raw, 20)
    strided = features.transpose(0, 1).contiguous().transpose(0, 1)
    e_raw, radial, edge, receiver, sender, _ = _embedding_inputs(20, 4, 2)
    e_index = pair_index(e_raw, 20)
    generator = torch.Generator().manual_seed(0)
    cases = [
        ("tensor_messages", (weights, strided, raw, index.first_ptr, index.second_order, index.second_ptr)),
        ("tensor_product", (strided, features)),
        ("tensor_embedding", (radial, edge, receiver, sender, e_raw, e_index.first_ptr, e_index.second_order,
                              e_index.second_ptr)),
        ("radial_mlp", (torch.rand(7, 3, generator=generator, dtype=torch.float64),
                        torch.rand(7, generator=generator, dtype=torch.float64),
                        [torch.rand(5, 3, generator=generator, dtype=torch.float64)],
                        [torch.rand(5, generator=generator, dtype=torch.float64)], "silu")),
    ]
    for name, arguments in cases:
        operator = getattr(torch.ops.openmm_tensornet, name).default
        torch.library.opcheck(operator, arguments,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_kernels_match_the_cpu_kernels(dtype):
    if not ops_status().cuda:
        pytest.skip("the CUDA kernels were not built: " + "; ".join(ops_status().notes))
    raw, weights, features, _ = random_inputs(60, 8, seed=5, capacity=2000, dtype=dtype)
    e_raw, radial, edge, receiver, sender, _ = _embedding_inputs(60, 8, 6, capacity=2000, dtype=dtype)
    tol = TOLERANCES[dtype]["tensor"]
    for function, inputs, pairs in (
        (lambda w, x, i: tensor_messages(w, x, i), [weights, features], raw),
        (lambda r, e, a, b, i: tensor_embedding(r, e, a, b, i), [radial, edge, receiver, sender], e_raw),
    ):
        cpu_out, cpu_grads = _grads(lambda *a: function(*a, pair_index(pairs, 60)), inputs)
        cuda_inputs = [x.cuda() for x in inputs]
        cuda_index = pair_index(pairs.cuda(), 60)
        cuda_out, cuda_grads = _grads(lambda *a: function(*a, cuda_index), cuda_inputs)
        assert_close(cuda_out.cpu(), cpu_out, tol, "value")
        for mine, theirs in zip(cuda_grads, cpu_grads):
            assert_close(mine.cpu(), theirs, tol, "gradient")
    left, right = features[:10], features[10:20]
    assert_close(tensor_product(left.cuda(), right.cuda()).cpu(), tensor_product(left, right), tol, "product")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_on_cuda_equals_cpu_with_and_without_static_shapes():
    if not ops_status().cuda:
        pytest.skip("the CUDA kernels were not built")
    model = small_model(3)
    z, pos = random_molecule(40, seed=3, density=0.1)
    expected = model(z, pos, compute_forces=True)
    for static in (False, True):
        gpu = small_model(3).cuda()
        if static:
            gpu.set_neighbor_capacity(3000, static=True)
        out = gpu(z.cuda(), pos.cuda(), compute_forces=True)
        assert_close(out.energy.cpu(), expected.energy.detach(), 1e-10, "energy")
        assert_close(out.forces.cpu(), expected.forces.detach(), 1e-9, "forces")


@compiled
@pytest.mark.parametrize("num_atoms, capacity", [(40, None), (40, 900), (1, None), (0, None), (300, None), (2, 4)])
def test_pair_csr_op_equals_the_twin(num_atoms, capacity):
    from openmm_tensornet.ops.pairs import pair_index_reference

    raw = half_list(num_atoms, 9, capacity)[1].indices
    shuffled = raw[:, torch.randperm(raw.shape[1], generator=torch.Generator().manual_seed(0))]
    for pairs in (raw, shuffled):
        fast = pair_index(pairs, num_atoms)
        twin = pair_index_reference(pairs, num_atoms)
        for name in ("first_ptr", "second_order", "second_ptr"):
            assert torch.equal(getattr(fast, name), getattr(twin, name)), name
    with pytest.raises(RuntimeError, match="indexes beyond num_atoms"):
        torch.ops.openmm_tensornet.pair_csr(torch.tensor([[0], [5]]), 3)
    torch.library.opcheck(torch.ops.openmm_tensornet.pair_csr.default, (raw, num_atoms),
                          test_utils=("test_schema", "test_faketensor"))
