"""Sampling for :func:`openmm_tensornet.app.free_energy.interpolation_free_energy`: openmmtools replica exchange over
``lambda_interpolate`` windows (fresh or resumed from its NetCDF storage) and non-equilibrium switching between the
end states. MPI through openmmtools' mpiplus: replicas and switches are spread over the ranks, rank 0 writes."""

from __future__ import annotations

import copy
import functools
import logging
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import openmm
import openmm.unit as unit

try:
    import mpiplus
    from openmmtools import cache, mcmc, states
    from openmmtools.multistate import MultiStateReporter, ReplicaExchangeSampler
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("free-energy calculations need openmmtools and pymbar: "
                      "conda install -c conda-forge openmmtools pymbar (or pip install openmmtools pymbar)") from error

from ..openmm.interpolation import PARAMETER

logger = logging.getLogger(__name__)


class InterpolationState(states.GlobalParameterState):
    """openmmtools composable state for ``lambda_interpolate`` (0 = MM, 1 = ML/MM)."""

    lambda_interpolate = states.GlobalParameterState.GlobalParameter(PARAMETER, standard_value=1.0)

    @lambda_interpolate.validator
    def lambda_interpolate(self, instance, new_value):
        if new_value is not None and not 0.0 <= new_value <= 1.0:
            raise ValueError(f"{PARAMETER} must be within [0, 1]; got {new_value}.")
        return new_value

    # openmmtools finds the parameter through force.getNumGlobalParameters(), but a TorchForce comes back from
    # System.getForce as a plain openmm.Force without that API, so its default would stay at 1 while the other
    # forces get the state's value, and Context creation fails ("Two Forces define different default values").
    def apply_to_system(self, system):
        super().apply_to_system(system)
        if self.lambda_interpolate is not None:
            set_torch_force_defaults(system, self.lambda_interpolate)

    def _standardize_system(self, system):
        super()._standardize_system(system)
        set_torch_force_defaults(system, 1.0)


def set_torch_force_defaults(system: openmm.System, value: float) -> None:
    """Set the default of ``lambda_interpolate`` in every TorchForce of ``system`` (rebuilt and moved last)."""
    rebuilt = []
    for index in reversed(range(system.getNumForces())):
        force = system.getForce(index)
        if type(force).__name__ not in ("Force", "TorchForce"):
            continue
        text = openmm.XmlSerializer.serialize(force)
        if 'type="TorchForce"' not in text:
            continue
        root = ElementTree.fromstring(text)
        changed = False
        for parameter in root.findall("GlobalParameters/Parameter"):
            if parameter.get("name") == PARAMETER and float(parameter.get("default")) != value:
                parameter.set("default", repr(float(value)))
                changed = True
        if changed:
            rebuilt.append(openmm.XmlSerializer.deserialize(ElementTree.tostring(root, encoding="unicode")))
            system.removeForce(index)
    for force in reversed(rebuilt):
        system.addForce(force)


def interpolation_states(system: openmm.System, lambdas: Sequence[float], temperature: float
                         ) -> List[states.CompoundThermodynamicState]:
    """One openmmtools ``CompoundThermodynamicState`` per lambda at ``temperature`` kelvin."""
    reference = states.ThermodynamicState(system, temperature * unit.kelvin)
    return [states.CompoundThermodynamicState(copy.deepcopy(reference),
                                              [InterpolationState(lambda_interpolate=float(value))])
            for value in lambdas]


def checkpoint_path(storage: Path) -> Path:
    """Where ``MultiStateReporter`` puts the checkpoint file of ``storage`` by default."""
    return storage.with_name(storage.stem + "_checkpoint.nc")


def stored_lambdas(storage: Path) -> Optional[np.ndarray]:
    """The lambdas of an existing storage file, or ``None`` when it has no readable states."""
    reporter = MultiStateReporter(str(storage), open_mode="r")
    try:
        thermodynamic_states, _ = reporter.read_thermodynamic_states()
        return np.array([s.lambda_interpolate for s in thermodynamic_states], dtype=float)
    except Exception:  # noqa: BLE001  (an interrupted create leaves a file without states)
        return None
    finally:
        reporter.close()


def _remove(storage: Path) -> None:
    for path in (storage, checkpoint_path(storage)):
        if path.exists():
            path.unlink()


def seed_replica_mixing(seed: int) -> None:
    """Seed numpy's global generator and numba's own one: openmmtools mixes replicas in a numba-compiled function
    when numba is installed, and ``np.random.seed`` from Python does not reach numba's generator."""
    np.random.seed(seed)
    numba_seed = _numba_seeder()
    if numba_seed is not None:
        numba_seed(seed)


@functools.lru_cache(maxsize=None)
def _numba_seeder():
    """A numba function that seeds numba's generator, compiled once per process; ``None`` without numba (openmmtools
    then mixes with numpy's generator)."""
    try:
        from numba import njit
    except ImportError:  # pragma: no cover
        return None

    @njit
    def _seed(value):
        np.random.seed(value)

    return _seed


def integrator_seed(value: int) -> int:
    """An OpenMM integrator seed for ``value``: within [1, 2**31 - 1] (0 would mean "pick one at random", and the
    seed is a C int)."""
    return 1 + value % (2**31 - 2)


class SeededLangevinMove(mcmc.LangevinDynamicsMove):
    """openmmtools' ``LangevinDynamicsMove`` whose integrators draw their noise from ``seed`` (plus the MPI rank, so
    ranks do not share a noise stream); ``seed=None`` leaves OpenMM's random seed. Stored with the sampler, so a
    resumed run keeps it."""

    def __init__(self, *args, seed: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed

    def _get_integrator(self, thermodynamic_state):
        integrator = super()._get_integrator(thermodynamic_state)
        if self.seed is not None:
            comm = mpiplus.get_mpicomm()
            rank = 0 if comm is None else comm.rank
            integrator.setRandomNumberSeed(integrator_seed(int(self.seed) + 1000 * rank))
        return integrator

    def __getstate__(self):
        serialization = super().__getstate__()
        serialization["seed"] = self.seed
        return serialization

    def __setstate__(self, serialization):
        super().__setstate__(serialization)
        self.seed = serialization.get("seed")


def replica_exchange(system: openmm.System, positions, storage: Path, *, lambdas: np.ndarray, temperature: float,
                     iterations: int, steps_per_iteration: int, timestep_fs: float, collision_rate: float,
                     equilibration_iterations: int, checkpoint_interval: int, platform: openmm.Platform,
                     properties: Dict[str, str], resume: bool, seed: Optional[int] = None) -> int:
    """Run (or finish) the replica exchange in ``storage``; returns the iteration it resumed from (0 when fresh)."""
    move = SeededLangevinMove(timestep=timestep_fs * unit.femtoseconds,
                              collision_rate=collision_rate / unit.picoseconds, n_steps=steps_per_iteration,
                              reassign_velocities=False, seed=seed)
    context_cache = cache.ContextCache(platform=platform, platform_properties=properties or None)
    existing = mpiplus.run_single_node(0, lambda: storage.exists() and (stored_lambdas(storage) if resume else None),
                                       broadcast_result=True)
    if existing is not None and existing is not False:
        if len(existing) != len(lambdas) or not np.allclose(existing, lambdas):
            raise ValueError(f"{storage} was run with lambdas {list(existing)}, not {list(lambdas)}; pass the same "
                             "lambdas to resume, another output folder, or resume=False to start again.")
        reporter = MultiStateReporter(str(storage), checkpoint_interval=checkpoint_interval)
        sampler = ReplicaExchangeSampler.from_storage(reporter)
        sampler.energy_context_cache = sampler.sampler_context_cache = context_cache
        # openmmtools keeps the stored move (steps, timestep); it cannot be replaced after creation. Its seed moves
        # on with the iteration, so a resumed run does not replay the noise of the first iterations.
        start = sampler.iteration
        stored = sampler._mcmc_moves if isinstance(sampler._mcmc_moves, list) else [sampler._mcmc_moves]
        for stored_move in stored:
            if isinstance(stored_move, SeededLangevinMove) and seed is not None:
                stored_move.seed = seed + 7919 * start
        logger.info("resuming %s at iteration %d of %d", storage, start, iterations)
        if iterations > start:
            sampler.extend(iterations - start)
        reporter.close()
        return start
    mpiplus.run_single_node(0, _remove, storage, broadcast_result=False, sync_nodes=True)
    thermodynamic_states = interpolation_states(system, lambdas, temperature)
    if unit.is_quantity(positions):
        positions = positions.value_in_unit(unit.nanometer)
    sampler_state = states.SamplerState(np.asarray(positions, dtype=float) * unit.nanometer,
                                        box_vectors=system.getDefaultPeriodicBoxVectors())
    reporter = MultiStateReporter(str(storage), checkpoint_interval=checkpoint_interval)
    sampler = ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=iterations,
                                     online_analysis_interval=None)
    sampler.create(thermodynamic_states=thermodynamic_states, sampler_states=sampler_state, storage=reporter)
    sampler.energy_context_cache = sampler.sampler_context_cache = context_cache
    if equilibration_iterations:
        sampler.equilibrate(equilibration_iterations)
    sampler.run()
    reporter.close()
    return 0


def end_state_samples(storage: Path, equilibration: int, switches: int) -> Tuple[list, list]:
    """``switches`` stored configurations (positions, box) at lambda = 0 and at lambda = 1, evenly spread over the
    checkpointed production iterations; repeated when there are fewer."""
    reporter = MultiStateReporter(str(storage), open_mode="r")
    try:
        state_of = np.asarray(reporter.read_replica_thermodynamic_states())
        last_state = state_of.shape[1] - 1
        found: Dict[int, list] = {0: [], last_state: []}
        for iteration in range(max(1, equilibration), state_of.shape[0]):
            sampler_states = reporter.read_sampler_states(iteration)
            if sampler_states is None:
                continue
            for end in found:
                replica = int(np.flatnonzero(state_of[iteration] == end)[0])
                sample = sampler_states[replica]
                found[end].append((np.asarray(sample.positions.value_in_unit(unit.nanometer)),
                                   None if sample.box_vectors is None else
                                   np.asarray(sample.box_vectors.value_in_unit(unit.nanometer))))
    finally:
        reporter.close()
    if not found[0]:
        raise RuntimeError(f"{storage} has no stored positions after equilibration to start switches from; use a "
                           "smaller checkpoint_interval or more iterations.")
    chosen = []
    for end in (0, last_state):
        picks = np.linspace(0, len(found[end]) - 1, switches).round().astype(int)
        chosen.append([found[end][k] for k in picks])
    return chosen[0], chosen[1]


def neq_switching(system: openmm.System, storage: Path, analysis, *, switches: int, steps: int, timestep_fs: float,
                  collision_rate: float, platform: openmm.Platform, properties: Dict[str, str],
                  seed: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Forward (0 -> 1) and reverse (1 -> 0) protocol work in kJ/mol, ``switches`` each, spread over MPI ranks.

    The work of the linear protocol is ``sum_k (lambda_{k+1} - lambda_k) * dU(x_k)``: ``lambda`` is changed at fixed
    positions (work), then one Langevin step is taken at the new ``lambda`` (heat).
    """
    forward_starts, reverse_starts = mpiplus.run_single_node(
        0, end_state_samples, storage, analysis.equilibration_iterations, switches, broadcast_result=True)
    temperature = analysis.temperature
    jobs = [(1, k, start) for k, start in enumerate(forward_starts)]
    jobs += [(-1, switches + k, start) for k, start in enumerate(reverse_starts)]
    held: Dict[str, object] = {}

    def switch(job) -> float:
        direction, index, (positions, box) = job
        switch_seed = None if seed is None else integrator_seed(seed + 1 + index)
        if "context" not in held:
            integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, collision_rate / unit.picosecond,
                                                         timestep_fs * unit.femtosecond)
            if switch_seed is not None:  # read when the Context is created (later changes have no effect)
                integrator.setRandomNumberSeed(switch_seed)  # this rank's first switch
            held["integrator"] = integrator
            held["context"] = openmm.Context(system, integrator, platform, properties)
        context, integrator = held["context"], held["integrator"]
        path = np.linspace(0.0, 1.0, steps + 1)
        path = path if direction > 0 else path[::-1]
        if box is not None:
            context.setPeriodicBoxVectors(*box)
        context.setPositions(positions)
        context.setParameter(PARAMETER, path[0])
        context.setVelocitiesToTemperature(temperature * unit.kelvin, *(() if switch_seed is None else (switch_seed,)))
        work = 0.0
        for k in range(steps):
            state = context.getState(getParameterDerivatives=True)
            work += (path[k + 1] - path[k]) * state.getEnergyParameterDerivatives()[PARAMETER]
            context.setParameter(PARAMETER, path[k + 1])
            integrator.step(1)
        if not np.isfinite(work):
            raise RuntimeError(f"a {'forward' if direction > 0 else 'reverse'} switch gave non-finite work; reduce "
                               "the timestep or increase neq_steps.")
        return work

    works = np.asarray(mpiplus.distribute(switch, jobs, send_results_to="all"), dtype=float)
    return works[:switches], works[switches:]
