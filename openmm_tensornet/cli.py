"""The ``openmm-tensornet`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _info() -> int:
    import openmm
    import torch

    from . import __version__, ops_status
    from .abi import _installed_version

    print(f"openmm-tensornet {__version__}")
    print(f"torch {torch.__version__}")
    print(f"openmm {openmm.__version__}")
    print(f"openmmtorch {_installed_version('openmmtorch') or 'not installed'}")
    status = ops_status()
    print(f"compiled ops: {'loaded from ' + str(status.library) if status.compiled else 'NOT loaded: ' + status.reason}")
    for note in status.notes:
        print(f"  note: {note}")
    return 0


def _build_ops() -> int:
    """Compile the ops library verbosely (or report the cached one) and say whether it loads."""
    from .ops import build_library, cuda_build_problem

    problem = cuda_build_problem()
    print("CUDA kernel: " + ("will be built" if problem is None else "skipped: " + problem))
    try:
        library = build_library(verbose=True, with_cuda=problem is None)
    except Exception as error:  # noqa: BLE001 - report any build failure with its message
        print(f"build failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"compiled ops: {library}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="openmm-tensornet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the versions of openmm-tensornet and the libraries it runs on")
    commands.add_parser("build-ops", help="compile the neighbour-list ops now (with the full build log)")
    simulate = commands.add_parser("simulate", help="run ML/MM molecular dynamics from a PDB file")
    simulate.add_argument("input", help="PDB file")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "build-ops":
        return _build_ops()
    print(
        "coming in the simulate command: building and running an ML/MM simulation from a PDB file is not "
        "available in this version yet. Today you can evaluate TensorNet models from Python (see README.md).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
