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


def _generate(args) -> int:
    from .data import DataError
    from .datagen import generate_data

    try:
        paths = generate_data(args.inputs, args.output, frames=args.frames, stride=args.stride,
                              perturbations=args.perturbations, temperature=args.temperature,
                              displacement=args.displacement, workers=args.workers, seed=args.seed, charge=args.charge)
    except (DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(paths)} molecules in {args.output}")
    return 0


def _train(args) -> int:
    from .data import DataError
    from .training import TrainingConfig, train

    try:
        config = TrainingConfig.from_yaml(args.config)
        if args.no_resume:
            config.resume = False
        result = train(config)
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"model: {result.output / 'model.pt'} ({result.epochs_run} epochs, stopped by {result.stopped}); "
          f"report: {result.output / 'metrics.md'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="openmm-tensornet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the versions of openmm-tensornet and the libraries it runs on")
    commands.add_parser("build-ops", help="compile the neighbour-list ops now (with the full build log)")
    commands.add_parser("doctor", help="check the installation end to end and print the fix for each problem")
    simulate = commands.add_parser("simulate", help="run ML/MM molecular dynamics from a PDB file")
    simulate.add_argument("input", help="PDB file")
    generate = commands.add_parser(
        "generate-data", help="sample molecules and label them with GFN2-xTB (tblite) into a data set directory")
    generate.add_argument("inputs", nargs="+", help="PDB, SDF/MOL, XYZ or SMILES (.smi) files")
    generate.add_argument("-o", "--output", required=True, help="data set directory (one .npz shard per molecule)")
    generate.add_argument("--frames", type=int, default=20, help="MD frames kept per molecule (default 20)")
    generate.add_argument("--stride", type=int, default=10, help="MD steps (0.5 fs) between kept frames (10)")
    generate.add_argument("--perturbations", type=int, default=4, help="displaced copies per frame (4)")
    generate.add_argument("--temperature", type=float, default=500.0, help="MD temperature in K (500)")
    generate.add_argument("--displacement", type=float, default=0.05, help="displacement of the copies, Å (0.05)")
    generate.add_argument("--charge", type=int, default=None, help="total charge (default: from the input)")
    generate.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    generate.add_argument("--seed", type=int, default=0)
    train = commands.add_parser("train", help="train a TensorNet model from a YAML configuration")
    train.add_argument("config", help="YAML file with the keys of openmm_tensornet.training.TrainingConfig")
    train.add_argument("--no-resume", action="store_true", help="start afresh even if OUTPUT/last.ckpt exists")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "build-ops":
        return _build_ops()
    if args.command == "doctor":
        from .doctor import doctor

        return 1 if doctor() else 0
    if args.command == "generate-data":
        return _generate(args)
    if args.command == "train":
        return _train(args)
    print(
        "coming in the simulate command: building and running an ML/MM simulation from a PDB file is not "
        "available in this version yet. Today you can evaluate TensorNet models from Python (see README.md).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
