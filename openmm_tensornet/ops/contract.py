"""Each op is declared once: its schema in its C++ source, its twin by name in ``reference.py``.

The library needs the schemas in C++ (OpenMM's C++ ``TorchForce`` loads it with no Python), so the ``m.def("...")``
strings of ``plugin/*/*.cpp`` are the declaration; the fallback registration, the build's source lists and the tests
read them from there instead of keeping copies. The twin of op ``X`` is ``openmm_tensornet.ops.reference.X``; ops
without one (``*_forward``, ``*_backward``, ``tensor_messages_weight_grad``) only serve the compiled autograd kernels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

NAMESPACE = "openmm_tensornet"
_DEFINITION = re.compile(r'm\.def\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)')
_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Sources(NamedTuple):
    """Paths relative to the plugin folder, sorted: what is compiled (and hashed into the cache key)."""

    cpu: Tuple[str, ...]  # *.cpp
    cuda: Tuple[str, ...]  # *.cu
    headers: Tuple[str, ...]  # *.h


def plugin_sources(root: Path) -> Sources:
    def found(pattern: str) -> Tuple[str, ...]:
        return tuple(sorted(str(p.relative_to(root)) for p in root.glob(f"*/{pattern}")))

    return Sources(found("*.cpp"), found("*.cu"), found("*.h"))


def declared_schemas(root: Path) -> Dict[str, str]:
    """``{op name: schema}`` from every ``m.def("...")`` of the C++ sources (adjacent literals joined)."""
    schemas: Dict[str, str] = {}
    for name in plugin_sources(root).cpu:
        for found in _DEFINITION.finditer((root / name).read_text()):
            schema = "".join(_LITERAL.findall(found.group(1)))
            op = schema.split("(", 1)[0].strip()
            if op in schemas:
                raise RuntimeError(f"op {op} is declared twice in the plugin sources (again in {name}).")
            schemas[op] = schema
    return schemas


def argument_names(schema: str) -> List[str]:
    """The argument names of an op schema such as ``"op(Tensor a, Tensor? b, int c=-1) -> Tensor"`` (torch's parser)."""
    import torch

    return [argument.name for argument in torch._C.parse_schema(f"{NAMESPACE}::{schema}").arguments]


def twin_schemas(root: Path) -> Dict[str, str]:
    """The declared ops that have a pure-torch twin in ``reference.py`` (they get it as their fallback)."""
    from . import reference

    return {op: schema for op, schema in declared_schemas(root).items()
            if getattr(getattr(reference, op, None), "__module__", None) == reference.__name__}
