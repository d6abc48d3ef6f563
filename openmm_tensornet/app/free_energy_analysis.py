"""Estimators for the MM -> ML/MM interpolation free energy: MBAR and TI from a replica-exchange storage file, BAR and
Jarzynski from non-equilibrium switching work.

All results are in kJ/mol. The storage is the NetCDF file written by openmmtools' ``MultiStateReporter``; reading it
needs the composable state class of :mod:`openmm_tensornet.app.free_energy` to be importable (it is imported here).

TI uses the replica-exchange samples themselves: along ``lambda_interpolate`` the energy is linear,
``E(lambda) = E_MM + lambda * dU``, so ``dE/dlambda = dU`` at a stored configuration is the difference of its reduced
energies at the two end states times kT divided by the lambda span, with no extra force evaluations.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import openmm.unit as unit

logger = logging.getLogger(__name__)

KJ_PER_KCAL = 4.184


class Estimate(NamedTuple):
    """A free-energy difference and its standard error, in kJ/mol."""

    value: float  # kJ/mol
    sigma: float  # kJ/mol, one standard error

    @property
    def value_kcal(self) -> float:
        return self.value / KJ_PER_KCAL

    @property
    def sigma_kcal(self) -> float:
        return self.sigma / KJ_PER_KCAL


class StorageAnalysis(NamedTuple):
    """What a replica-exchange storage file says about the interpolation free energy."""

    lambdas: np.ndarray  # (K,) lambda_interpolate of each state
    temperature: float  # kelvin
    iterations: int  # production iterations stored (the initial energies are iteration 0)
    equilibration_iterations: int  # discarded by the analyzer's automatic equilibration detection
    samples: int  # decorrelated samples MBAR used, all states together
    mbar: Estimate  # Delta G(0 -> 1), kJ/mol
    overlap: np.ndarray  # (K, K) MBAR overlap matrix
    dEdl_mean: np.ndarray  # (K,) <dE/dlambda> per state, kJ/mol
    dEdl_sem: np.ndarray  # (K,) its standard error, corrected for correlation, kJ/mol
    ti: Estimate  # trapezoid integral of dEdl_mean, kJ/mol


# Bootstrap resamples for BAR's error bar: 200 give its sigma to about 5 %, in well under a second.
BOOTSTRAP_RESAMPLES = 200


def kT_kj(temperature: float) -> float:
    """k_B T in kJ/mol at ``temperature`` kelvin."""
    return float((unit.MOLAR_GAS_CONSTANT_R * temperature * unit.kelvin).value_in_unit(unit.kilojoule_per_mole))


def trapezoid(lambdas: Sequence[float], means: Sequence[float], sems: Sequence[float]) -> Estimate:
    """Trapezoid integral of ``means`` over ``lambdas``; independent per-point errors propagated through the weights."""
    x = np.asarray(lambdas, dtype=float)
    weights = np.zeros_like(x)
    widths = np.diff(x)
    weights[:-1] += 0.5 * widths
    weights[1:] += 0.5 * widths
    value = float(np.dot(weights, means))
    sigma = float(np.sqrt(np.sum((weights * np.asarray(sems, dtype=float)) ** 2)))
    return Estimate(value, sigma)


def mean_and_sem(series: np.ndarray) -> tuple:
    """Mean of a time series and its standard error with pymbar's statistical inefficiency (``g >= 1``)."""
    from pymbar import timeseries

    series = np.asarray(series, dtype=float)
    if len(series) < 2:
        return float(series.mean()), float("inf")
    if np.ptp(series) == 0.0:
        return float(series.mean()), 0.0
    g = max(1.0, float(timeseries.statistical_inefficiency(series)))
    return float(series.mean()), float(series.std(ddof=1) / np.sqrt(len(series) / g))


def analyze_storage(storage: Path) -> StorageAnalysis:
    """MBAR (openmmtools' ``MultiStateSamplerAnalyzer``) and TI from a replica-exchange storage file.

    Parameters
    ----------
    storage
        The ``.nc`` file written by :func:`openmm_tensornet.app.free_energy.interpolation_free_energy`.
    """
    from openmmtools.multistate import MultiStateReporter, MultiStateSamplerAnalyzer

    from . import free_energy_sampling  # noqa: F401  (registers the composable state class used in the file)

    storage = Path(storage)
    if not storage.exists():
        raise ValueError(f"no replica-exchange storage at {storage}; run interpolation_free_energy first.")
    reporter = MultiStateReporter(str(storage), open_mode="r")
    try:
        states, _ = reporter.read_thermodynamic_states()
        lambdas = np.array([state.lambda_interpolate for state in states], dtype=float)
        temperature = float(states[0].temperature.value_in_unit(unit.kelvin))
        kT = kT_kj(temperature)
        analyzer = MultiStateSamplerAnalyzer(reporter, unbias_restraint=False)
        delta_f, d_delta_f = analyzer.get_free_energy()
        mbar = Estimate(float(delta_f[0, -1]) * kT, float(d_delta_f[0, -1]) * kT)
        overlap = np.asarray(analyzer.mbar.compute_overlap()["matrix"])
        equilibration = int(analyzer.n_equilibration_iterations)
        samples = int(np.sum(analyzer.mbar.N_k))
        energies, _, _ = reporter.read_energies()  # (iterations + 1, replicas, states), reduced units
        state_of = np.asarray(reporter.read_replica_thermodynamic_states())  # (iterations + 1, replicas)
        iterations = energies.shape[0] - 1
    finally:
        reporter.close()
    # dE/dlambda of each stored configuration (linear path), kJ/mol.
    slope = (energies[:, :, -1] - energies[:, :, 0]) * kT / (lambdas[-1] - lambdas[0])
    first = min(max(1, equilibration), iterations)
    means, sems = np.zeros(len(lambdas)), np.zeros(len(lambdas))
    for k in range(len(lambdas)):
        replica = np.argmax(state_of[first:] == k, axis=1)  # each state holds exactly one replica per iteration
        series = slope[first:][np.arange(len(replica)), replica]
        means[k], sems[k] = mean_and_sem(series)
    return StorageAnalysis(lambdas, temperature, iterations, equilibration, samples, mbar, overlap, means, sems,
                           trapezoid(lambdas, means, sems))


def _bootstrap_bar_sigma(forward: np.ndarray, reverse: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """Standard deviation of BAR (in kT) over bootstrap resamples of the forward and reverse work (each resampled
    with replacement, fixed seed so a report is reproducible)."""
    from pymbar import other_estimators

    rng = np.random.default_rng(0)
    values = []
    for _ in range(resamples):
        f = forward[rng.integers(len(forward), size=len(forward))]
        r = reverse[rng.integers(len(reverse), size=len(reverse))]
        try:
            values.append(float(other_estimators.bar(f, r, compute_uncertainty=False)["Delta_f"]))
        except Exception:  # noqa: BLE001  (a resample without overlap has no BAR solution)
            continue
    if len(values) < 0.9 * resamples:
        # The resamples without a solution are the least overlapping ones: leaving many out would understate sigma.
        logger.warning("BAR had no solution for %d of %d bootstrap resamples of the work: the forward and reverse "
                       "work barely overlap; its error bar is reported as infinite. Use more or slower switches.",
                       resamples - len(values), resamples)
        return float("inf")
    return float(np.std(values, ddof=1))


def work_estimates(forward: np.ndarray, reverse: np.ndarray, temperature: float
                   ) -> tuple:
    """BAR on forward (0 -> 1) and reverse (1 -> 0) protocol work, and Jarzynski on the forward work; kJ/mol.

    Returns ``(bar, jarzynski)``, each an :class:`Estimate` (``None`` when there is no work to use). BAR's sigma is
    the larger of its asymptotic error and a bootstrap over the work values: with a few, dissipative switches the
    asymptotic formula is too optimistic.
    """
    from pymbar import other_estimators

    kT = kT_kj(temperature)
    forward, reverse = np.asarray(forward, dtype=float), np.asarray(reverse, dtype=float)
    bar: Optional[Estimate] = None
    jarzynski: Optional[Estimate] = None
    if len(forward) and len(reverse):
        # Work values are huge (the ML energy carries a constant offset); BAR only needs them relative to a guess.
        shift = float(0.5 * (np.mean(forward) - np.mean(reverse)))
        result = other_estimators.bar((forward - shift) / kT, (reverse + shift) / kT)
        sigma = max(float(result["dDelta_f"]), _bootstrap_bar_sigma((forward - shift) / kT, (reverse + shift) / kT))
        bar = Estimate(float(result["Delta_f"]) * kT + shift, sigma * kT)
    if len(forward):
        shift = float(np.mean(forward))
        result = other_estimators.exp((forward - shift) / kT)
        jarzynski = Estimate(float(result["Delta_f"]) * kT + shift, float(result["dDelta_f"]) * kT)
    return bar, jarzynski
