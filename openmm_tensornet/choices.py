"""Named choices of the model's hyper-parameters, parsed in one place.

Each choice is a ``Literal`` type for type checkers plus a parser that raises a ``ValueError`` naming the
allowed values, so a misspelt option never falls through to a default.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

RBFType = Literal["expnorm", "gauss"]
Activation = Literal["silu", "tanh", "sigmoid", "mish", "ssp"]
EquivarianceGroup = Literal["O(3)", "SO(3)"]
DType = Literal["float32", "float64"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_choice(name: str, value: object, literal: object) -> str:
    """Return ``value`` if it is one of the strings allowed by ``literal``, else raise ``ValueError``."""
    allowed = get_args(literal)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not supported; choose one of {', '.join(repr(a) for a in allowed)}."
        )
    return value


def parse_dtype(value: object) -> torch.dtype:
    """Accept ``torch.float32``/``torch.float64`` or their names; return the torch dtype."""
    if isinstance(value, torch.dtype):
        for dtype in _DTYPES.values():
            if value == dtype:
                return dtype
        raise ValueError(f"dtype={value} is not supported; choose torch.float32 or torch.float64.")
    return _DTYPES[parse_choice("dtype", value, DType)]


def dtype_name(dtype: torch.dtype) -> str:
    """The checkpoint name of a supported torch dtype (``'float32'`` or ``'float64'``)."""
    for name, candidate in _DTYPES.items():
        if candidate == dtype:
            return name
    raise ValueError(f"dtype={dtype} is not supported; choose torch.float32 or torch.float64.")

EnergyUnit = Literal["eV", "kcal/mol", "kJ/mol", "hartree"]
LengthUnit = Literal["angstrom", "nm", "bohr"]
