"""``lambda_interpolate``: switch an ML region between its MM description (0) and TensorNet (1), exactly at both ends.

The MM system is kept as it is, and forces are added that remove ``lambda_interpolate`` times the MM energy of the
region's internal interactions (the same terms that :meth:`TensorNetPotential.createMixedSystem` removes when it does
not interpolate), while the TensorNet force contributes ``lambda_interpolate`` times the ML energy::

    E(lambda) = E_MM(all) + lambda * (E_ML(region) - E_MM(region internal))

At ``lambda = 0`` every added term is exactly zero, so the energy and forces are the MM ones bit for bit; at
``lambda = 1`` the result is the mechanically embedded ML/MM system. Every added force is linear in the parameter and
declares the energy-parameter derivative, so ``State.getEnergyParameterDerivatives()["lambda_interpolate"]`` is
``E_ML - E_MM(region internal)``.

The nonbonded terms are subtracted pair by pair with the formula each ``NonbondedForce`` method uses for a pair (the
difference between the pair included and the pair excluded): plain Coulomb + Lennard-Jones for ``NoCutoff``; reaction
field within the cutoff for the cutoff methods; ``erfc`` within the cutoff plus the ``erf`` exclusion correction for
Ewald and PME; the switching function where it is on. LJPME has no pairwise form and is refused.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Set, Tuple

import openmm

PARAMETER = "lambda_interpolate"

# 1/(4 pi eps0) in kJ/mol nm / e^2, the value OpenMM 8 uses (CODATA 2018).
ONE_4PI_EPS0 = 138.93545764438198

_LENNARD_JONES = "4*epsilon*((sigma/r)^12-(sigma/r)^6)"


def _scaled(expression: str) -> str:
    return f"-{PARAMETER}*({expression})"


def _declare(force: openmm.Force, periodic: bool, group: int) -> openmm.Force:
    force.addGlobalParameter(PARAMETER, 1.0)
    force.addEnergyParameterDerivative(PARAMETER)
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setForceGroup(group)
    return force


def _bond_force(expression: str, parameters: Sequence[str], periodic: bool, group: int) -> openmm.CustomBondForce:
    force = openmm.CustomBondForce(_scaled(expression))
    for name in parameters:
        force.addPerBondParameter(name)
    return _declare(force, periodic, group)


def subtraction_forces(system: openmm.System, region: Sequence[int]) -> List[openmm.Force]:
    """Forces that remove ``lambda_interpolate`` x the MM energy of the interactions *within* ``region``.

    Each new force has the force group of the MM force it mirrors. Forces with nothing inside the region add nothing.
    """
    inside = set(region)
    added: List[openmm.Force] = []
    for force in system.getForces():
        added.extend(_mirror(force, inside))
    return [force for force in added if _has_terms(force)]


def _has_terms(force: openmm.Force) -> bool:
    if isinstance(force, openmm.CustomCVForce):
        return force.getCollectiveVariable(0).getNumTorsions() > 0
    for counter in ("getNumBonds", "getNumAngles", "getNumTorsions"):
        if hasattr(force, counter):
            return getattr(force, counter)() > 0
    return True


def _mirror(force: openmm.Force, inside: Set[int]) -> List[openmm.Force]:
    group = force.getForceGroup()
    periodic = force.usesPeriodicBoundaryConditions()
    if isinstance(force, openmm.HarmonicBondForce):
        mirror = _bond_force("0.5*k*(r-r0)^2", ("r0", "k"), periodic, group)
        for k in range(force.getNumBonds()):
            i, j, length, constant = force.getBondParameters(k)
            if i in inside and j in inside:
                mirror.addBond(i, j, [length, constant])
        return [mirror]
    if isinstance(force, openmm.HarmonicAngleForce):
        mirror = _declare(openmm.CustomAngleForce(_scaled("0.5*k*(theta-theta0)^2")), periodic, group)
        mirror.addPerAngleParameter("theta0")
        mirror.addPerAngleParameter("k")
        for k in range(force.getNumAngles()):
            i, j, m, angle, constant = force.getAngleParameters(k)
            if {i, j, m} <= inside:
                mirror.addAngle(i, j, m, [angle, constant])
        return [mirror]
    if isinstance(force, openmm.PeriodicTorsionForce):
        mirror = _declare(openmm.CustomTorsionForce(_scaled("k*(1+cos(n*theta-phase))")), periodic, group)
        for name in ("n", "phase", "k"):
            mirror.addPerTorsionParameter(name)
        for k in range(force.getNumTorsions()):
            i, j, m, n, periodicity, phase, constant = force.getTorsionParameters(k)
            if {i, j, m, n} <= inside:
                mirror.addTorsion(i, j, m, n, [periodicity, phase, constant])
        return [mirror]
    if isinstance(force, openmm.RBTorsionForce):
        # OpenMM's Ryckaert-Bellemans convention: psi = theta - 180 degrees, so cos(psi) = -cos(theta).
        terms = "+".join(f"c{p}*(-cos(theta))^{p}" if p else "c0" for p in range(6))
        mirror = _declare(openmm.CustomTorsionForce(_scaled(terms)), periodic, group)
        for p in range(6):
            mirror.addPerTorsionParameter(f"c{p}")
        for k in range(force.getNumTorsions()):
            parameters = force.getTorsionParameters(k)
            if set(parameters[:4]) <= inside:
                mirror.addTorsion(*parameters[:4], list(parameters[4:]))
        return [mirror]
    if isinstance(force, openmm.CMAPTorsionForce):
        cmap = openmm.CMAPTorsionForce()
        cmap.setUsesPeriodicBoundaryConditions(periodic)
        for k in range(force.getNumMaps()):
            cmap.addMap(*force.getMapParameters(k))
        for k in range(force.getNumTorsions()):
            parameters = force.getTorsionParameters(k)
            if set(parameters[1:]) <= inside:
                cmap.addTorsion(*parameters)
        mirror = openmm.CustomCVForce(_scaled("cmap"))
        mirror.addCollectiveVariable("cmap", cmap)
        mirror.addGlobalParameter(PARAMETER, 1.0)
        mirror.addEnergyParameterDerivative(PARAMETER)
        mirror.setForceGroup(group)
        return [mirror]
    if isinstance(force, openmm.NonbondedForce):
        return _mirror_nonbonded(force, inside)
    if isinstance(force, openmm.CustomNonbondedForce):
        return [_mirror_custom_nonbonded(force, inside)]
    # Everything else was vetted (or refused) by the mechanical embedding and has no terms inside the region.
    return []


def _switch(force, expression: str) -> str:
    """``expression`` times OpenMM's switching function when ``force`` uses one."""
    if not force.getUseSwitchingFunction():
        return expression
    start, end = force.getSwitchingDistance(), force.getCutoffDistance()
    if hasattr(start, "value_in_unit"):
        start = start.value_in_unit(openmm.unit.nanometer)
    if hasattr(end, "value_in_unit"):
        end = end.value_in_unit(openmm.unit.nanometer)
    x = f"((r-{start!r})/{end - start!r})"
    return f"select(step(r-{start!r}), 1-6*{x}^5+15*{x}^4-10*{x}^3, 1)*({expression})"


def _nonbonded_pair_expression(force: openmm.NonbondedForce) -> Tuple[str, bool]:
    """Energy of one included pair minus the same pair excluded, for ``force``'s method; and whether it is periodic."""
    method = force.getNonbondedMethod()
    cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
    coulomb = f"{ONE_4PI_EPS0!r}*chargeprod"
    lennard_jones = _switch(force, _LENNARD_JONES)
    if method == openmm.NonbondedForce.NoCutoff:
        return f"{coulomb}/r+{_LENNARD_JONES}", False
    if method in (openmm.NonbondedForce.CutoffNonPeriodic, openmm.NonbondedForce.CutoffPeriodic):
        dielectric = force.getReactionFieldDielectric()
        krf = (dielectric - 1.0) / (2.0 * dielectric + 1.0) / cutoff**3
        crf = 3.0 * dielectric / (2.0 * dielectric + 1.0) / cutoff
        inner = f"{coulomb}*(1/r+{krf!r}*r^2-{crf!r})+{lennard_jones}"
        return f"step({cutoff!r}-r)*({inner})", method == openmm.NonbondedForce.CutoffPeriodic
    if method in (openmm.NonbondedForce.Ewald, openmm.NonbondedForce.PME):
        alpha = _ewald_alpha(force, cutoff)
        inner = f"{coulomb}*erfc({alpha!r}*r)/r+{lennard_jones}"
        return f"step({cutoff!r}-r)*({inner})+{coulomb}*erf({alpha!r}*r)/r", True
    raise NotImplementedError(
        "interpolate=True does not support NonbondedForce.LJPME (its dispersion has no pairwise form to remove); "
        "use PME for the MM system, or interpolate=False.")


def _ewald_alpha(force: openmm.NonbondedForce, cutoff: float) -> float:
    alpha = force.getPMEParameters()[0] if force.getNonbondedMethod() == openmm.NonbondedForce.PME else 0.0
    if hasattr(alpha, "value_in_unit"):
        alpha = alpha.value_in_unit(openmm.unit.nanometer**-1)
    if alpha == 0.0:  # chosen by OpenMM from the error tolerance, with this formula (NonbondedForceImpl)
        alpha = math.sqrt(-math.log(2.0 * force.getEwaldErrorTolerance())) / cutoff
    return alpha


def _mirror_nonbonded(force: openmm.NonbondedForce, inside: Set[int]) -> List[openmm.Force]:
    group = force.getForceGroup()
    for offsets, what in ((force.getNumParticleParameterOffsets(), "particle"),
                          (force.getNumExceptionParameterOffsets(), "exception")):
        if offsets:
            raise NotImplementedError(f"interpolate=True does not support a NonbondedForce with {what} parameter "
                                      "offsets (they already make it alchemical); use interpolate=False.")
    expression, periodic = _nonbonded_pair_expression(force)
    pairs = _bond_force(expression, ("chargeprod", "sigma", "epsilon"), periodic, group)
    exceptions = _bond_force(f"{ONE_4PI_EPS0!r}*chargeprod/r+{_LENNARD_JONES}", ("chargeprod", "sigma", "epsilon"),
                             force.getExceptionsUsePeriodicBoundaryConditions()
                             and force.usesPeriodicBoundaryConditions(), group)
    excepted = {}
    for k in range(force.getNumExceptions()):
        i, j, chargeprod, sigma, epsilon = force.getExceptionParameters(k)
        if i in inside and j in inside:
            excepted[(min(i, j), max(i, j))] = (chargeprod, sigma, epsilon)
    region = sorted(inside)
    parameters = [force.getParticleParameters(i) for i in region]
    for a, i in enumerate(region):
        qi, si, ei = (value._value for value in parameters[a])
        for b in range(a + 1, len(region)):
            j = region[b]
            if (i, j) in excepted:
                chargeprod, sigma, epsilon = (value._value for value in excepted[(i, j)])
                if chargeprod != 0.0 or epsilon != 0.0:
                    exceptions.addBond(i, j, [chargeprod, sigma, epsilon])
                continue
            qj, sj, ej = (value._value for value in parameters[b])
            if qi * qj != 0.0 or ei * ej != 0.0:
                pairs.addBond(i, j, [qi * qj, 0.5 * (si + sj), math.sqrt(ei * ej)])
    return [pairs, exceptions]


def _mirror_custom_nonbonded(force: openmm.CustomNonbondedForce, inside: Set[int]) -> openmm.CustomCompoundBondForce:
    if force.getNumComputedValues() > 0:
        raise NotImplementedError("interpolate=True does not support a CustomNonbondedForce with computed values; "
                                  "use interpolate=False.")
    method = force.getNonbondedMethod()
    names = [force.getPerParticleParameterName(p) for p in range(force.getNumPerParticleParameters())]
    expression = force.getEnergyFunction()
    head, _, definitions = expression.partition(";")
    energy = _switch(force, head) if method != openmm.CustomNonbondedForce.NoCutoff else head
    if method != openmm.CustomNonbondedForce.NoCutoff:
        cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
        energy = f"step({cutoff!r}-r)*({energy})"
    full = _scaled(energy) + (";" + definitions if definitions else "") + "; r=distance(p1,p2)"
    mirror = openmm.CustomCompoundBondForce(2, full)  # (CustomBondForce has no tabulated functions)
    bond_parameters = [f"{name}{suffix}" for suffix in ("1", "2") for name in names]
    for name in bond_parameters:
        mirror.addPerBondParameter(name)
    for p in range(force.getNumGlobalParameters()):
        name = force.getGlobalParameterName(p)
        if name != PARAMETER:
            mirror.addGlobalParameter(name, force.getGlobalParameterDefaultValue(p))
    for f in range(force.getNumTabulatedFunctions()):
        mirror.addTabulatedFunction(force.getTabulatedFunctionName(f),
                                    openmm.XmlSerializer.clone(force.getTabulatedFunction(f)))
    _declare(mirror, method == openmm.CustomNonbondedForce.CutoffPeriodic, force.getForceGroup())
    excluded = set()
    for k in range(force.getNumExclusions()):
        i, j = force.getExclusionParticles(k)
        excluded.add((min(i, j), max(i, j)))
    allowed = _interaction_group_filter(force)
    region = sorted(inside)
    for a, i in enumerate(region):
        for j in region[a + 1:]:
            if (i, j) in excluded or (allowed is not None and not allowed(i, j)):
                continue
            mirror.addBond([i, j], list(force.getParticleParameters(i)) + list(force.getParticleParameters(j)))
    return mirror


def _interaction_group_filter(force: openmm.CustomNonbondedForce):
    if force.getNumInteractionGroups() == 0:
        return None
    groups = []
    for g in range(force.getNumInteractionGroups()):
        first, second = force.getInteractionGroupParameters(g)
        groups.append((set(first), set(second)))

    def allowed(i: int, j: int) -> bool:
        return any((i in a and j in b) or (j in a and i in b) for a, b in groups)

    return allowed
