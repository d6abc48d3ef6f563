"""The ``openmm-tensornet`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _info() -> int:
    import openmm
    import torch

    from . import __version__
    from .abi import _installed_version

    print(f"openmm-tensornet {__version__}")
    print(f"torch {torch.__version__}")
    print(f"openmm {openmm.__version__}")
    print(f"openmmtorch {_installed_version('openmmtorch') or 'not installed'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="openmm-tensornet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the versions of openmm-tensornet and the libraries it runs on")
    simulate = commands.add_parser("simulate", help="run ML/MM molecular dynamics from a PDB file")
    simulate.add_argument("input", help="PDB file")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    print(
        "coming in the simulate command: building and running an ML/MM simulation from a PDB file is not "
        "available in this version yet. Today you can evaluate TensorNet models from Python (see README.md).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
