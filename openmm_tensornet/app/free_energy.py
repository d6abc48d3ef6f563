"""Free energy of switching a system from MM (``lambda_interpolate = 0``) to ML/MM (``lambda_interpolate = 1``).

The system comes from :meth:`TensorNetPotential.createMixedSystem` with ``interpolate=True``, whose energy is linear in
the parameter: ``E(lambda) = E_MM + lambda * dU``. One call samples the lambda windows with openmmtools' replica
exchange and estimates the free energy three ways:

- **MBAR** over all windows (openmmtools' ``MultiStateSamplerAnalyzer``, automatic equilibration detection and
  decorrelation);
- **TI**: ``<dE/dlambda>`` per window from the same replica-exchange samples (``dU`` of a stored configuration is the
  difference of its energies at the end states, exact on this linear path), trapezoid rule, errors from pymbar's
  statistical inefficiency propagated through the trapezoid weights;
- **NEQ**: Langevin switching 0 -> 1 and 1 -> 0 started from the end-state replica-exchange samples, protocol work
  ``sum dlambda * dU(x)``, BAR on forward and reverse work (Jarzynski on the forward work as extra information).

Under ``mpirun -n K`` openmmtools (through mpiplus) spreads the replicas over the ranks, the switches are spread the
same way, and only rank 0 writes files. Analysis and reports: :mod:`.free_energy_analysis`, :mod:`.free_energy_report`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Literal, Mapping, Optional, Sequence, Tuple, Union, get_args

import numpy as np
import openmm
import openmm.unit as unit

from ..choices import parse_choice
from ..openmm.interpolation import PARAMETER
from .free_energy_analysis import Estimate, analyze_storage, work_estimates

Method = Literal["mbar", "ti", "neq"]
DEFAULT_LAMBDAS = tuple(np.linspace(0.0, 1.0, 6))

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegResult:
    """Free energy of one MM -> ML/MM leg; energies in kJ/mol (``Estimate.value_kcal`` for kcal/mol)."""

    name: str
    temperature: float  # kelvin
    lambdas: np.ndarray  # (K,)
    estimates: Dict[str, Estimate]  # "mbar", "ti", "neq" (BAR), "jarzynski" (forward only), as requested
    dEdl_mean: np.ndarray  # (K,) <dE/dlambda>, kJ/mol
    dEdl_sem: np.ndarray  # (K,) standard error, kJ/mol
    overlap: np.ndarray  # (K, K) MBAR overlap matrix
    forward_work: np.ndarray  # (neq_switches,) 0 -> 1 protocol work, kJ/mol
    reverse_work: np.ndarray  # (neq_switches,) 1 -> 0 protocol work, kJ/mol
    iterations: int  # replica-exchange iterations in the storage
    equilibration_iterations: int  # discarded by the automatic equilibration detection
    samples: int  # decorrelated samples used by MBAR
    storage: Path  # the NetCDF file
    output: Path  # the folder with free_energy.md and the plots

    def __getitem__(self, method: str) -> Estimate:
        if method not in self.estimates:
            raise KeyError(f"no {method!r} estimate in this result; it has {sorted(self.estimates)}.")
        return self.estimates[method]


def mpi_rank() -> int:
    """This process's MPI rank as mpiplus sees it (0 without MPI)."""
    import mpiplus

    comm = mpiplus.get_mpicomm()
    return 0 if comm is None else comm.rank


def check_lambdas(lambdas: Sequence[float]) -> np.ndarray:
    """Validated lambda schedule: at least 2 values, strictly increasing, from exactly 0 to exactly 1."""
    values = np.asarray([float(x) for x in lambdas], dtype=float)
    shown = [float(x) for x in values]
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"lambdas needs at least two values from 0 to 1; got {shown}.")
    if values[0] != 0.0 or values[-1] != 1.0:
        raise ValueError(f"lambdas must start at 0 (MM) and end at 1 (ML/MM); got {shown}. "
                         "Use e.g. numpy.linspace(0, 1, 6).")
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"lambdas must be strictly increasing; got {shown}.")
    return values


def _check_system(system: openmm.System, positions) -> None:
    names = {force.getGlobalParameterName(k) for force in system.getForces()
             if hasattr(force, "getNumGlobalParameters") for k in range(force.getNumGlobalParameters())}
    if PARAMETER not in names:
        raise ValueError(f"the system has no global parameter {PARAMETER!r}, so there is nothing to switch. Build it "
                         "with TensorNetPotential().createMixedSystem(topology, mm_system, atoms, interpolate=True).")
    if len(positions) != system.getNumParticles():
        raise ValueError(f"positions has {len(positions)} atoms but the system has {system.getNumParticles()}.")


def _check_linear(context: openmm.Context) -> None:
    """TI from end-state energies and the NEQ work both rely on E being linear in lambda_interpolate."""
    energies = []
    for value in (0.0, 0.5, 1.0):
        context.setParameter(PARAMETER, value)
        state = context.getState(getEnergy=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    scale = 1e-5 * abs(energies[2] - energies[0]) + 1e-2
    if abs(energies[1] - 0.5 * (energies[0] + energies[2])) > scale:
        raise ValueError(f"the energy is not linear in {PARAMETER} (E(0), E(0.5), E(1) = {energies} kJ/mol); build "
                         "the system with createMixedSystem(..., interpolate=True) and no other use of the parameter.")


def _as_kelvin(temperature) -> float:
    if unit.is_quantity(temperature):
        return float(temperature.value_in_unit(unit.kelvin))
    return float(temperature)


def _parse_methods(methods: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(methods, str):
        methods = [methods]
    parsed = tuple(parse_choice("methods", m, Method) for m in methods)
    if not parsed:
        raise ValueError(f"methods is empty; choose from {list(get_args(Method))}.")
    return parsed


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value is None or value <= 0:
            raise ValueError(f"{name} must be positive; got {value!r}.")


def interpolation_free_energy(
    system: openmm.System,
    positions,
    *,
    output: Union[str, Path],
    name: str = "leg",
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    temperature: float = 300.0,
    methods: Sequence[str] = ("mbar", "ti", "neq"),
    iterations: int = 500,
    steps_per_iteration: int = 250,
    timestep_fs: float = 1.0,
    collision_rate: float = 1.0,
    equilibration_iterations: int = 10,
    neq_switches: int = 20,
    neq_steps: int = 1000,
    checkpoint_interval: int = 1,
    platform: str = "auto",
    seed: Optional[int] = None,
    resume: bool = True,
    write_report: bool = True,
) -> LegResult:
    """Free energy of switching ``system`` from MM (``lambda_interpolate = 0``) to ML/MM (1), in kJ/mol.

    Parameters
    ----------
    system
        An OpenMM System with the global parameter ``lambda_interpolate`` (from
        ``TensorNetPotential().createMixedSystem(..., interpolate=True)``).
    positions
        Starting positions (nm), ``(N, 3)`` array or ``Quantity``; minimised at lambda = 0 before sampling.
    output
        Folder for ``<name>.nc`` (openmmtools storage, plus ``<name>_checkpoint.nc``), ``free_energy.md``,
        ``dEdl.png``, ``work.png`` and ``overlap.png``. Created if missing.
    name
        Name of the leg (file names and reports).
    lambdas
        Strictly increasing ``lambda_interpolate`` windows from 0 to 1; the MBAR overlap matrix in the report shows
        whether neighbours overlap (off-diagonal entries of a few percent or more).
    temperature
        Kelvin (or a ``Quantity``).
    methods
        Any of ``"mbar"``, ``"ti"``, ``"neq"``. Replica exchange always runs (NEQ starts from its end-state samples).
    iterations
        Replica-exchange iterations in total (a resumed run only adds the missing ones).
    steps_per_iteration, timestep_fs, collision_rate
        Langevin dynamics between exchanges (openmmtools ``LangevinDynamicsMove``, BAOAB); fs and 1/ps.
    equilibration_iterations
        Iterations run before storing any (a fresh run only); openmmtools' analyzer additionally detects and discards
        equilibration from the stored ones.
    neq_switches, neq_steps
        Number of switches in each direction and Langevin steps per switch (``lambda`` changes by ``1/neq_steps``
        before each step).
    checkpoint_interval
        Iterations between stored positions: resuming restarts from the last one, and the NEQ switches start from
        stored end-state configurations.
    platform
        OpenMM platform name or ``"auto"`` (:func:`openmm_tensornet.openmm.platforms.choose_platform`).
    seed
        Seeds numpy's and numba's global generators (openmmtools' replica mixing) and every Langevin integrator (replica
        exchange and switches). A second run then repeats the first exactly on a deterministic platform (Reference,
        or CPU with one thread: with several, OpenMM's CPU threads sum forces in a varying order, and MD's chaos
        turns round-off into a different sample). A resumed run continues with seeds derived from ``seed`` and the
        iteration it resumes at, so it is reproducible too but not equal to an uninterrupted run.
    resume
        Continue from an existing ``<name>.nc`` (``ReplicaExchangeSampler.from_storage``) when its lambdas match;
        ``False`` deletes it and starts again.
    write_report
        Write ``free_energy.md`` and the plots (rank 0).

    Returns
    -------
    LegResult
        The same on every MPI rank.

    Examples
    --------
    >>> mixed = TensorNetPotential().createMixedSystem(topology, mm_system, atoms, interpolate=True)
    >>> leg = interpolation_free_energy(mixed, positions, output="solvent", name="solvent")  # doctest: +SKIP
    >>> leg["mbar"].value, leg["mbar"].sigma  # kJ/mol  # doctest: +SKIP
    """
    import mpiplus

    from .free_energy_sampling import neq_switching, replica_exchange, seed_replica_mixing

    methods = _parse_methods(methods)
    lambdas = check_lambdas(lambdas)
    _check_system(system, positions)
    _check_positive(iterations=iterations, steps_per_iteration=steps_per_iteration, timestep_fs=timestep_fs,
                    collision_rate=collision_rate, checkpoint_interval=checkpoint_interval)
    if "neq" in methods:
        _check_positive(neq_switches=neq_switches, neq_steps=neq_steps)
    if equilibration_iterations < 0:
        raise ValueError(f"equilibration_iterations must be >= 0; got {equilibration_iterations}.")
    kelvin = _as_kelvin(temperature)
    _check_positive(temperature=kelvin)
    if seed is not None:
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32); got {seed}.")
        seed_replica_mixing(seed)
    output = Path(output)
    if mpi_rank() == 0:
        output.mkdir(parents=True, exist_ok=True)
    storage = output / f"{name}.nc"

    from ..openmm.platforms import choose_platform

    choice = choose_platform(platform)
    platform_object = openmm.Platform.getPlatformByName(choice.name)
    probe = openmm.Context(system, openmm.VerletIntegrator(0.001), platform_object, choice.properties)
    probe.setPositions(positions)
    _check_linear(probe)
    # openmmtools' own minimize() re-copies the System (model included) per replica; one local minimisation at
    # lambda = 0 here is enough for a start that the equilibration iterations then relax in every window.
    probe.setParameter(PARAMETER, 0.0)
    openmm.LocalEnergyMinimizer.minimize(probe, 10.0, 500)
    positions = probe.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    del probe

    replica_exchange(system, positions, storage, lambdas=lambdas, temperature=kelvin, iterations=iterations,
                     steps_per_iteration=steps_per_iteration, timestep_fs=timestep_fs,
                     collision_rate=collision_rate, equilibration_iterations=equilibration_iterations,
                     checkpoint_interval=checkpoint_interval, platform=platform_object,
                     properties=choice.properties, resume=resume, seed=seed)
    analysis = mpiplus.run_single_node(0, analyze_storage, storage, broadcast_result=True)

    forward = reverse = np.zeros(0)
    estimates: Dict[str, Estimate] = {}
    if "mbar" in methods:
        estimates["mbar"] = analysis.mbar
    if "ti" in methods:
        estimates["ti"] = analysis.ti
    if "neq" in methods:
        forward, reverse = neq_switching(system, storage, analysis, switches=neq_switches, steps=neq_steps,
                                         timestep_fs=timestep_fs, collision_rate=collision_rate,
                                         platform=platform_object, properties=choice.properties, seed=seed)
        bar, jarzynski = work_estimates(forward, reverse, kelvin)
        estimates["neq"] = bar
        estimates["jarzynski"] = jarzynski
    result = LegResult(name, kelvin, analysis.lambdas, estimates, analysis.dEdl_mean, analysis.dEdl_sem,
                       analysis.overlap, forward, reverse, analysis.iterations, analysis.equilibration_iterations,
                       analysis.samples, storage, output)
    if write_report:
        from .free_energy_report import write_leg_report

        mpiplus.run_single_node(0, write_leg_report, result, broadcast_result=False)
    return result


def cycle_report(legs: Mapping[str, LegResult], output: Union[str, Path],
                 difference: Union[Tuple[str, str], Sequence[Tuple[str, str]], None] = None
                 ) -> Dict[str, Dict[str, Estimate]]:
    """Write ``cycle.md``: each leg's Delta G per method and ``legs[a] - legs[b]`` for ``difference = (a, b)``.

    Parameters
    ----------
    legs
        Leg name -> :class:`LegResult` (e.g. ``{"complex": ..., "solvent": ...}``).
    output
        Folder for ``cycle.md``.
    difference
        ``(a, b)``: report ``a - b`` per method present in both (binding correction = ``("complex", "solvent")``,
        hydration correction = ``("solvent", "vacuum")``), sigma = sqrt(sigma_a^2 + sigma_b^2) (independent runs);
        or a list of such pairs.
        ``None``: the two legs when there are exactly two, in the given order.

    Returns
    -------
    dict
        ``{leg or "a - b": {method: Estimate}}`` in kJ/mol.
    """
    from .free_energy_report import write_cycle_report

    return write_cycle_report(legs, Path(output), difference)
