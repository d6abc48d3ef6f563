"""The second OpenMM backend: ``openmm.PythonForce`` running the same module as the TorchForce, optionally compiled.

For when TorchScript is not wanted (or openmm-torch is not installed): the module that :func:`export_torchscript`
scripts (:class:`openmm_tensornet.openmm.export.TorchForceModule`, the same selection, units, region handling and checks)
runs eagerly in Python, or through ``torch.compile`` (``compile=True``). The force is pickled into the System XML
with the model's weights, so systems can be serialised and copied.

Compared with the TorchForce path it lacks what only C++ can give: energy-parameter derivatives (dE/dlambda is not
available; ``lambda_interpolate`` still scales the energy), CUDA graphs, and a MD loop without Python. Speeds of both
paths are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from ..nn.model import TensorNet
from .export import TorchForceModule, force_module
from .force_spec import ForceSpec


class TensorNetComputation:
    """``state -> (energy kJ/mol, forces kJ/mol/nm [N, 3])`` for ``openmm.PythonForce``; picklable."""

    def __init__(self, module: TorchForceModule, uses_box: bool, parameter: Optional[str], compile: bool):
        self.module = module
        self.uses_box = uses_box
        self.parameter = parameter
        self.compile = compile
        self._function = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_function"] = None  # a compiled function is rebuilt on first use, not pickled
        return state

    def _callable(self):
        if self._function is None:
            if self.compile:
                # Inductor's on-disk cache does not key on the implementations of custom ops: keep one cache per
                # build of our ops (compiled or pure-torch), so a stale compiled graph is never reused.
                os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", _inductor_cache_dir())
                self._function = torch.compile(self.module, dynamic=False)
            else:
                self._function = self.module
        return self._function

    def __call__(self, state):
        import openmm.unit as unit

        device = self.device()
        positions = torch.from_numpy(
            np.ascontiguousarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        ).to(device).requires_grad_(True)
        arguments = [positions]
        if self.uses_box:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            arguments.append(torch.from_numpy(np.ascontiguousarray(box, dtype=np.float64)).to(device))
        if self.parameter is not None:
            arguments.append(torch.tensor(state.getParameters()[self.parameter], dtype=torch.float64, device=device))
        energy = self._callable()(*arguments)
        (gradient,) = torch.autograd.grad(energy, positions)
        return float(energy.detach()), -gradient.cpu().numpy()

    def device(self) -> torch.device:
        """Where the model is (``model.to("cuda")`` before creating the force runs it on the GPU)."""
        for buffer in self.module.buffers():
            return buffer.device
        return torch.device("cpu")


def _inductor_cache_dir() -> str:
    from ..ops.library import cache_root, ops_status

    library = ops_status().library
    return str(cache_root() / "inductor" / (library.parent.name if library is not None else "pure-torch-ops"))


def create_python_force(model: TensorNet, atomic_numbers: Sequence[int], atoms: Optional[Sequence[int]] = None,
                        total_charge: float = 0.0, compile: bool = False, **options):
    """An ``openmm.PythonForce`` evaluating ``model`` on the ML atoms; the other keyword arguments (``periodic``,
    ``uses_box``, ``force_group``, ``num_particles``, ``neighbor_capacity``, ``box_vectors``, ``global_parameter``,
    ``bonds``)
    as :func:`openmm_tensornet.create_torch_force` (:class:`openmm_tensornet.openmm.force_spec.ForceSpec`).

    ``compile=True`` runs the module through ``torch.compile`` (compiled on the first evaluation, which takes
    about half a minute), with static shapes: a neighbour capacity sized from the density as for CUDA graphs
    (``box_vectors``, in nm, give the density of a periodic ML system; ``neighbor_capacity`` overrides it).
    ``False`` runs the module eagerly. It runs where ``model`` is: move the model to a GPU (``model.to("cuda")``
    or ``load_model(path, device="cuda")``) to evaluate it there; positions and forces are copied each step.
    """
    return python_force(model, ForceSpec.of(atomic_numbers, atoms, total_charge, **options), compile)


def python_force(model: TensorNet, spec: ForceSpec, compile: bool = False):
    """The ``openmm.PythonForce`` of ``spec`` (see :func:`create_python_force`)."""
    import openmm

    # compile=True: static shapes (a padded neighbour list), so torch.compile compiles once, not every step.
    module = force_module(model, spec, compile, "compile=True")
    computation = TensorNetComputation(module, spec.box_input, spec.global_parameter, compile)
    parameters = {} if spec.global_parameter is None else {spec.global_parameter: 1.0}
    force = openmm.PythonForce(computation, parameters)
    force.setUsesPeriodicBoundaryConditions(spec.box_input)
    force.setForceGroup(spec.force_group)
    force.setName("TensorNet (PythonForce" + (", torch.compile)" if compile else ")"))
    return force
