"""The ``openmm-tensornet`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _info() -> int:
    import openmm
    import torch

    from .. import __version__
    from ..ops.abi import _installed_version
    from ..ops.library import load_ops

    print(f"openmm-tensornet {__version__}")
    print(f"torch {torch.__version__}")
    print(f"openmm {openmm.__version__}")
    print(f"openmmtorch {_installed_version('openmmtorch') or 'not installed'}")
    status = load_ops()
    loaded = f"loaded from {status.library}" if status.compiled else f"NOT loaded: {status.reason}"
    print(f"compiled ops: {loaded}")
    for note in status.notes:
        print(f"  note: {note}")
    return 0


def _build_ops() -> int:
    """Compile the ops library verbosely (or report the cached one) and say whether it loads."""
    from ..ops.library import build_library, cuda_build_problem

    problem = cuda_build_problem()
    print("CUDA kernel: " + ("will be built" if problem is None else "skipped: " + problem))
    try:
        library = build_library(verbose=True, with_cuda=problem is None)
    except Exception as error:  # noqa: BLE001 - report any build failure with its message
        print(f"build failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"compiled ops: {library}")
    return 0


def _is_user_error(error: BaseException) -> bool:
    """Errors a command reports as ``error: <message>`` (exit 1) instead of a traceback: bad input (ValueError,
    including DataError), missing files or packages, and SimulationError (only raised once its module is loaded).

    An ImportError counts when a package the user must install is missing, or when the package raised it with a
    message on purpose (no ``name``: the ABI check, optional dependencies); a failed import of one of our own
    modules is a bug and keeps its traceback."""
    if isinstance(error, ImportError):
        return error.name is None or error.name.split(".")[0] != __package__.split(".")[0]
    if isinstance(error, (ValueError, FileNotFoundError)):
        return True
    simulate = sys.modules.get(f"{__package__}.simulate")
    return simulate is not None and isinstance(error, simulate.SimulationError)


def _generate(args) -> int:
    from ..training.datagen import generate_data

    paths = generate_data(args.inputs, args.output, frames=args.frames, stride=args.stride,
                          perturbations=args.perturbations, temperature=args.temperature,
                          displacement=args.displacement, workers=args.workers, seed=args.seed, charge=args.charge,
                          distortions=args.distortions, dimers=args.dimers, dimer_max_atoms=args.dimer_max_atoms,
                          transfers=args.transfers, contacts=args.contacts)
    print(f"{len(paths)} molecules in {args.output}")
    return 0


def _train(args) -> int:
    from ..training.trainer import TrainingConfig, train

    config = TrainingConfig.from_yaml(args.config)
    if args.no_resume:
        config.resume = False
    result = train(config)
    print(f"model: {result.output / 'model.pt'} ({result.epochs_run} epochs, stopped by {result.stopped}); "
          f"report: {result.output / 'metrics.md'}")
    return 0


def _ligand_arguments(parser) -> None:
    parser.add_argument("--ligand", nargs="+", default=None, metavar="FILE",
                        help="SDF or MOL2 file(s) with the docked ligand pose (hydrogens and bond orders included); "
                             "the ligand is the ML region, its formal charge the region's charge")
    parser.add_argument("--ligand-index", type=int, default=None,
                        help="use only this record (0-based) of a multi-record ligand file")
    parser.add_argument("--ligand-charges", default="am1bcc", choices=["am1bcc", "xtb"],
                        help="ligand MM parameters: am1bcc (AM1-BCC + GAFF2 from AmberTools, cached; default) or xtb "
                             "(GFN2-xTB charges and generic Lennard-Jones, nonbonded only)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="openmm-tensornet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the versions of openmm-tensornet and the libraries it runs on")
    commands.add_parser("build-ops", help="compile the neighbour-list ops now (with the full build log)")
    commands.add_parser("doctor", help="check the installation end to end and print the fix for each problem")
    simulate = commands.add_parser("simulate", help="run ML/MM molecular dynamics from a PDB file")
    simulate.add_argument("input", nargs="?", default=None,
                          help="PDB file (with hydrogens, or use --fix), or an Amber prmtop; may be left out with "
                               "--ligand (the ligand alone)")
    _ligand_arguments(simulate)
    simulate.add_argument("--ml", default=None, help="mdtraj selection of the ML region (default: the residues the "
                          "force field cannot template; else the solute; else everything)")
    simulate.add_argument("--model", default=None, help="model file (ours or a torchmd-net .ckpt; default: shipped)")
    simulate.add_argument("--forcefield", nargs="+", default=["amber14-all.xml", "amber14/tip3pfb.xml"])
    simulate.add_argument("--ligand-forcefield", nargs="*", default=None, help="ffxml file(s) for the ligand")
    simulate.add_argument("--fix", action="store_true", help="add missing atoms and hydrogens with pdbfixer")
    simulate.add_argument("--solvate", action="store_true", help="add a water box with ions")
    simulate.add_argument("--padding", type=float, default=1.0,
                          help="solvent padding, nm (1.0), as OpenMM's Modeller.addSolvent: the solute "
                               "stays at least this far from its periodic images (about half of it from the box "
                               "edge)")
    simulate.add_argument("--ionic-strength", type=float, default=0.15, help="molar (0.15)")
    simulate.add_argument("--ml-charge", type=int, default=None, help="total charge of the ML region (default: "
                          "from the MM charges, or 0 for a ligand without parameters)")
    simulate.add_argument("--steps", type=int, default=10000, help="total MD steps (10000)")
    simulate.add_argument("--timestep", type=float, default=1.0, help="fs (1.0; no constraints in the ML region)")
    simulate.add_argument("--temperature", type=float, default=300.0, help="K (300)")
    simulate.add_argument("--pressure", type=float, default=None, help="bar: NPT with a Monte Carlo barostat")
    simulate.add_argument("--platform", default="auto",
                          help="OpenMM platform: auto (the fastest that runs the TorchForce: CUDA > OpenCL > CPU), "
                               "CUDA, OpenCL, CPU or Reference")
    simulate.add_argument("--precision", default=None, choices=["single", "mixed", "double"],
                          help="CUDA/OpenCL precision (default mixed there)")
    simulate.add_argument("--output", default=None, help="output directory (default: INPUT-stem_md)")
    simulate.add_argument("--report-interval", type=int, default=100, help="steps between frames/log lines (100)")
    simulate.add_argument("--checkpoint-interval", type=int, default=1000, help="steps between checkpoints (1000)")
    simulate.add_argument("--restart", action="store_true", help="continue the run in --output from its checkpoint")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--inpcrd", default=None, help="coordinates for an Amber .prmtop INPUT (whole system)")
    simulate.add_argument("--xtc", action="store_true", help="write trajectory.xtc instead of trajectory.dcd")
    generate = commands.add_parser(
        "generate-data", help="sample molecules and label them with GFN2-xTB (tblite) into a data set directory")
    generate.add_argument("inputs", nargs="+", help="PDB, SDF/MOL, XYZ or SMILES (.smi) files")
    generate.add_argument("-o", "--output", required=True, help="data set directory (one .npz shard per molecule)")
    generate.add_argument("--frames", type=int, default=20, help="MD frames kept per molecule (default 20)")
    generate.add_argument("--stride", type=int, default=10, help="MD steps (0.5 fs) between kept frames (10)")
    generate.add_argument("--perturbations", type=int, default=4, help="displaced copies per frame (4)")
    generate.add_argument("--temperature", type=float, nargs="+", default=[500.0],
                          help="MD temperature(s) in K, one run of --frames frames each, in order (500)")
    generate.add_argument("--displacement", type=float, default=0.05, help="displacement of the copies, Å (0.05)")
    generate.add_argument("--distortions", type=int, default=0,
                          help="per molecule, frames with one bond stretched (1.2-1.8x) or compressed (0.75-0.9x) (0)")
    generate.add_argument("--transfers", type=int, default=0,
                          help="per molecule, frames with a hydrogen moved towards another heavy atom within 3.2 Å, "
                               "to 1.0-1.8 Å from it (partway to a proton transfer) (0)")
    generate.add_argument("--contacts", type=int, default=0,
                          help="per molecule, pulls: 100 fs of GFN2-xTB MD at 300 K with a spring drawing a hydrogen's "
                               "atom and a heavy atom 3+ bonds away to 2.1-2.6 Å, 10 frames each + the hydrogen "
                               "moved over (0)")
    generate.add_argument("--dimers", type=int, default=0,
                          help="add this many non-covalent pairs: molecule + water and molecule + molecule (0)")
    generate.add_argument("--dimer-max-atoms", type=int, default=30, help="largest molecule used in a dimer (30)")
    generate.add_argument("--charge", type=int, default=None, help="total charge (default: from the input)")
    generate.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    generate.add_argument("--seed", type=int, default=0)
    from .free_energy_cli import add_parser as add_free_energy

    free_energy = add_free_energy(commands)
    free_energy.add_argument("--ligand", required=True, help="SDF or MOL2 file of the ligand (hydrogens included)")
    free_energy.add_argument("--ligand-index", type=int, default=None, help="record of a multi-record file")
    free_energy.add_argument("--protein", default=None, help="receptor PDB (for the complex leg)")
    free_energy.add_argument("--legs", default=None,
                             help="comma-separated legs: vacuum, solvent, complex (default: solvent,complex with "
                                  "--protein, else vacuum,solvent)")
    free_energy.add_argument("--model", default=None, help="model file (default: shipped)")
    free_energy.add_argument("--padding", type=float, default=1.0,
                             help="solvent padding, nm (1.0), as OpenMM's Modeller.addSolvent: the solute "
                                  "stays at least this far from its periodic images (about half of it from the box "
                                  "edge)")
    free_energy.add_argument("--fix", action="store_true", help="add missing atoms and hydrogens to the receptor "
                             "with pdbfixer")
    free_energy.add_argument("--complex-vacuum", action="store_true",
                             help="run the complex leg without solvent (a quick check, not a binding correction)")
    train = commands.add_parser("train", help="train a TensorNet model from a YAML configuration")
    train.add_argument("config", help="YAML file with the keys of openmm_tensornet.training.trainer.TrainingConfig")
    train.add_argument("--no-resume", action="store_true", help="start afresh even if OUTPUT/last.ckpt exists")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "build-ops":
        return _build_ops()
    if args.command == "doctor":
        from .doctor import doctor

        return 1 if doctor() else 0
    handler = {"generate-data": _generate, "train": _train, "free-energy": _free_energy}.get(args.command, _simulate)
    try:
        return handler(args)
    except Exception as error:  # noqa: BLE001 - re-raised below unless it is bad input
        if not _is_user_error(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1


def _free_energy(args) -> int:
    from ..openmm.potential import TensorNetPotential
    from .free_energy_cli import sampling_options
    from .free_energy_legs import ligand_legs

    legs = args.legs.split(",") if args.legs else (["solvent", "complex"] if args.protein else ["vacuum", "solvent"])
    result = ligand_legs(args.ligand, args.protein, [leg.strip() for leg in legs], ligand_index=args.ligand_index,
                         potential=TensorNetPotential(args.model), padding=args.padding,
                         complex_solvent=not args.complex_vacuum, fix=args.fix, **sampling_options(args))
    for name, estimates in result["cycle"].items():
        shown = ", ".join(f"{method} {e.value:.2f} ± {e.sigma:.2f}" for method, e in estimates.items())
        print(f"{name}: {shown} kJ/mol")
    if result["cycle"]:
        print(f"report: {args.output}/cycle.md")
    return 0


def _simulate(args) -> int:
    from pathlib import Path

    from .simulate import build_simulation, restart_simulation, run

    if args.input is None and not args.ligand:
        print("error: give an input structure (PDB or prmtop), --ligand FILE, or both.", file=sys.stderr)
        return 2
    output = Path(args.output or (Path(args.input or args.ligand[0]).stem + "_md"))
    if args.restart:
        simulation = restart_simulation(output, args.platform, args.precision)
        print(f"restarting from step {simulation.currentStep} in {output}")
    else:
        from ..openmm.potential import TensorNetPotential

        simulation = build_simulation(
            args.input, output, temperature=args.temperature, timestep_fs=args.timestep,
            pressure=args.pressure, platform=args.platform, precision=args.precision, seed=args.seed,
            ml=args.ml, forcefield=args.forcefield, ligand_forcefield=args.ligand_forcefield, fix=args.fix,
            solvate=args.solvate, padding=args.padding, ionic_strength=args.ionic_strength,
            ml_charge=args.ml_charge, potential=TensorNetPotential(args.model), inpcrd=args.inpcrd,
            ligand=args.ligand, ligand_index=args.ligand_index, ligand_charges=args.ligand_charges)
        setup = simulation.setup
        print(f"{setup.topology.getNumAtoms()} atoms, ML region {len(setup.ml_atoms)} atoms (charge "
              f"{setup.ml_charge:+d}){', pure ML' if setup.pure_ml else ''}")
        for note in setup.notes:
            print(f"note: {note}")
    summary = run(simulation, args.steps, output, args.report_interval, args.checkpoint_interval,
                  trajectory="xtc" if args.xtc else "dcd")
    print(f"{summary['steps']} steps, {summary['ns_per_day']:.2f} ns/day; outputs in {output}/ (summary.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
