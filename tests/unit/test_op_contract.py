"""Every op's contract, declared once (its C++ ``m.def``) and checked here: the loaded schema, the twin's signature."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from openmm_tensornet.ops import reference
from openmm_tensornet.ops.contract import declared_schemas, plugin_sources, twin_schemas
from openmm_tensornet.ops.library import ops_status, source_dir

ROOT = source_dir()
SCHEMAS = declared_schemas(ROOT)
HELPERS = ("_forward", "_backward", "_weight_grad")  # only the compiled autograd kernels call these


def test_the_declarations_are_found():
    assert len(SCHEMAS) >= 22 and "neighbor_pairs" in SCHEMAS and "tensor_interaction" in SCHEMAS
    assert all(schema.startswith(name + "(") and "->" in schema for name, schema in SCHEMAS.items())
    assert "plugin" not in plugin_sources(ROOT).cpu[0]  # relative paths: the cache key does not depend on the folder


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_op_contract(name):
    schema = torch._C.parse_schema(f"openmm_tensornet::{SCHEMAS[name]}")
    if ops_status().compiled:  # the library loaded serves exactly the declared schema
        assert str(getattr(torch.ops.openmm_tensornet, name).default._schema) == str(schema)
    if name.endswith(HELPERS):
        assert name not in twin_schemas(ROOT)
        return
    twin = getattr(reference, name, None)
    assert twin is not None and twin.__module__ == reference.__name__, f"op {name} has no twin reference.{name}"
    assert list(inspect.signature(twin).parameters) == [a.name for a in schema.arguments]


def test_the_fallback_serves_every_twin():
    """With the fallback forced, each op with a twin runs it (here: a tensor product against the 3x3 matrix product)."""
    code = ("import torch, openmm_tensornet as t; t.load_ops(); s = t.ops_status(); assert not s.compiled, s\n"
            "from openmm_tensornet.ops.contract import twin_schemas\n"
            "from openmm_tensornet.ops.library import source_dir\n"
            "for name, schema in twin_schemas(source_dir()).items():\n"
            "    assert str(getattr(torch.ops.openmm_tensornet, name).default._schema) == "
            "str(torch._C.parse_schema('openmm_tensornet::' + schema)), name\n"
            "from openmm_tensornet.ops.tensors import basis, to_matrix\n"
            "b = basis().reshape(9, 9); x = torch.randn(2, 9, 3, dtype=torch.float64)"
            "; y = torch.randn(2, 9, 3, dtype=torch.float64)\n"
            "got = to_matrix(torch.ops.openmm_tensornet.tensor_product(x, y), b)\n"
            "want = torch.einsum('nijf,njkf->nikf', to_matrix(x, b), to_matrix(y, b))\n"
            "torch.testing.assert_close(got, want); print('OK', len(twin_schemas(source_dir())))\n")
    import os

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENMM_TENSORNET_OPS": "reference"})
    assert done.returncode == 0 and "OK 11" in done.stdout, done.stdout + done.stderr


def _recorded_op_calls(model, z, pos, compute_forces=True):
    """Every openmm_tensornet op the model calls (forward and the autograd kernels' helpers), with its real inputs
    and outputs, for energy + forces."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.namespace == "openmm_tensornet":
                self.calls.append((func, args, kwargs or {}, out))
            return out

    recorder = Recorder()
    with recorder:
        model(z, pos, compute_forces=compute_forces)
    return recorder.calls


def test_every_fake_kernel_matches_its_kernel():
    """torch.compile traces the ops through their fake kernels: on every op call of a model (trainable weights, then
    frozen for inference), the fake kernel's outputs have the real outputs' shapes and dtypes."""
    if not ops_status().compiled:
        pytest.skip("the compiled ops are not loaded: " + ops_status().reason)
    from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensorMode
    from torch.utils._pytree import tree_flatten, tree_map

    from conftest import random_molecule, small_model

    z, pos = random_molecule(12, seed=3)
    model = small_model(seed=1, hidden_channels=16).to(torch.float64)
    calls = _recorded_op_calls(model, z, pos)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.freeze_for_inference(z)
    calls += _recorded_op_calls(model, z, pos)
    model.set_neighbor_capacity(400)  # a padded list: the search's static-shape variant
    with torch.inference_mode():  # no autograd kernels: the top-level ops themselves reach the recorder
        calls += _recorded_op_calls(model, z, pos, compute_forces=False)
    checked = set()
    for func, args, kwargs, out in calls:
        with FakeTensorMode(allow_non_fake_inputs=False) as mode:
            fake = lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t  # noqa: E731
            try:
                fake_out = func(*tree_map(fake, args), **tree_map(fake, kwargs))
            except DynamicOutputShapeException:  # the neighbour search without a capacity: a symbolic size
                continue
        real, _ = tree_flatten(out)
        faked, _ = tree_flatten(fake_out)
        assert len(real) == len(faked), func
        for index, (r, f) in enumerate(zip(real, faked)):
            assert (tuple(r.shape), r.dtype) == (tuple(f.shape), f.dtype), f"{func} output {index}"
        checked.add(func.name().split("::")[1])
    assert checked == set(SCHEMAS), f"ops the model never called here: {sorted(set(SCHEMAS) - checked)}"
