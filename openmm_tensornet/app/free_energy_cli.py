"""Sampling options of the ``free-energy`` subcommand, shared by whatever builds the systems (see ``cli.py``)."""

from __future__ import annotations

import argparse
from typing import Dict, List

import numpy as np

from .free_energy import check_lambdas


def _lambdas(text: str) -> List[float]:
    """``"6"``: six evenly spaced values from 0 to 1; ``"0,0.3,0.7,1"``: those values."""
    text = text.strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 2:
                raise argparse.ArgumentTypeError(f"--lambdas needs at least 2 windows; got {count}.")
            return list(np.linspace(0.0, 1.0, count))
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lambdas takes a count (e.g. 6) or a comma-separated list from 0 to 1 "
                                         f"(e.g. 0,0.25,0.5,0.75,1); got {text!r}.") from None
    try:
        return list(check_lambdas(values))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _methods(text: str) -> List[str]:
    methods = [part.strip() for part in text.split(",") if part.strip()]
    allowed = ("mbar", "ti", "neq")
    wrong = [m for m in methods if m not in allowed]
    if wrong or not methods:
        raise argparse.ArgumentTypeError(f"--methods takes a comma-separated subset of {', '.join(allowed)}; "
                                         f"got {text!r}.")
    return methods


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``free-energy`` subcommand with its sampling options to ``subparsers``; returns the parser so the
    caller can add the system inputs."""
    parser = subparsers.add_parser("free-energy", help="MM -> ML/MM free-energy correction (openmmtools: "
                                                       "replica exchange, MBAR, TI, non-equilibrium switching)")
    group = parser.add_argument_group("sampling")
    group.add_argument("--lambdas", type=_lambdas, default=_lambdas("6"),
                       help="number of evenly spaced lambda windows, or a comma-separated list from 0 to 1 "
                            "(default: 6)")
    group.add_argument("--iterations", type=int, default=500, help="replica-exchange iterations (default: 500)")
    group.add_argument("--steps-per-iteration", type=int, default=250,
                       help="Langevin steps between exchanges (default: 250)")
    group.add_argument("--timestep", type=float, default=1.0, help="timestep in fs (default: 1)")
    group.add_argument("--collision-rate", type=float, default=1.0, help="Langevin friction in 1/ps (default: 1)")
    group.add_argument("--temperature", type=float, default=300.0, help="kelvin (default: 300)")
    group.add_argument("--equilibration-iterations", type=int, default=10,
                       help="iterations run before storing (default: 10)")
    group.add_argument("--methods", type=_methods, default=["mbar", "ti", "neq"],
                       help="comma-separated subset of mbar,ti,neq (default: all)")
    group.add_argument("--neq-switches", type=int, default=20, help="switches each way (default: 20)")
    group.add_argument("--neq-steps", type=int, default=1000, help="steps per switch (default: 1000)")
    group.add_argument("--output", default="free_energy", help="output folder (default: free_energy)")
    group.add_argument("--platform", default="auto", help="OpenMM platform or auto (default: auto)")
    group.add_argument("--seed", type=int, default=None, help="random seed (default: none)")
    group.add_argument("--no-resume", action="store_true",
                       help="start again instead of continuing from the storage in --output")
    return parser


def sampling_options(args: argparse.Namespace) -> Dict[str, object]:
    """Keyword arguments for :func:`openmm_tensornet.app.free_energy.interpolation_free_energy` from parsed ``args``
    (``output`` is the folder of the run; callers with several legs use a subfolder per leg)."""
    for name in ("iterations", "steps_per_iteration", "neq_switches", "neq_steps"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive; got {getattr(args, name)}.")
    return dict(lambdas=list(args.lambdas), iterations=args.iterations, steps_per_iteration=args.steps_per_iteration,
                timestep_fs=args.timestep, collision_rate=args.collision_rate, temperature=args.temperature,
                equilibration_iterations=args.equilibration_iterations, methods=tuple(args.methods),
                neq_switches=args.neq_switches, neq_steps=args.neq_steps, output=args.output, platform=args.platform,
                seed=args.seed, resume=not args.no_resume)
