"""The TensorNet model (Simeon & De Fabritiis, NeurIPS 2023) with energy, dipole and polarisability outputs."""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from ..choices import (
    Activation,
    EnergyUnit,
    EquivarianceGroup,
    LengthUnit,
    RBFType,
    dtype_name,
    parse_choice,
    parse_dtype,
)
from ..elements import ELEMENTS
from ..ops.library import require_ops
from ..ops.neighbors import box_problem, neighbor_pairs, nonfinite_positions_problem
from ..ops.pairs import pair_index
from ..ops.radial import CosineCutoff, make_rbf
from ..ops.reference import invariant_readout_reference
from ..ops.tensors import basis, edge_components, skew_vector, symmetric_matrix, unit_vectors
from .charge_equilibration import ChargePredictor
from .coulomb import PredictedChargeCoulomb
from .dispersion import D2Prior
from .embedding import TensorEmbedding, scatter_sum
from .heads import MLP, DipoleHead, PolarizabilityHead
from .interaction import Interaction
from .plan import ExecutionPlan
from .repulsion import ZBLPrior, ZBLRepulsion


class TensorNetOutput(NamedTuple):
    """Results of :meth:`TensorNet.forward`, in the model's units (``energy_unit``, ``length_unit``)."""

    energy: Tensor  # [M] total energy of each molecule
    atom_energy: Tensor  # [N] per-atom energies; they sum to ``energy`` molecule by molecule
    forces: Optional[Tensor]  # [N, 3] -dE/dr, when ``compute_forces=True``
    charges: Optional[Tensor]  # [N] atomic charges (e) of the dipole head or of charge equilibration; they sum to
    # each molecule's total charge
    dipole: Optional[Tensor]  # [M, 3] dipole moment (e * length), when the model has a dipole head
    polarizability: Optional[Tensor]  # [M, 3, 3] symmetric polarisability (length^3), with that head


def _atomic_masses(max_z: int, dtype: torch.dtype) -> Tensor:
    """Masses (dalton) by atomic number (OpenMM's element table, ``openmm_tensornet.elements``); 0 where none."""
    masses = torch.zeros(max_z, dtype=dtype)
    for number, (_, mass) in ELEMENTS.items():
        if number < max_z:
            masses[number] = mass
    return masses


class TensorNet(nn.Module):
    """TensorNet: an O(3)- or SO(3)-equivariant message-passing potential on Cartesian rank-2 tensors.

    Parameters
    ----------
    hidden_channels : int
        Feature channels ``F`` per tensor component (default 128).
    num_layers : int
        Interaction layers (0, 1, 2, ...; default 2).
    num_rbf : int
        Radial basis functions (default 32).
    rbf_type : {"expnorm", "gauss"}
        Radial basis (default "expnorm").
    trainable_rbf : bool
        Whether the basis parameters are trained.
    activation : {"silu", "tanh", "sigmoid", "mish", "ssp"}
        Non-linearity of all MLPs (default "silu").
    cutoff_lower, cutoff_upper : float
        Radial window in ``length_unit`` (default 0 and 4.5 Å).
    max_z : int
        Atomic numbers must be below this (default 128).
    equivariance_group : {"O(3)", "SO(3)"}
        "O(3)": energies invariant under rotations and reflections; "SO(3)": under rotations only.
    energy_head_hidden_layers : int
        Extra hidden layers in the energy MLP (torchmd-net's ``output_mlp_num_layers``).
    dipole_head, polarizability_head : bool
        Add the vector (dipole) and rank-2 (polarisability) outputs.
    dtype : "float32" or "float64" (or the torch dtype)
        Parameter precision; inputs must use the same.
    energy_unit, length_unit : str
        Units of the training data, stored for export (defaults eV and angstrom).
    elements : list of int, optional
        The atomic numbers the model was trained on; others are refused.
    charge_channels : int
        ``q`` > 0: torchmd-net's ``tensornet2`` (``q_dim``): ``q`` charge channels per atom predicted after the
        embedding and after every layer, equilibrated to the total charge, and fed to the next layer's radial
        filters (see :mod:`openmm_tensornet.nn.charge_equilibration`). The total-charge factors ``1 + 0.1 q`` are
        then 1.
    coulomb_weights : list of lists of float, optional
        With ``charge_channels``: add the damped Coulomb energy of the predicted charges (one list of ``q`` channel
        weights per prediction, ``num_layers + 1`` lists; :class:`openmm_tensornet.nn.coulomb.PredictedChargeCoulomb`).
    coulomb_cutoff : float, optional
        That Coulomb term within this distance with a reaction field (``coulomb_epsilon``); None: all pairs of a
        molecule, no periodic box.
    repulsion : bool
        Add TensorNet2's ZBL repulsion on the model's pairs (:class:`openmm_tensornet.nn.repulsion.ZBLRepulsion`).
    zbl_prior, d2_prior : dict, optional
        torchmd-net's ``ZBL`` and ``D2`` priors: ``cutoff_distance`` (data units), ``distance_scale`` (m per unit),
        ``energy_scale`` (J per unit), and ``atomic_number`` (ZBL) or ``num_types`` and ``num_elements`` (D2,
        whose tables come with the weights).

    Examples
    --------
    >>> import torch
    >>> from openmm_tensornet import TensorNet
    >>> model = TensorNet(hidden_channels=16, num_layers=1, num_rbf=8)
    >>> out = model(torch.tensor([8, 1, 1]), torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
    ...             compute_forces=True)
    >>> out.energy.shape, out.forces.shape
    (torch.Size([1]), torch.Size([3, 3]))
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        num_layers: int = 2,
        num_rbf: int = 32,
        rbf_type: RBFType = "expnorm",
        trainable_rbf: bool = False,
        activation: Activation = "silu",
        cutoff_lower: float = 0.0,
        cutoff_upper: float = 4.5,
        max_z: int = 128,
        equivariance_group: EquivarianceGroup = "O(3)",
        energy_head_hidden_layers: int = 0,
        dipole_head: bool = False,
        polarizability_head: bool = False,
        dtype: Any = "float32",
        energy_unit: EnergyUnit = "eV",
        length_unit: LengthUnit = "angstrom",
        elements: Optional[List[int]] = None,
        charge_channels: int = 0,
        coulomb_weights: Optional[List[List[float]]] = None,
        coulomb_cutoff: Optional[float] = None,
        coulomb_epsilon: float = 78.3,
        repulsion: bool = False,
        zbl_prior: Optional[Dict[str, Any]] = None,
        d2_prior: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        require_ops()  # the first model of a process loads (or compiles, once) the ops
        torch_dtype = parse_dtype(dtype)
        parse_choice("rbf_type", rbf_type, RBFType)
        parse_choice("activation", activation, Activation)
        parse_choice("equivariance_group", equivariance_group, EquivarianceGroup)
        parse_choice("energy_unit", energy_unit, EnergyUnit)
        parse_choice("length_unit", length_unit, LengthUnit)
        _check_int("hidden_channels", hidden_channels, 2)
        _check_int("num_layers", num_layers, 0)
        _check_int("num_rbf", num_rbf, 2)
        _check_int("max_z", max_z, 2)
        _check_int("energy_head_hidden_layers", energy_head_hidden_layers, 0)
        _check_int("charge_channels", charge_channels, 0)
        if coulomb_weights is not None:
            shape_ok = (charge_channels > 0 and len(coulomb_weights) == num_layers + 1
                        and all(len(row) == charge_channels for row in coulomb_weights))
            if not shape_ok:
                raise ValueError(f"coulomb_weights needs charge_channels > 0 and num_layers + 1 = {num_layers + 1} "
                                 f"lists of charge_channels = {charge_channels} weights each; got {coulomb_weights}.")
            if sum(float(w) for row in coulomb_weights for w in row) == 0.0:
                raise ValueError("coulomb_weights must not sum to zero (they average the channels' energies).")
        if coulomb_cutoff is not None and not float(coulomb_cutoff) > 0.0:
            raise ValueError(f"coulomb_cutoff must be positive or None; got {coulomb_cutoff}.")
        if not (0.0 <= float(cutoff_lower) < float(cutoff_upper)):
            raise ValueError(
                f"need 0 <= cutoff_lower < cutoff_upper; got cutoff_lower={cutoff_lower}, cutoff_upper={cutoff_upper}."
            )
        self.hparams: Dict[str, Any] = dict(
            hidden_channels=int(hidden_channels), num_layers=int(num_layers), num_rbf=int(num_rbf),
            rbf_type=rbf_type, trainable_rbf=bool(trainable_rbf), activation=activation,
            cutoff_lower=float(cutoff_lower), cutoff_upper=float(cutoff_upper), max_z=int(max_z),
            equivariance_group=equivariance_group, energy_head_hidden_layers=int(energy_head_hidden_layers),
            dipole_head=bool(dipole_head), polarizability_head=bool(polarizability_head),
            dtype=dtype_name(torch_dtype), energy_unit=energy_unit, length_unit=length_unit,
            elements=None if elements is None else sorted({int(z) for z in elements}),
            charge_channels=int(charge_channels),
            coulomb_weights=None if coulomb_weights is None else [[float(w) for w in row] for row in coulomb_weights],
            coulomb_cutoff=None if coulomb_cutoff is None else float(coulomb_cutoff),
            coulomb_epsilon=float(coulomb_epsilon), repulsion=bool(repulsion),
            zbl_prior=None if zbl_prior is None else dict(zbl_prior),
            d2_prior=None if d2_prior is None else dict(d2_prior),
        )
        if elements is not None and any(not 1 <= int(z) < int(max_z) for z in elements):
            raise ValueError(f"elements must be atomic numbers in [1, {int(max_z) - 1}]; got {elements}.")
        self.cutoff_lower = float(cutoff_lower)
        self.cutoff_upper = float(cutoff_upper)
        self.max_z = int(max_z)
        self.energy_unit = energy_unit
        self.length_unit = length_unit
        self.check_inputs = True
        # Neighbour capacity (see ``set_neighbor_capacity``): -1 = exactly the pairs found (dynamic shapes).
        self.neighbor_capacity = -1
        self.static_neighbors = False
        # Errors found while evaluating (overflow, NaN positions, overlapping atoms, bad box) are raised here unless
        # ``defer_errors``: then the first one is stored in ``error`` as a status, the output is NaN, and the caller
        # decides how to raise it (for a scripted caller that must raise at its own top level).
        self.defer_errors = False
        self.error = ""
        # Message passing through the compiled op (plugin/messages) in eval mode; the pure-torch twin otherwise.
        self.use_compiled_ops = True

        f = int(hidden_channels)
        self.rbf = make_rbf(rbf_type, cutoff_lower, cutoff_upper, num_rbf, trainable_rbf, torch_dtype)
        self.cutoff = CosineCutoff(cutoff_lower, cutoff_upper)
        self.embedding = TensorEmbedding(f, num_rbf, activation, cutoff_lower, cutoff_upper, max_z, torch_dtype)
        self.layers = nn.ModuleList(
            [
                Interaction(num_rbf, f, activation, equivariance_group, torch_dtype, int(charge_channels))
                for _ in range(num_layers)
            ]
        )
        self.charge_channels = int(charge_channels)
        # Charges after the embedding (None: no charge equilibration) and after each layer.
        self.embedding_charges = (ChargePredictor(f, int(charge_channels), activation, torch_dtype)
                                  if charge_channels > 0 else None)
        self.layer_charges = nn.ModuleList(
            [ChargePredictor(f, int(charge_channels), activation, torch_dtype) for _ in range(num_layers)]
            if charge_channels > 0 else []
        )
        self.coulomb = (PredictedChargeCoulomb(coulomb_weights, coulomb_cutoff, coulomb_epsilon, torch_dtype)
                        if coulomb_weights is not None else None)
        self.repulsion = ZBLRepulsion(max_z, torch_dtype) if repulsion else None
        self.zbl_prior = None if zbl_prior is None else ZBLPrior(
            zbl_prior["cutoff_distance"], zbl_prior["atomic_number"], zbl_prior["distance_scale"],
            zbl_prior["energy_scale"])
        self.d2_prior = None if d2_prior is None else D2Prior(
            d2_prior["cutoff_distance"], d2_prior["distance_scale"], d2_prior["energy_scale"],
            int(d2_prior["num_types"]), int(d2_prior["num_elements"]), torch_dtype)
        self.readout_norm = nn.LayerNorm(3 * f, dtype=torch_dtype)
        self.readout_linear = nn.Linear(3 * f, f, dtype=torch_dtype)
        self.activation = activation  # a name of choices.Activation
        self.energy_head = MLP(f, f // 2, 1, activation, energy_head_hidden_layers, torch_dtype)
        self.dipole = DipoleHead(f, activation, torch_dtype) if dipole_head else None
        self.polarizability = PolarizabilityHead(f, activation, torch_dtype) if polarizability_head else None

        # Standardisation: E = sum_i (std * e_i + atomref[Z_i]) + mean.
        self.register_buffer("energy_mean", torch.zeros((), dtype=torch_dtype))
        self.register_buffer("energy_std", torch.ones((), dtype=torch_dtype))
        self.register_buffer("atomref", torch.zeros(max_z, dtype=torch_dtype))
        masses = _atomic_masses(max_z, torch_dtype) if dipole_head else torch.zeros(0, dtype=torch_dtype)
        self.register_buffer("masses", masses, persistent=False)
        # Labels of the atoms in error messages (e.g. their indices in an OpenMM System); empty = 0, 1, 2, ...
        self.register_buffer("atom_labels", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("basis_matrix", basis(torch_dtype).reshape(9, 9), persistent=False)
        # The atoms of freeze_for_inference (empty: not frozen) and their energy offsets as one molecule.
        self.register_buffer("frozen_z", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("frozen_offset", torch.zeros(0, dtype=torch_dtype), persistent=False)

    @torch.jit.ignore
    def freeze_for_inference(self, z: Tensor) -> None:
        """Precompute what does not depend on positions for the atoms ``z`` (per-atom embedding terms, self-loop
        weights, stacked mixing matrices, energy offsets), for an inference copy with frozen weights, such as the one
        inside an exported OpenMM force. The model then refuses other atoms. The constants are used only while the
        weights stay frozen; ``train()``, ``load_state_dict`` and :meth:`discard_inference_constants` discard them.
        Editing weights or buffers in place afterwards (without those) would leave them stale."""
        if any(parameter.requires_grad for parameter in self.parameters()):
            raise RuntimeError("freeze_for_inference needs frozen weights (model.requires_grad_(False)); the "
                               "constants would go stale when the weights are trained.")
        zero = torch.zeros(1, dtype=self.atomref.dtype, device=self.atomref.device)
        with torch.no_grad():
            rbf_zero, cutoff_zero = self.rbf(zero), self.cutoff(zero)
        self.embedding.freeze(z.to(self.atomref.device), rbf_zero, cutoff_zero)
        for layer in self.layers:
            layer.freeze(rbf_zero, cutoff_zero)
        self.frozen_z = z.detach().clone().to(self.atomref.device)
        self.frozen_offset = self.atomref[self.frozen_z] + self.energy_mean / max(int(z.shape[0]), 1)

    @torch.jit.ignore
    def discard_inference_constants(self) -> None:
        """Undo :meth:`freeze_for_inference` (``train()`` and ``load_state_dict`` call this)."""
        if self.frozen_z.numel() > 0:
            self.embedding.unfreeze()
            for layer in self.layers:
                layer.unfreeze()
            self.frozen_z = torch.zeros(0, dtype=torch.long, device=self.atomref.device)
            self.frozen_offset = torch.zeros(0, dtype=self.atomref.dtype, device=self.atomref.device)

    @torch.jit.ignore
    def train(self, mode: bool = True) -> "TensorNet":
        if mode:  # back to training: the inference constants would go stale
            self.discard_inference_constants()
        return super().train(mode)

    @torch.jit.ignore
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self.discard_inference_constants()  # new weights: the constants of the old ones would be stale
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.jit.ignore
    def set_neighbor_capacity(self, capacity: Optional[int], static: bool = False,
                              atom_labels: Optional[List[int]] = None) -> None:
        """Bound the neighbour list to ``capacity`` ordered pairs (``None``: no bound, exactly the pairs found).

        More pairs than ``capacity`` within the cutoff is a ``RuntimeError`` naming the most crowded atom — never a
        silently shortened list. With ``static=True`` the pair tensors keep exactly ``capacity`` rows (padding
        contributes exactly zero), the static shapes CUDA graphs need; on CUDA the overflow check then cannot stop
        the host, so an overflow makes the energy NaN instead (run once without CUDA graphs to read the message).
        ``atom_labels`` are the atom numbers used in messages (e.g. particle indices of an OpenMM System).
        """
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0):
            raise ValueError(f"capacity must be None or an integer >= 0; got {capacity!r}.")
        self.neighbor_capacity = -1 if capacity is None else capacity
        self.static_neighbors = bool(static) and capacity is not None
        labels = torch.as_tensor([] if atom_labels is None else list(atom_labels), dtype=torch.long)
        self.atom_labels = labels.to(self.atomref.device)

    def plan(self, pos: Tensor, means: Tensor) -> ExecutionPlan:
        """The implementations of this call (:class:`openmm_tensornet.nn.plan.ExecutionPlan`), decided once: compiled
        ops in eval mode (``use_compiled_ops``); whole-layer ops when no weight needs a gradient; precomputed per-atom
        constants after :meth:`freeze_for_inference`; the one-pass pair geometry on the CPU with a fixed radial basis
        (``means``)."""
        compiled = self.use_compiled_ops and not self.training
        constant = compiled and not self.readout_linear.weight.requires_grad and self.embedding.weights_constant()
        for layer in self.layers:
            constant = constant and layer.weights_constant()
        return ExecutionPlan(compiled, constant, constant and self.frozen_z.numel() > 0,
                             compiled and pos.device.type == "cpu" and not means.requires_grad)

    def _pairs(self, pos: Tensor, box: Optional[Tensor], batch: Tensor, fused: bool
               ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
        """Half-list pairs (each unordered pair once): raw indices (padding -1), safe indices (padding 0), vectors,
        distances (padding: the cutoff, where every radial weight is exactly zero) and, for static shapes on CUDA,
        the overflow flag. ``neighbor_capacity`` counts ordered pairs, i.e. twice the half list. ``fused``: vectors
        and distances from the compiled op (inference)."""
        capacity = self.neighbor_capacity
        if capacity < 0:
            pairs = neighbor_pairs(pos, self.cutoff_upper, box, batch, half=True, check_inputs=False, fused=fused)
            return pairs.indices, pairs.indices, pairs.vectors, pairs.distances, None
        half_capacity = capacity // 2
        pairs = neighbor_pairs(pos, self.cutoff_upper, box, batch, max_pairs=half_capacity, half=True,
                               check_inputs=False, check_overflow=False, fused=fused)
        overflow: Optional[Tensor] = None
        if self.static_neighbors and pos.is_cuda:
            overflow = pairs.num_pairs > half_capacity
        else:
            found = int(pairs.num_pairs)
            if found > half_capacity:
                message = self._overflow_message(pos, box, batch, 2 * found, capacity)
                if not self.defer_errors:
                    raise RuntimeError(message)
                self.error = message
                found = half_capacity
            if not self.static_neighbors:
                indices = pairs.indices[:, :found]
                return indices, indices, pairs.vectors[:found], pairs.distances[:found], None
        valid = pairs.indices[0] >= 0
        safe = torch.where(valid.unsqueeze(0), pairs.indices, torch.zeros_like(pairs.indices))
        distances = torch.where(valid, pairs.distances, torch.full_like(pairs.distances, self.cutoff_upper))
        return pairs.indices, safe, pairs.vectors, distances, overflow

    def _overflow_message(self, pos: Tensor, box: Optional[Tensor], batch: Tensor, found: int, capacity: int) -> str:
        everything = neighbor_pairs(pos.detach(), self.cutoff_upper, box, batch, check_inputs=False)
        counts = torch.bincount(everything.indices[0], minlength=pos.shape[0])
        atom = int(counts.argmax())
        label = int(self.atom_labels[atom]) if self.atom_labels.numel() > atom else atom
        average = float(found) / float(max(pos.shape[0], 1))
        tenths = int(average * 10.0 + 0.5)  # one decimal, without float artefacts such as 48.600000000000001
        return ("neighbour list overflow: " + str(found) + " pairs are within the cutoff (" + str(self.cutoff_upper)
                + " " + self.length_unit + ") but the neighbour capacity is " + str(capacity) + ". Atom "
                + str(label) + " has the most neighbours (" + str(int(counts[atom])) + "; "
                + str(tenths // 10) + "." + str(tenths % 10)
                + " per atom on average). No pair was dropped: the evaluation stopped "
                + "instead. The atoms are denser than the capacity was sized for (a collapsing structure, or a box "
                + "compressed by the barostat); check the structure, or recreate the force with a larger "
                + "neighbor_capacity (at least " + str(found) + ", e.g. " + str(int(found * 1.5)) + ").")

    @torch.jit.ignore
    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())

    def _validate(
        self, z: Tensor, pos: Tensor, batch: Optional[Tensor], box: Optional[Tensor], total_charge: Optional[Tensor]
    ) -> None:
        if z.dim() != 1 or z.dtype != torch.long:
            raise TypeError("z must be a 1-D int64 tensor of atomic numbers; got dtype " + str(z.dtype)
                            + " and shape " + str(list(z.shape)) + ".")
        if pos.dim() != 2 or pos.shape[1] != 3 or pos.shape[0] != z.shape[0]:
            raise ValueError("pos must have shape [N, 3] with N = len(z) = " + str(z.shape[0]) + "; got "
                             + str(list(pos.shape)) + ".")
        if pos.dtype != self.energy_mean.dtype:
            raise TypeError("pos has dtype " + str(pos.dtype) + " but the model's parameters are "
                            + str(self.energy_mean.dtype) + "; convert the positions (pos.to(dtype)) or the model.")
        if z.shape[0] > 0:
            if bool((z < 1).any()) or bool((z >= self.max_z).any()):
                bad: List[int] = z[(z < 1) | (z >= self.max_z)].tolist()
                raise ValueError("atomic numbers must lie in [1, " + str(self.max_z - 1) + "] (max_z = "
                                 + str(self.max_z) + "); got " + str(bad[:10])
                                 + ". Use a model trained with a larger max_z, or check the input.")
        problem = nonfinite_positions_problem(pos)
        if problem != "":
            raise ValueError(problem)
        if batch is not None:
            if batch.dim() != 1 or batch.shape[0] != z.shape[0] or batch.dtype != torch.long:
                raise ValueError("batch must be an int64 tensor of shape [N] = [" + str(z.shape[0])
                                 + "]; got dtype " + str(batch.dtype) + " and shape " + str(list(batch.shape)) + ".")
            if batch.shape[0] > 0 and (bool((batch < 0).any()) or bool((batch[1:] < batch[:-1]).any())):
                raise ValueError("batch must be non-negative and sorted (atoms of each molecule contiguous).")
        if box is not None:
            problem = box_problem(box, self.cutoff_upper)
            if problem != "":
                raise ValueError(problem)
        if total_charge is not None:
            if total_charge.dim() != 1:
                raise ValueError("total_charge must be a 1-D tensor with one value per molecule; got shape "
                                 + str(list(total_charge.shape)) + ".")

    def _failed_output(self, pos: Tensor, batch: Optional[Tensor], compute_forces: bool) -> TensorNetOutput:
        """All-NaN results for an evaluation stopped by a deferred error (see ``defer_errors``)."""
        num_molecules = 1
        if batch is not None and pos.shape[0] > 0:
            num_molecules = int(batch.max()) + 1
        nan = float("nan")
        energy = torch.full((num_molecules,), nan, dtype=pos.dtype, device=pos.device)
        atom_energy = torch.full((pos.shape[0],), nan, dtype=pos.dtype, device=pos.device)
        forces: Optional[Tensor] = None
        if compute_forces:
            forces = torch.full_like(pos, nan)
        return TensorNetOutput(energy, atom_energy, forces, None, None, None)

    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        box: Optional[Tensor] = None,
        total_charge: Optional[Tensor] = None,
        compute_forces: bool = False,
    ) -> TensorNetOutput:
        """Evaluate the model.

        Parameters
        ----------
        z : Tensor [N] int64
            Atomic numbers.
        pos : Tensor [N, 3]
            Positions in ``length_unit`` (Å by default), in the model's dtype.
        batch : Tensor [N] int64, optional
            Molecule index of each atom (sorted); all atoms are one molecule when omitted.
        box : Tensor [3, 3], optional
            Periodic box vectors as rows, OpenMM's reduced triclinic form, same length unit.
        total_charge : Tensor [M], optional
            Total charge of each molecule (e); zero when omitted.
        compute_forces : bool
            Also return ``forces = -dE/dpos``.
        """
        if self.defer_errors:
            problem = nonfinite_positions_problem(pos)
            if problem == "" and box is not None:
                problem = box_problem(box, self.cutoff_upper)
            if problem != "":
                self.error = problem
                return self._failed_output(pos, batch, compute_forces)
        elif self.check_inputs:
            self._validate(z, pos, batch, box, total_charge)
        num_atoms = z.shape[0]
        if batch is None:
            batch = torch.zeros(num_atoms, dtype=torch.long, device=z.device)
        num_molecules = int(batch.max()) + 1 if num_atoms > 0 else 1
        if total_charge is None:
            total_charge = torch.zeros(num_molecules, dtype=pos.dtype, device=pos.device)
        elif total_charge.shape[0] != num_molecules:
            raise ValueError("total_charge has " + str(total_charge.shape[0]) + " values but the batch holds "
                             + str(num_molecules) + " molecules.")
        total_charge = total_charge.to(pos.dtype)
        if compute_forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)

        means, betas = self.rbf.basis_tensors()
        plan = self.plan(pos, means)
        # The inputs were checked above (check_inputs, or defer_errors' checks): the neighbour list does not again.
        raw_pairs, pairs, vectors, distances, overflow = self._pairs(pos, box, batch, plan.compiled)
        if self.error != "":
            return self._failed_output(pos, batch, compute_forces)
        if (self.check_inputs or self.defer_errors) and bool((distances == 0).any()):
            overlap: List[int] = pairs[:, distances == 0][:, 0].sort().values.tolist()
            message = ("atoms " + str(overlap[0]) + " and " + str(overlap[1]) + " are at the same position "
                       + "(or periodic image); TensorNet needs distinct positions. Check the input structure.")
            if not self.defer_errors:
                raise ValueError(message)
            self.error = message
            return self._failed_output(pos, batch, compute_forces)
        frozen = plan.frozen_atoms
        if frozen and not torch.equal(z, self.frozen_z):
            message = ("this model was frozen for inference on other atoms (freeze_for_inference); evaluate the "
                       "atoms it was frozen for, or use an unfrozen copy of the model.")
            if not self.defer_errors:
                raise ValueError(message)
            self.error = message
            return self._failed_output(pos, batch, compute_forces)
        index = pair_index(raw_pairs, num_atoms, plan.compiled)
        # TensorNet's graph includes a self-loop per atom (distance 0, zero vector); every layer handles it per atom.
        zero = torch.zeros(1, dtype=pos.dtype, device=pos.device)
        if plan.fused_geometry:
            # One compiled pass (CPU inference): radial basis, cutoff and edge components of every pair.
            rbf, cutoff, edge, _, _ = torch.ops.openmm_tensornet.pair_geometry(
                vectors, distances, means, betas, self.cutoff_lower, self.cutoff_upper, self.rbf.rbf_type)
            if frozen and self.charge_channels == 0:  # the self-loop terms are inference constants (not with charges)
                rbf_zero, cutoff_zero = zero, zero
            else:
                rbf_zero, cutoff_zero, _, _, _ = torch.ops.openmm_tensornet.pair_geometry(
                    torch.zeros(1, 3, dtype=pos.dtype, device=pos.device), zero, means, betas, self.cutoff_lower,
                    self.cutoff_upper, self.rbf.rbf_type)
        else:
            edge = edge_components(unit_vectors(vectors, distances))  # [P, 9], direction first <- second
            rbf = self.rbf(distances)
            cutoff = self.cutoff(distances)  # the same cosine cutoff in the embedding and every layer
            rbf_zero = self.rbf(zero)
            cutoff_zero = self.cutoff(zero)
        features = self.embedding(z, pairs, index, cutoff, edge, rbf, rbf_zero, cutoff_zero, plan)
        predicted: List[Tensor] = []
        embedding_charges = self.embedding_charges
        if embedding_charges is not None:
            charge_factor = torch.ones_like(pos[:, 0])
            predicted.append(embedding_charges(features, batch, total_charge, num_molecules))
            for layer, predictor in zip(self.layers, self.layer_charges):
                features = layer(features, pairs, index, cutoff, rbf, rbf_zero, cutoff_zero, charge_factor, plan,
                                 predicted[-1])
                predicted.append(predictor(features, batch, total_charge, num_molecules))
        else:
            charge_factor = 1.0 + 0.1 * total_charge[batch]
            for layer in self.layers:
                features = layer(features, pairs, index, cutoff, rbf, rbf_zero, cutoff_zero, charge_factor, plan)

        norm, linear, eps = self.readout_norm, self.readout_linear, self.readout_norm.eps
        if plan.constant_weights:
            scalars = torch.ops.openmm_tensornet.invariant_readout(features, norm.weight, norm.bias, eps,
                                                                   linear.weight, linear.bias, self.activation)
        else:
            scalars = invariant_readout_reference(features, norm.weight, norm.bias, eps, linear.weight, linear.bias,
                                                  self.activation)
        if num_molecules == 1:  # the common case in MD; plain sums (torch.compile's CPU scatter can fail here)
            counts = torch.full((1,), float(num_atoms), dtype=pos.dtype, device=pos.device)
        else:
            counts = scatter_sum(torch.ones_like(total_charge[batch]), batch, num_molecules)
        atom_energy = self.energy_head(scalars).squeeze(-1)
        charges: Optional[Tensor] = None
        coulomb = self.coulomb
        if len(predicted) > 0:
            channels = torch.cat(predicted, dim=-1)  # [N, (num_layers + 1) q]
            if coulomb is not None:
                atom_energy = atom_energy + coulomb(channels, pos, box, batch)
                charges = coulomb.atomic_charges(channels)
            else:
                charges = channels.mean(-1)
        repulsion = self.repulsion
        if repulsion is not None:
            atom_energy = atom_energy + repulsion(z, pairs, distances, raw_pairs[0] >= 0)
        atom_energy = atom_energy * self.energy_std
        if frozen and num_molecules == 1:  # atomref[z] + energy_mean / N is an inference constant
            atom_energy = atom_energy + self.frozen_offset
        else:
            atom_energy = atom_energy + self.atomref[z] + (self.energy_mean / counts)[batch]
        zbl_prior = self.zbl_prior  # (one at a time: TorchScript cannot put modules into a tuple)
        d2_prior = self.d2_prior
        if zbl_prior is not None:  # torchmd-net adds its priors after the standardisation
            atom_energy = atom_energy + zbl_prior(z, pos, box, batch)
        if d2_prior is not None:
            atom_energy = atom_energy + d2_prior(z, pos, box, batch)
        if num_molecules == 1:
            energy = atom_energy.sum().unsqueeze(0)
        else:
            energy = scatter_sum(atom_energy, batch, num_molecules)
        if overflow is not None:  # static shapes on CUDA: no host check possible, so poison the result
            energy = energy + torch.where(overflow, float("nan"), 0.0).to(energy.dtype)

        dipole: Optional[Tensor] = None
        polarizability: Optional[Tensor] = None
        dipole_head = self.dipole
        polarizability_head = self.polarizability
        if dipole_head is not None or polarizability_head is not None:
            if dipole_head is not None:
                outputs = dipole_head(scalars, skew_vector(features), pos, batch, counts, self.masses[z], total_charge)
                charges, dipole = outputs[0], outputs[1]
            if polarizability_head is not None:
                sym = symmetric_matrix(features, self.basis_matrix)
                polarizability = polarizability_head(scalars, sym, batch, num_molecules)

        forces: Optional[Tensor] = None
        if compute_forces:
            grad_outputs: List[Optional[Tensor]] = [torch.ones_like(energy)]
            gradient = torch.autograd.grad(
                [energy], [pos], grad_outputs=grad_outputs, create_graph=self.training, allow_unused=True
            )[0]
            forces = -gradient if gradient is not None else torch.zeros_like(pos)
        return TensorNetOutput(energy, atom_energy, forces, charges, dipole, polarizability)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
