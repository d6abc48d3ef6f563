"""The compiled neighbour-list op against the pure-torch reference: pairs, shifts, gradients, padding, errors."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch

import openmm_tensornet  # noqa: F401  (registers torch.ops.openmm_tensornet)
from openmm_tensornet import neighbor_pairs, neighbor_pairs_reference, ops_status
from openmm_tensornet.ops.neighbors import neighbor_search_reference
from openmm_tensornet.ops.contract import declared_schemas
from openmm_tensornet.ops.library import require_compiled_ops, source_dir

ROOT = Path(__file__).resolve().parents[2]
CUTOFF = 1.0

BOXES = {
    "none": None,
    "rectangular": [[3.1, 0.0, 0.0], [0.0, 2.6, 0.0], [0.0, 0.0, 2.2]],
    # reduced triclinic forms: a truncated octahedron and a strongly skewed cell at the limits of the reduced form
    "octahedron": [[3.0, 0.0, 0.0], [1.0, 2 * 2**0.5, 0.0], [-1.0, 2**0.5, 6**0.5]],
    "skewed": [[2.4, 0.0, 0.0], [-1.2, 2.3, 0.0], [1.2, -1.15, 2.05]],
}


def cloud(num_atoms, dtype, box, seed, spread=1.0, molecules=1):
    """Random positions: inside (and, scaled by ``spread``, outside) the box, or in a cube at ~water density."""
    generator = torch.Generator().manual_seed(seed)
    if box is None:
        side = (num_atoms / 10.0) ** (1 / 3) * 1.8 + 0.5
        positions = torch.rand(num_atoms, 3, generator=generator, dtype=torch.float64) * side
    else:
        fractions = (torch.rand(num_atoms, 3, generator=generator, dtype=torch.float64) - 0.5) * spread + 0.5
        positions = fractions @ torch.tensor(box, dtype=torch.float64)
    batch = torch.randint(0, molecules, (num_atoms,), generator=generator) if molecules > 1 else None
    return positions.to(dtype), batch


def sorted_valid(pairs):
    """Valid rows sorted by (i, j): indices [2, E], vectors [E, 3], distances [E]."""
    valid = pairs.indices[0] >= 0
    indices = pairs.indices[:, valid]
    key = indices[0] * (int(indices.max()) + 1 if indices.numel() else 1) + indices[1]
    order = torch.argsort(key)
    return indices[:, order], pairs.vectors[valid][order], pairs.distances[valid][order]


def assert_same_pairs(actual, expected, dtype):
    got, got_vectors, got_distances = sorted_valid(actual)
    want, want_vectors, want_distances = sorted_valid(expected)
    assert int(actual.num_pairs) == int(expected.num_pairs) == want.shape[1]
    assert torch.equal(got, want)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(got_vectors, want_vectors, atol=tolerance, rtol=0)
    torch.testing.assert_close(got_distances, want_distances, atol=tolerance, rtol=0)


@pytest.mark.skipif(os.environ.get("OPENMM_TENSORNET_OPS") == "reference", reason="the fallback was asked for")
def test_compiled_library_is_loaded():
    """CI has g++ and ninja: the compiled op must be what serves the calls, not the fallback."""
    status = ops_status()
    assert status.compiled, status.reason
    assert require_compiled_ops().is_file()
    schema = str(torch.ops.openmm_tensornet.neighbor_pairs.default._schema)
    assert schema == str(torch._C.parse_schema("openmm_tensornet::" + declared_schemas(source_dir())["neighbor_pairs"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("box_name", list(BOXES))
@pytest.mark.parametrize("molecules", [1, 3])
@pytest.mark.parametrize("max_pairs", [None, "tight", "roomy"])
@pytest.mark.parametrize("algorithm", ["brute", "cells"])
def test_matches_reference(dtype, box_name, molecules, max_pairs, algorithm):
    box_list = BOXES[box_name]
    box = None if box_list is None else torch.tensor(box_list, dtype=dtype)
    positions, batch = cloud(150, dtype, box_list, seed=7, spread=3.0, molecules=molecules)
    expected = neighbor_pairs_reference(positions, CUTOFF, box, batch)
    assert int(expected.num_pairs) > 100  # a test with no pairs would prove nothing
    capacity = {None: None, "tight": int(expected.num_pairs), "roomy": int(expected.num_pairs) + 37}[max_pairs]
    actual = neighbor_pairs(positions, CUTOFF, box, batch, max_pairs=capacity, algorithm=algorithm)
    assert_same_pairs(actual, expected, dtype)
    if capacity is not None:
        assert actual.indices.shape == (2, capacity) and actual.vectors.shape == (capacity, 3)
        padding = actual.indices[0] < 0
        assert int(padding.sum()) == capacity - int(expected.num_pairs)
        assert bool((actual.indices[:, padding] == -1).all())
        assert bool((actual.vectors[padding] == 0).all()) and bool((actual.distances[padding] == 0).all())
        assert bool((padding[: int(expected.num_pairs)] == 0).all()), "padding must come after the pairs"


@pytest.mark.parametrize("box_name", list(BOXES))
def test_half_list(box_name):
    box_list = BOXES[box_name]
    box = None if box_list is None else torch.tensor(box_list, dtype=torch.float64)
    positions, _ = cloud(120, torch.float64, box_list, seed=3)
    full = neighbor_pairs(positions, CUTOFF, box)
    half = neighbor_pairs(positions, CUTOFF, box, half=True)
    assert int(full.num_pairs) == 2 * int(half.num_pairs)
    assert bool((half.indices[1] < half.indices[0]).all())
    assert_same_pairs(half, neighbor_pairs_reference(positions, CUTOFF, box, half=True), torch.float64)


@pytest.mark.parametrize("box_name", ["none", "rectangular", "octahedron"])
def test_large_system_uses_the_cell_list_and_agrees(box_name):
    """Above the brute-force threshold ('auto' picks cells); a few thousand atoms at about water density."""
    box_list = BOXES[box_name]
    scale = 2.5
    if box_list is not None:
        box_list = [[scale * x for x in row] for row in box_list]
    box = None if box_list is None else torch.tensor(box_list, dtype=torch.float32)
    positions, _ = cloud(2000, torch.float32, box_list, seed=11)
    for algorithm in ("auto", "brute"):
        assert_same_pairs(neighbor_pairs(positions, CUTOFF, box, algorithm=algorithm),
                          neighbor_pairs_reference(positions, CUTOFF, box), torch.float32)


def test_sparse_system_far_apart_atoms():
    """A huge empty bounding box must neither allocate a huge grid nor lose the close pairs."""
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1e5, 1e5, 1e5], [1e5, 1e5, 1e5 + 0.9]],
                             dtype=torch.float64)
    for algorithm in ("brute", "cells"):
        pairs = neighbor_pairs(positions, CUTOFF, algorithm=algorithm)
        assert sorted(map(tuple, pairs.indices.t().tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]


def test_dense_system():
    positions, _ = cloud(300, torch.float64, BOXES["rectangular"], seed=5)
    positions = positions * 0.3  # ~37 atoms per cutoff sphere instead of ~4
    box = torch.tensor(BOXES["rectangular"], dtype=torch.float64)
    reference = neighbor_pairs_reference(positions, CUTOFF, box)
    assert int(reference.num_pairs) > 300 * 30
    for algorithm in ("brute", "cells"):
        assert_same_pairs(neighbor_pairs(positions, CUTOFF, box, algorithm=algorithm), reference, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("algorithm", ["brute", "cells"])
def test_atoms_exactly_at_the_cutoff_are_excluded(dtype, algorithm):
    # exactly representable distances: 1.0 (excluded, the cutoff is strict) and 0.5, 0.75 (included)
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, -0.75]], dtype=dtype)
    pairs = neighbor_pairs(positions, 1.0, algorithm=algorithm)
    got = sorted(map(tuple, pairs.indices.t().tolist()))
    assert got == sorted([(0, 2), (2, 0), (0, 3), (3, 0), (2, 3), (3, 2)])  # |1-2| = sqrt(1.25), |2-3| = 0.901
    box = torch.diag(torch.tensor([4.0, 4.0, 4.0], dtype=dtype))
    across = torch.tensor([[0.25, 1.0, 1.0], [3.25, 1.0, 1.0], [0.25, 1.0, 2.0]], dtype=dtype)  # image at 1.0
    pairs = neighbor_pairs(across, 1.0, box, algorithm=algorithm)
    assert int(pairs.num_pairs) == 0


@pytest.mark.parametrize("num_atoms", [0, 1])
@pytest.mark.parametrize("box_name", ["none", "octahedron"])
@pytest.mark.parametrize("algorithm", ["brute", "cells"])
def test_empty_and_single_atom(num_atoms, box_name, algorithm):
    box = None if BOXES[box_name] is None else torch.tensor(BOXES[box_name], dtype=torch.float64)
    positions = torch.zeros(num_atoms, 3, dtype=torch.float64)
    pairs = neighbor_pairs(positions, CUTOFF, box, algorithm=algorithm)
    assert pairs.indices.shape == (2, 0) and pairs.vectors.shape == (0, 3) and int(pairs.num_pairs) == 0
    padded = neighbor_pairs(positions, CUTOFF, box, max_pairs=4, algorithm=algorithm)
    assert padded.indices.tolist() == [[-1] * 4, [-1] * 4] and int(padded.num_pairs) == 0


@pytest.mark.parametrize("box_name", ["rectangular", "skewed"])
def test_unwrapped_positions_give_the_same_vectors(box_name):
    """Positions many boxes away from the origin (as in a long MD run) give the same minimum-image vectors."""
    box = torch.tensor(BOXES[box_name], dtype=torch.float64)
    positions, _ = cloud(200, torch.float64, BOXES[box_name], seed=2)
    generator = torch.Generator().manual_seed(4)
    images = torch.randint(-5, 6, (200, 3), generator=generator).to(torch.float64)
    moved = positions + images @ box
    for algorithm in ("brute", "cells"):
        wrapped = neighbor_pairs(positions, CUTOFF, box, algorithm=algorithm)
        unwrapped = neighbor_pairs(moved, CUTOFF, box, algorithm=algorithm)
        got, _, got_distances = sorted_valid(unwrapped)
        want, _, want_distances = sorted_valid(wrapped)
        assert torch.equal(got, want) and want.shape[1] > 100
        torch.testing.assert_close(got_distances, want_distances, atol=1e-11, rtol=0)


def test_output_is_grouped_by_atom_and_independent_of_threads():
    positions, _ = cloud(3000, torch.float64, BOXES["octahedron"], seed=9, spread=1.0)
    box = torch.tensor(BOXES["octahedron"], dtype=torch.float64) * 2.5
    positions = positions * 2.5
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = neighbor_pairs(positions, CUTOFF, box, algorithm="cells")
        torch.set_num_threads(max(2, threads))
        many = neighbor_pairs(positions, CUTOFF, box, algorithm="cells")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.indices, many.indices)
    assert bool((one.indices[0, 1:] >= one.indices[0, :-1]).all())


@pytest.mark.parametrize("box_name", ["none", "rectangular", "skewed"])
@pytest.mark.parametrize("max_pairs", [None, 1000])
def test_gradients_match_reference_autograd(box_name, max_pairs):
    """d(sum f(vectors, distances))/d(positions, box) equals the reference's autograd; gradcheck in float64."""
    box0 = None if BOXES[box_name] is None else torch.tensor(BOXES[box_name], dtype=torch.float64)
    positions0, _ = cloud(40, torch.float64, BOXES[box_name], seed=12, spread=2.0)
    weights = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def energy(function, positions, box):
        pairs = function(positions, CUTOFF, box, max_pairs=max_pairs)
        return (torch.cos(3 * pairs.distances) * (pairs.vectors @ weights)).sum() + (pairs.distances ** 3).sum()

    inputs = [positions0.clone().requires_grad_(True)]
    if box0 is not None:
        inputs.append(box0.clone().requires_grad_(True))
    grads = torch.autograd.grad(energy(neighbor_pairs, *inputs, *([None] if box0 is None else [])), inputs)
    reference_inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    expected = torch.autograd.grad(
        energy(neighbor_pairs_reference, *reference_inputs, *([None] if box0 is None else [])), reference_inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        assert float(want.abs().max()) > 0.1
    if box0 is None:
        assert torch.autograd.gradcheck(lambda x: energy(neighbor_pairs, x, None), inputs)
    else:  # perturb only the six free entries of the reduced (lower-triangular) box
        rows, columns = torch.tril_indices(3, 3)

        def with_box(x, free):
            return energy(neighbor_pairs, x, torch.zeros(3, 3, dtype=free.dtype).index_put((rows, columns), free))

        free = box0[rows, columns].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(with_box, (inputs[0], free))


def test_overflow_is_an_error_never_a_short_list():
    positions, _ = cloud(100, torch.float64, None, seed=1)
    total = int(neighbor_pairs_reference(positions, CUTOFF).num_pairs)
    for function in (neighbor_pairs, neighbor_pairs_reference):
        with pytest.raises(RuntimeError, match=rf"{total} pairs are within the cutoff but max_pairs is {total - 1}"):
            function(positions, CUTOFF, max_pairs=total - 1)
    unchecked = neighbor_pairs(positions, CUTOFF, max_pairs=10, check_overflow=False)
    assert int(unchecked.num_pairs) == total and unchecked.indices.shape == (2, 10)
    raw = torch.ops.openmm_tensornet.neighbor_pairs(positions, None, None, CUTOFF, 10, False, "cells")
    assert int(raw[2]) == total  # the raw op reports the true count so that callers can refuse it


@pytest.mark.parametrize(
    "arguments, exception, message",
    [
        (dict(positions=torch.zeros(4, 2)), ValueError, r"positions must have shape \[N, 3\]; got \[4, 2\]"),
        (dict(positions=torch.zeros(4, 3, dtype=torch.int64)), ValueError, "positions must be float32 or float64"),
        (dict(positions=torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]])), ValueError, r"atoms \[1\] contain NaN"),
        (dict(cutoff=-1.0), ValueError, "cutoff must be a positive finite number; got -1.0"),
        (dict(box=torch.eye(3) * 1.5), ValueError, "box is too small for the cutoff"),
        (dict(box=torch.tensor([[3.0, 0.1, 0], [0, 3, 0], [0, 0, 3]])), ValueError, "reduced triclinic form"),
        (dict(box=torch.eye(2) * 3), ValueError, r"box must have shape \[3, 3\]"),
        (dict(max_pairs=-2), ValueError, "max_pairs must be None or >= 0; got -2"),
        (dict(batch=torch.zeros(3, dtype=torch.long)), RuntimeError, r"batch must have shape \[N\] with N = 4"),
        (dict(batch=torch.zeros(4, dtype=torch.int32)), RuntimeError, "batch must be int64"),
        (dict(box=torch.eye(3, dtype=torch.float64) * 3), RuntimeError, "box must have the dtype of positions"),
        (dict(algorithm="octree"), RuntimeError, "algorithm must be 'auto', 'brute' or 'cells'; got 'octree'"),
    ],
)
def test_bad_input_gives_a_clear_error(arguments, exception, message):
    call = dict(positions=torch.rand(4, 3), cutoff=1.0)
    call.update(arguments)
    with pytest.raises(exception, match=message):
        neighbor_pairs(**call)


@pytest.mark.parametrize(
    "box, message",
    [
        (torch.eye(3) * 1.5, "must each be at least twice the cutoff"),
        (torch.tensor([[3.0, 0.1, 0], [0, 3, 0], [0, 0, 3]]), "reduced triclinic form"),
        (torch.tensor([[3.0, 0, 0], [2.0, 3, 0], [0, 0, 3]]), r"\|b_x\|, \|c_x\| <= a_x / 2"),
        (torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 0, float("inf")]]), "box vectors contain NaN or infinity"),
    ],
)
def test_compiled_op_checks_values_itself(box, message):
    """A C++-only caller (TorchForce without the Python wrapper's checks) still gets the errors (the pure-torch
    fallback gives the same ones)."""
    with pytest.raises(RuntimeError, match=message):
        torch.ops.openmm_tensornet.neighbor_pairs(torch.rand(4, 3), box, None, 1.0, -1, False, "auto")
    with pytest.raises(RuntimeError, match="positions (of atoms .* )?contain NaN"):
        torch.ops.openmm_tensornet.neighbor_pairs(torch.full((4, 3), float("nan")), None, None, 1.0, -1, False, "auto")


class PairEnergy(torch.nn.Module):
    """A toy pair potential in kJ/mol from nm positions, for TorchScript and TorchForce round trips."""

    def __init__(self, cutoff: float, periodic: bool):
        super().__init__()
        self.cutoff = cutoff
        self.periodic = periodic

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        box: Optional[torch.Tensor] = None
        if self.periodic and boxvectors is not None:
            box = boxvectors.to(positions.dtype)
        pairs = neighbor_pairs(positions, self.cutoff, box, half=True)
        return (torch.exp(-3.0 * pairs.distances) * (self.cutoff - pairs.distances) ** 2).sum()


def test_torchscript_round_trip_in_a_fresh_process(tmp_path):
    box = torch.tensor(BOXES["skewed"], dtype=torch.float64)
    positions, _ = cloud(60, torch.float64, BOXES["skewed"], seed=21, spread=2.0)
    module = torch.jit.script(PairEnergy(CUTOFF, periodic=True))
    module.save(str(tmp_path / "pair.pt"))
    torch.save({"positions": positions, "box": box}, tmp_path / "inputs.pt")
    eager = PairEnergy(CUTOFF, periodic=True)(positions, box)
    script = (
        "import sys, torch, openmm_tensornet\n"
        f"m = torch.jit.load(r'{tmp_path / 'pair.pt'}')\n"
        f"d = torch.load(r'{tmp_path / 'inputs.pt'}')\n"
        "print(repr(float(m(d['positions'], d['box']))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(result.stdout.strip()) == pytest.approx(float(eager), rel=1e-14)
    assert float(eager) > 0


@pytest.mark.parametrize("periodic", [False, True])
def test_runs_inside_openmm_torchforce(tmp_path, periodic):
    """The scripted op runs in OpenMM's C++ TorchForce; energy and forces equal the direct evaluation."""
    import openmm
    import openmmtorch

    box_list = BOXES["octahedron"]
    positions, _ = cloud(80, torch.float64, box_list, seed=8, spread=1.5)
    module = torch.jit.script(PairEnergy(CUTOFF, periodic=periodic))
    path = str(tmp_path / "pair.pt")
    module.save(path)
    force = openmmtorch.TorchForce(path)
    force.setUsesPeriodicBoundaryConditions(periodic)
    system = openmm.System()
    for _ in range(positions.shape[0]):
        system.addParticle(1.0)
    system.addForce(force)
    box = torch.tensor(box_list, dtype=torch.float64)
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box_list])
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions.numpy())
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = torch.tensor(state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))
    x = positions.clone().requires_grad_(True)
    expected = PairEnergy(CUTOFF, periodic)(x, box)
    (gradient,) = torch.autograd.grad(expected, x)
    # TorchForce evaluates in float32; the reference here is float64
    expected = expected.detach()
    assert energy == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(forces, -gradient, rtol=1e-4, atol=1e-4 * float(gradient.abs().max()))
    assert float(expected) > 1.0


def test_reference_fallback_serves_the_same_op(tmp_path):
    """Without the compiled library (OPENMM_TENSORNET_OPS=reference) scripting and results still work, and asking
    for the compiled library says why it is missing and how to fix it."""
    script = (
        "import torch, openmm_tensornet as o\n"
        "from openmm_tensornet.ops.library import require_compiled_ops\n"
        "assert not o.ops_status().compiled\n"
        "x = torch.rand(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3\n"
        "p = o.neighbor_pairs(x, 1.0, max_pairs=500)\n"
        "f = torch.jit.script(o.neighbor_pairs)\n"
        "q = f(x, 1.0, None, None, 500)\n"
        "assert torch.equal(p.indices, q.indices)\n"
        "print(int(p.num_pairs))\n"
        "try:\n    require_compiled_ops()\nexcept RuntimeError as e:\n    print(e)\n"
    )
    environment = dict(os.environ, OPENMM_TENSORNET_OPS="reference")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    count, message = result.stdout.strip().split("\n", 1)
    x = torch.rand(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    assert int(count) == int(neighbor_pairs(x, 1.0).num_pairs) > 0
    assert "OPENMM_TENSORNET_OPS=reference" in message and "openmm-tensornet build-ops" in message


def test_reference_search_grid_against_a_naive_loop():
    """The oracle itself, checked against the definition: every image within the cutoff, by explicit enumeration."""
    box = torch.tensor(BOXES["skewed"], dtype=torch.float64)
    positions, _ = cloud(40, torch.float64, BOXES["skewed"], seed=30, spread=3.0)
    indices, shifts, count = neighbor_search_reference(positions, CUTOFF, box)
    expected = set()
    delta = positions.unsqueeze(1) - positions.unsqueeze(0)
    for shift in itertools.product(range(-4, 5), repeat=3):
        lengths = (delta - torch.tensor(shift, dtype=torch.float64) @ box).norm(dim=-1)
        if shift == (0, 0, 0):
            lengths.fill_diagonal_(float("inf"))
        expected |= {(i, j, shift) for i, j in torch.nonzero(lengths < CUTOFF).tolist()}
    got = {(i, j, tuple(s)) for (i, j), s in zip(indices.t().tolist(), shifts.tolist())}
    assert got == expected and int(count) == len(expected) > 20


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("box_name", list(BOXES))
@pytest.mark.parametrize("algorithm", ["brute", "cells"])
@pytest.mark.parametrize("max_pairs", [None, "roomy"])
def test_cuda_matches_reference(dtype, box_name, algorithm, max_pairs):
    if not ops_status().cuda:
        pytest.fail("a GPU is visible but the CUDA kernel was not built: " + "; ".join(ops_status().notes))
    box_list = BOXES[box_name]
    box = None if box_list is None else torch.tensor(box_list, dtype=dtype)
    positions, batch = cloud(500, dtype, box_list, seed=17, spread=2.0, molecules=2)
    expected = neighbor_pairs_reference(positions, CUTOFF, box, batch)
    capacity = None if max_pairs is None else int(expected.num_pairs) + 50
    actual = neighbor_pairs(positions.cuda(), CUTOFF, None if box is None else box.cuda(), batch if batch is None else
                            batch.cuda(), max_pairs=capacity, algorithm=algorithm)
    actual = type(actual)(*[t.cpu() for t in actual])
    assert_same_pairs(actual, expected, dtype)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replay_equals_eager():
    box = torch.tensor(BOXES["octahedron"], dtype=torch.float32, device="cuda")
    positions, _ = cloud(300, torch.float32, BOXES["octahedron"], seed=5)
    positions = positions.cuda()
    eager = neighbor_pairs(positions, CUTOFF, box, max_pairs=4000)
    static = positions.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        neighbor_pairs(static, CUTOFF, box, max_pairs=4000, check_inputs=False, check_overflow=False)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = neighbor_pairs(static, CUTOFF, box, max_pairs=4000, check_inputs=False, check_overflow=False)
    static.copy_(positions)
    graph.replay()
    assert int(captured.num_pairs) == int(eager.num_pairs)
    assert torch.equal(captured.indices, eager.indices)
    torch.testing.assert_close(captured.distances, eager.distances)
    static.copy_(positions * 0.97)  # new coordinates, same capacity: the replay follows them
    graph.replay()
    moved = neighbor_pairs(positions * 0.97, CUTOFF, box, max_pairs=4000)
    assert torch.equal(captured.indices, moved.indices)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on this machine")
@pytest.mark.parametrize("source", ["neighbors/neighbors_cuda.cu", "messages/messages_cuda.cu"])
def test_cuda_kernel_compiles(tmp_path, source):
    """Without a GPU the CUDA kernel cannot run, but it must still compile: nvcc -c against torch's headers.

    The machine's nvcc may be a newer CUDA than torch's, so its own runtime headers are used and the CUDA library
    headers torch includes (cuSPARSE, cuBLAS, ...) come from torch's nvidia-* wheels, searched last.
    """
    from torch.utils.cpp_extension import include_paths

    site = Path(torch.__file__).resolve().parents[1] / "nvidia"
    command = ["nvcc", "-std=c++17", "-c", str(ROOT / "plugin" / source), "-o", str(tmp_path / "kernel.o"), "-O3", "--fmad=false", "-Xcompiler", "-fPIC", "-arch=sm_80",
               f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    command += [f"-I{path}" for path in include_paths()]
    for include in sorted(site.glob("*/include")):
        if include.parent.name not in ("cuda_runtime", "cuda_cupti", "cuda_nvrtc"):
            command += ["-Xcompiler", "-idirafter", "-Xcompiler", str(include)]
    result = subprocess.run(command, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 0, "\n".join(errors[:20]) or result.stderr[-3000:]
    assert (tmp_path / "kernel.o").stat().st_size > 10000
