"""Training TensorNet on reference data: ``train(TrainingConfig(...))`` and ``openmm-tensornet train CONFIG.yaml``.

Loss: ``energy_weight * MSE(energy per atom) + forces_weight * MSE(force components)`` (+ dipole, polarisability
when their weights are set and the data has them), in eV and Å. Per-element reference energies (atomrefs) are fitted
by least squares on the training split and the model's output scale is the RMS training force, so training starts
from a sensible baseline. AdamW, linear learning-rate warm-up, reduce-on-plateau (then, with ``anneal_epochs``, a
cosine down to ``min_lr`` over the last epochs; it may be set or changed on resume to plan a run's end), an
exponential moving average (EMA) of the weights (validated, saved and used for the final model), early stopping,
gradient clipping, a split by molecule, float32 or float64, resume from ``<output>/last.ckpt`` (bit-for-bit: the
same state as an uninterrupted run), ``init_from`` a checkpoint's weights (a warm restart or fine-tuning), a
progress bar, and at the end ``metrics.md``, ``history.csv`` and ``learning_curve.png``.

``device`` "auto" trains on a GPU when torch sees one. Under ``torchrun`` (``torchrun --nproc_per_node K
-m openmm_tensornet.app.cli train config.yaml``, one process per GPU, or several nodes) the run is data-parallel: each
process takes its share of every global batch of ``batch_size`` and the gradients are summed (NCCL on GPUs, gloo
on CPUs), which gives the same result as one process (see :mod:`openmm_tensornet.training.distributed`).

The output ``<output>/model.pt`` is an ordinary checkpoint (:func:`openmm_tensornet.save_model`): hyper-parameters
and units included, ready for :class:`TensorNetPotential` and the OpenMM export.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..io.checkpoint import save_model
from ..io.data import Molecule, read_dataset, split_by_molecule
from ..nn.model import TensorNet
from .distributed import World, resolve_device, world_from_environment

TRAINING_STATE_VERSION = 1


@dataclass
class TrainingConfig:
    """Everything a training run needs (``openmm-tensornet train`` reads it from YAML with the same keys)."""

    data: Union[str, List[str]]  # a directory of shards, a shard, an extended-XYZ file, or a list of those
    output: str = "training"
    model: Dict[str, Any] = field(default_factory=lambda: dict(hidden_channels=64, num_layers=2, num_rbf=32,
                                                               cutoff_upper=5.0))
    dtype: str = "float32"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_lr: float = 1e-6
    anneal_epochs: Optional[int] = None
    ema_decay: float = 0.99
    early_stopping_patience: int = 25
    gradient_clip: float = 10.0
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    dipole_weight: float = 0.0
    polarizability_weight: float = 0.0
    split: Tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: str = "molecule"
    seed: int = 0
    resume: bool = True
    progress: bool = True
    max_minutes: Optional[float] = None
    records_per_epoch: Optional[int] = None
    max_force: Optional[float] = None
    validation_records: Optional[int] = None
    threads: Optional[int] = None
    device: str = "auto"
    init_from: Optional[str] = None
    held_out: Optional[str] = None

    @classmethod
    def from_yaml(cls, path) -> "TrainingConfig":
        import yaml

        with open(path) as handle:
            values = yaml.safe_load(handle) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a training configuration is a mapping of keys to values.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known keys: {sorted(known)}.")
        if "data" not in values:
            raise ValueError(f"{path}: 'data' (the data set directory or file, or a list of them) is required.")
        base = Path(path).parent
        data = values["data"]
        if not isinstance(data, (str, list)) or isinstance(data, list) and (
                not data or not all(isinstance(part, str) for part in data)):
            raise ValueError(f"{path}: 'data' is a directory or file, or a non-empty list of them; got {data!r}.")
        values["data"] = [str(base / part) for part in data] if isinstance(data, list) else str(base / data)
        for key in ("output", "init_from", "held_out"):
            if key in values and not Path(values[key]).is_absolute() and not (key == "init_from"
                                                                              and values[key] == "default"):
                values[key] = str(base / values[key])
        if "split" in values:
            values["split"] = tuple(values["split"])
        return cls(**values)

    def check(self) -> None:
        if self.split_by not in ("molecule", "record"):
            raise ValueError(f"split_by must be 'molecule' or 'record'; got {self.split_by!r}.")
        if len(self.split) != 3 or min(self.split) < 0 or self.split[0] <= 0 or self.split[1] <= 0:
            raise ValueError(f"split must be three fractions (train, validation, test) with train and validation "
                             f"> 0; got {self.split}.")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.anneal_epochs is not None and not 1 <= self.anneal_epochs <= self.epochs:
            raise ValueError(f"anneal_epochs must be between 1 and epochs ({self.epochs}) or left out; got "
                             f"{self.anneal_epochs}.")
        if self.max_force is not None and not self.max_force > 0:
            raise ValueError(f"max_force must be > 0 (data units, e.g. eV/Å) or left out; got {self.max_force}.")
        for name in ("records_per_epoch", "validation_records"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or left out (null: the whole set); got {getattr(self, name)}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1); got {self.ema_decay}.")
        if self.held_out is not None and self.split_by != "molecule":
            raise ValueError("held_out names whole molecules: it needs split_by: molecule.")


@dataclass
class Record:
    molecule: int
    index: int


class Batches:
    """Collates records of (possibly different) molecules into one batched graph."""

    def __init__(self, molecules: Sequence[Molecule], records: Sequence[Record], dtype: torch.dtype):
        self.molecules, self.records, self.dtype = molecules, list(records), dtype

    def __len__(self) -> int:
        return len(self.records)

    def collate(self, chosen: Sequence[Record]) -> Dict[str, torch.Tensor]:
        z, pos, batch, energy, forces, charge, dipole, polar = [], [], [], [], [], [], [], []
        for k, record in enumerate(chosen):
            molecule = self.molecules[record.molecule]
            z.append(torch.as_tensor(molecule.z))
            pos.append(torch.as_tensor(molecule.positions[record.index]))
            batch.append(torch.full((len(molecule.z),), k, dtype=torch.long))
            energy.append(float(molecule.energy[record.index]))
            forces.append(torch.as_tensor(molecule.forces[record.index]))
            charge.append(float(molecule.charge))
            if molecule.dipole is not None:
                dipole.append(torch.as_tensor(molecule.dipole[record.index]))
            polarizability = getattr(molecule, "polarizability", None)
            if polarizability is not None:
                polar.append(torch.as_tensor(polarizability[record.index]))
        out = dict(z=torch.cat(z), pos=torch.cat(pos).to(self.dtype), batch=torch.cat(batch),
                   energy=torch.tensor(energy, dtype=self.dtype), forces=torch.cat(forces).to(self.dtype),
                   charge=torch.tensor(charge, dtype=self.dtype))
        if len(dipole) == len(chosen):
            out["dipole"] = torch.stack(dipole).to(self.dtype)
        if len(polar) == len(chosen):
            out["polarizability"] = torch.stack(polar).to(self.dtype)
        return out

    def epoch_records(self, batch_size: int, generator: Optional[torch.Generator], order: Optional[List[int]] = None):
        """The records of each batch: in ``order`` (indices), else shuffled by ``generator``, else in order."""
        if order is None:
            order = torch.randperm(len(self.records), generator=generator).tolist() if generator is not None \
                else list(range(len(self.records)))
        for start in range(0, len(order), batch_size):
            yield [self.records[i] for i in order[start:start + batch_size]]

    def epoch(self, batch_size: int, generator: Optional[torch.Generator], device: Optional[torch.device] = None):
        for chosen in self.epoch_records(batch_size, generator):
            yield to_device(self.collate(chosen), device)

    def totals(self, chosen: Sequence[Record]) -> Dict[str, float]:
        """The counts a batch's loss is normalised by (molecules, force components), from the records alone."""
        atoms = sum(len(self.molecules[record.molecule].z) for record in chosen)
        return dict(molecules=float(len(chosen)), components=3.0 * atoms)


def to_device(batch: Dict[str, torch.Tensor], device: Optional[torch.device]) -> Dict[str, torch.Tensor]:
    """A batch on ``device`` (pinned and copied asynchronously to a GPU, so the copy overlaps the GPU's work)."""
    if device is None or device.type == "cpu":
        return batch
    return {key: value.pin_memory().to(device, non_blocking=True) for key, value in batch.items()}


def _records(molecules: Sequence[Molecule], indices: Sequence[int]) -> List[Record]:
    return [Record(m, r) for m in indices for r in range(len(molecules[m]))]


def read_held_out(path) -> Dict[str, List[str]]:
    """The validation and test molecule names of a ``held_out`` file: JSON ``{"validation": [...], "test": [...]}``."""
    try:
        with open(path) as handle:
            names = json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"held_out: {path} does not exist (a JSON file of validation and test molecule names)."
                         ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"held_out: {path} is not valid JSON ({error}).") from None
    if (not isinstance(names, dict) or set(names) != {"validation", "test"}
            or not all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in names.values())):
        raise ValueError(f'held_out: {path} must hold {{"validation": [names], "test": [names]}} and nothing else.')
    both = set(names["validation"]) & set(names["test"])
    if both:
        raise ValueError(f"held_out: {path} lists {len(both)} names under both validation and test, e.g. "
                         f"{sorted(both)[:3]}.")
    return names


def _first_reads(molecules: Sequence[Molecule]) -> List[int]:
    """For each molecule, the position of the first one read from the same file (itself when it is the first or
    has no source): a data place listed several times in ``data`` (to weight it) reads the same molecules again.
    A shard is the same file however its path is spelled (``..``, symbolic links); the same molecule object passed
    twice counts too. Without repeats every molecule is its own first read and the split is as it always was."""
    first: Dict[Any, int] = {}
    keys = [os.path.realpath(m.source) if m.source and os.path.exists(m.source) else m.source or id(m)
            for m in molecules]
    return [first.setdefault(key, k) for k, key in enumerate(keys)]


def split_records(molecules: List[Molecule], config: TrainingConfig):
    """Train/validation/test records: whole molecules (default) or single records per split. With ``held_out``
    the validation and test molecules are the ones that file names and every other molecule trains, so a data set
    that grows (or a fine-tuning set drawn from the same molecules) keeps its held-out molecules unseen.

    A place listed several times in ``data`` weights its records in training only: the split is drawn over the
    first reads, a repeat trains where its first read trains, and validation and test hold each record once."""
    first = _first_reads(molecules)
    unique = [k for k in range(len(molecules)) if first[k] == k]
    if config.held_out is not None:
        names = read_held_out(config.held_out)
        which = {name: 1 for name in names["validation"]}
        which.update({name: 2 for name in names["test"]})
        part_of = {k: which.get(molecules[k].name, 0) for k in unique}
    elif config.split_by == "molecule":
        drawn = split_by_molecule([molecules[k] for k in unique], config.split, config.seed)
        where = {id(m): p for p, part in enumerate(drawn) for m in part}
        part_of = {k: where[id(molecules[k])] for k in unique}
    else:
        everything = _records(molecules, unique)
        order = np.random.default_rng(config.seed).permutation(len(everything))
        total = float(sum(config.split))
        cut = int(round(config.split[0] / total * len(everything)))
        second = cut + max(1, int(round(config.split[1] / total * len(everything))))
        parts = [[everything[i] for i in order[a:b]] for a, b in ((0, cut), (cut, second), (second, len(order)))]
        repeats = [k for k in range(len(molecules)) if first[k] != k]
        trained = {(r.molecule, r.index) for r in parts[0]}
        parts[0] += [Record(k, r) for k in repeats for r in range(len(molecules[k])) if (first[k], r) in trained]
        return parts
    parts = [[], [], []]
    for k in range(len(molecules)):
        p = part_of[first[k]]
        if p == 0 or first[k] == k:
            parts[p].append(k)
    return [_records(molecules, part) for part in parts]


def epoch_order(count: int, epoch: int, seed: int, records_per_epoch: Optional[int] = None) -> List[int]:
    """The training records (indices) of ``epoch``. The records are drawn as a stream of passes through the set,
    each pass a fresh permutation seeded by ``seed`` and its number; an epoch is the whole of one pass, or with
    ``records_per_epoch`` the next that many records of the stream (so a big set is validated and checkpointed
    more often than once per pass, and resuming stays exact)."""
    size = records_per_epoch or count
    order: List[int] = []
    while len(order) < size:
        number, offset = divmod(epoch * size + len(order), count)
        permutation = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100003 + number))
        order.extend(permutation[offset:offset + size - len(order)].tolist())
    return order


def within_max_force(molecules: Sequence[Molecule], records: Sequence[Record], max_force: Optional[float]
                     ) -> Tuple[List[Record], List[Record]]:
    """(kept, left out): the records whose largest force component is at most ``max_force`` (data units), and the
    others (clashing atoms, failed labels); everything is kept without a limit."""
    if max_force is None:
        return list(records), []
    kept, dropped = [], []
    for record in records:
        largest = float(np.abs(molecules[record.molecule].forces[record.index]).max())
        (kept if largest <= max_force else dropped).append(record)
    return kept, dropped


def validation_subset(molecules: Sequence[Molecule], records: Sequence[Record], limit: Optional[int],
                      seed: int) -> List[Record]:
    """At most about ``limit`` validation records, as whole molecules (drawn with ``seed``) so the
    conformational energy error keeps its meaning; all of them without a limit."""
    if not limit or len(records) <= limit:
        return list(records)
    by_molecule: Dict[int, List[Record]] = {}
    for record in records:
        by_molecule.setdefault(record.molecule, []).append(record)
    chosen: List[Record] = []
    for molecule in np.random.default_rng(seed).permutation(sorted(by_molecule)):
        if chosen and len(chosen) + len(by_molecule[int(molecule)]) > limit:
            break
        chosen.extend(by_molecule[int(molecule)])
    return chosen


def fit_atomrefs(molecules: Sequence[Molecule], records: Sequence[Record], max_z: int) -> torch.Tensor:
    """Per-element energies (eV) minimising the squared error of sum_i ref[Z_i] against the energies."""
    elements = sorted({int(z) for r in records for z in molecules[r.molecule].z})
    column = {z: k for k, z in enumerate(elements)}
    counts = np.zeros((len(records), len(elements)))
    energies = np.zeros(len(records))
    for row, record in enumerate(records):
        molecule = molecules[record.molecule]
        for z in molecule.z:
            counts[row, column[int(z)]] += 1
        energies[row] = molecule.energy[record.index]
    # Minimum-norm least squares: elements that always occur together (e.g. water only) still get finite values.
    solution = np.linalg.lstsq(counts, energies, rcond=None)[0]
    refs = torch.zeros(max_z, dtype=torch.float64)
    for z, k in column.items():
        refs[z] = solution[k]
    return refs


class TensorNetRecipe:
    """How :func:`train` builds, evaluates, saves and loads the model. The torchmd-net comparison
    (``benchmarks/training_vs_torchmdnet.py``) plugs in torchmd-net's TensorNet through the same four methods."""

    def build(self, hyper: Dict[str, Any], atomrefs: torch.Tensor, scale: float) -> torch.nn.Module:
        model = TensorNet(**hyper)
        with torch.no_grad():
            # Start exactly at the atomref baseline: the energy head's last layer begins at zero.
            last = [m for m in model.energy_head.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
            model.atomref.copy_(atomrefs[: model.max_z].to(model.atomref.dtype))
            model.energy_std.fill_(scale)
        return model

    def evaluate(self, model: torch.nn.Module, batch: Dict[str, torch.Tensor]):
        return model(batch["z"], batch["pos"], batch["batch"], None, batch["charge"], compute_forces=True)

    def save(self, model: torch.nn.Module, path: Path) -> None:
        save_model(_export(model), path)

    def load(self, path: Path) -> torch.nn.Module:
        from ..io.checkpoint import load_model

        return load_model(path)


_RECIPE = TensorNetRecipe()


def _counts(batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.bincount(batch["batch"], minlength=batch["energy"].shape[0]).to(batch["energy"].dtype)


def loss_terms(model, batch: Dict[str, torch.Tensor], config: TrainingConfig,
               recipe: TensorNetRecipe = _RECIPE, totals: Optional[Dict[str, float]] = None) -> Dict[str, torch.Tensor]:
    """The weighted loss of ``batch`` and its terms: mean squared errors, or with ``totals`` (the counts of the
    global batch this one is a share of, see :meth:`Batches.totals`) sums divided by those counts, so that the
    shares of all processes add up to the global batch's loss."""
    return _loss_of(recipe.evaluate(model, batch), batch, config, totals)


def _loss_of(out, batch: Dict[str, torch.Tensor], config: TrainingConfig,
             totals: Optional[Dict[str, float]] = None) -> Dict[str, torch.Tensor]:
    per_atom = (out.energy - batch["energy"]) / _counts(batch)
    molecules = float(per_atom.shape[0]) if totals is None else totals["molecules"]
    components = float(batch["forces"].numel()) if totals is None else totals["components"]
    terms = {"energy": (per_atom**2).sum() / molecules,
             "forces": ((out.forces - batch["forces"]) ** 2).sum() / components}
    if config.dipole_weight > 0 and out.dipole is not None and "dipole" in batch:
        terms["dipole"] = ((out.dipole - batch["dipole"]) ** 2).sum() / (3.0 * molecules)
    if config.polarizability_weight > 0 and out.polarizability is not None and "polarizability" in batch:
        terms["polarizability"] = ((out.polarizability - batch["polarizability"]) ** 2).sum() / (9.0 * molecules)
    terms["loss"] = sum(_weight(config, k) * v for k, v in terms.items())
    return terms


def _weight(config: TrainingConfig, term: str) -> float:
    """The loss weight of ``term`` (``energy_weight``, ``forces_weight``, ...)."""
    return getattr(config, f"{term}_weight")


def evaluate_errors(model, data: Batches, batch_size: int = 32, recipe: TensorNetRecipe = _RECIPE,
                    config: Optional[TrainingConfig] = None) -> Dict[str, float]:
    """Mean absolute errors: energy per atom (meV/atom), energy per molecule (meV), conformational energy per atom
    (meV/atom: each molecule's mean error removed, what MD and relative energies feel), forces (meV/Å), dipole (e·Å).
    With ``config``, also the training loss over the whole set (``"loss"``), from the same pass.
    """
    sums: Dict[str, float] = {}
    totals = dict(energy_per_atom=0.0, energy=0.0, forces=0.0, dipole=0.0)
    counts = dict(molecules=0, components=0, dipoles=0)
    signed: Dict[int, List[float]] = {}
    sizes: Dict[int, int] = {}
    was_training = model.training
    model.eval()
    position = 0
    device = next(model.parameters()).device
    for batch in data.epoch(batch_size, None, device):
        out = recipe.evaluate(model, batch)
        if config is not None:  # each term as a sum (counts of 1), normalised by the whole set's counts below
            for name, value in _loss_of(out, batch, config, dict(molecules=1.0, components=1.0)).items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        difference = (out.energy - batch["energy"]).detach()
        for k, value in enumerate(difference.tolist()):
            molecule = data.records[position + k].molecule
            signed.setdefault(molecule, []).append(value)
            sizes[molecule] = len(data.molecules[molecule].z)
        position += int(difference.shape[0])
        error = difference.abs()
        totals["energy"] += float(error.sum()) * 1000
        totals["energy_per_atom"] += float((error / _counts(batch)).sum()) * 1000
        totals["forces"] += float((out.forces - batch["forces"]).detach().abs().sum()) * 1000
        counts["molecules"] += int(error.shape[0])
        counts["components"] += int(batch["forces"].numel())
        if out.dipole is not None and "dipole" in batch:
            totals["dipole"] += float((out.dipole - batch["dipole"]).detach().abs().sum())
            counts["dipoles"] += int(batch["dipole"].numel())
    model.train(was_training)
    conformational = [abs(v - np.mean(values)) / sizes[m] for m, values in signed.items() for v in values]
    result = {"energy_per_atom_mae_meV": totals["energy_per_atom"] / max(counts["molecules"], 1),
              "energy_mae_meV": totals["energy"] / max(counts["molecules"], 1),
              "conformational_energy_mae_meV_per_atom": 1000 * float(np.mean(conformational)) if conformational
              else 0.0,
              "forces_mae_meV_per_A": totals["forces"] / max(counts["components"], 1)}
    if counts["dipoles"]:
        result["dipole_mae_eA"] = totals["dipole"] / counts["dipoles"]
    if config is not None:
        sums.pop("loss", None)
        result["loss"] = sum(_weight(config, name) * value / max(counts["components" if name == "forces" else
                                                                        "molecules"], 1)
                             for name, value in sums.items())
    return result


@dataclass
class TrainingResult:
    model: TensorNet
    history: List[Dict[str, float]]
    test: Dict[str, float]
    output: Path
    epochs_run: int
    stopped: str


def train(config: TrainingConfig, molecules: Optional[List[Molecule]] = None,
          recipe: Optional[TensorNetRecipe] = None) -> TrainingResult:
    """Train a model as ``config`` says; returns the best (EMA) model and the metrics, and writes ``config.output``.

    ``molecules``: already loaded data (default: read ``config.data``). ``recipe``: another model behind the same
    loop (see :class:`TensorNetRecipe`)."""
    recipe = recipe or _RECIPE
    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    world = world_from_environment(device)
    if not world.main:  # one progress report, from process 0
        config = replace(config, progress=False)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    molecules = read_dataset(config.data) if molecules is None else molecules
    train_records, val_records, test_records = split_records(molecules, config)
    left_out = []
    if config.max_force is not None:
        (train_records, a), (val_records, b), (test_records, c) = (
            within_max_force(molecules, r, config.max_force) for r in (train_records, val_records, test_records))
        left_out = a + b + c
        if left_out:
            names = sorted({molecules[r.molecule].name for r in left_out})
            _say(config, f"left out {len(left_out)} records with a force component above max_force "
                         f"{config.max_force} (train/validation/test {len(a)}/{len(b)}/{len(c)}), of {len(names)} "
                         f"molecules: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    if config.held_out is not None and not (train_records and val_records):
        raise ValueError(f"held_out {config.held_out}: the data set ({len(molecules)} molecules) has "
                         f"{'no validation molecule of that file' if train_records else 'no molecule outside it'}; "
                         "the file's names are the data's molecule names (a shard's 'name').")
    if not train_records or not val_records:
        raise ValueError(f"the data set ({len(molecules)} molecules) is too small for a split by {config.split_by} "
                         "into non-empty training and validation sets; add molecules or use split_by: record.")
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    val_records = validation_subset(molecules, val_records, config.validation_records, config.seed)
    training, validation, test = (Batches(molecules, r, dtype) for r in (train_records, val_records, test_records))

    torch.manual_seed(config.seed)
    hyper = dict(config.model)
    hyper["dtype"] = config.dtype
    hyper.setdefault("dipole_head", config.dipole_weight > 0)
    hyper.setdefault("polarizability_head", config.polarizability_weight > 0)
    hyper.setdefault("elements", sorted({int(z) for m in molecules for z in m.z}))
    _check_elements(molecules, int(hyper.get("max_z", 128)))
    rms_force = math.sqrt(float(np.mean([np.mean(molecules[r.molecule].forces[r.index] ** 2)
                                         for r in train_records])))
    atomrefs = fit_atomrefs(molecules, train_records, int(hyper.get("max_z", 128)))
    model = recipe.build(hyper, atomrefs, max(rms_force, 1e-3)).to(device)
    last = output / "last.ckpt"
    resuming = config.resume and last.exists()
    if config.init_from is not None and not resuming:  # a resumed run takes its weights from last.ckpt
        from ..io.checkpoint import DEFAULT_MODEL

        start = DEFAULT_MODEL if config.init_from == "default" else Path(config.init_from)
        _start_from(model, start, atomrefs, recipe, config)
    model.train()
    ema = copy.deepcopy(model)
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.plateau_factor,
                                                         patience=config.plateau_patience, min_lr=config.min_lr)
    state = dict(epoch=0, step=0, best=math.inf, best_epoch=-1, since_best=0, history=[])
    if resuming:
        saved = torch.load(last, weights_only=False, map_location=device)
        if saved.get("version") != TRAINING_STATE_VERSION:
            raise ValueError(f"{last} was written by another version of the trainer; delete it or set resume: false.")
        if saved["config"] != _comparable(config):
            raise ValueError(f"{last} belongs to a run with another configuration; use another output directory "
                             "or set resume: false.")
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        plateau.load_state_dict(saved["plateau"])
        state = saved["state"]
        torch.set_rng_state(saved["torch_rng"].cpu())
        _say(config, f"resumed from {last} after epoch {state['epoch']}")
    world.barrier()  # every process has read last.ckpt before the first one rewrites it

    started = time.time()
    stopped = "epochs"
    progress = _progress(config)
    while state["epoch"] < config.epochs:
        epoch = state["epoch"]
        order = epoch_order(len(training), epoch, config.seed, config.records_per_epoch)
        running, seen = 0.0, 0
        bar = progress(total=len(order), desc=f"epoch {epoch + 1}/{config.epochs}")
        anneal = _anneal_window(config, state, epoch, optimizer.param_groups[0]["lr"])
        annealing = anneal is not None
        steps_per_epoch = max(1, math.ceil(len(order) / config.batch_size))
        for batch_number, chosen in enumerate(training.epoch_records(config.batch_size, None, order)):
            warm = min(1.0, (state["step"] + 1) / max(config.warmup_steps, 1))
            if state["step"] < config.warmup_steps:
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * warm
            elif anneal is not None:
                done = epoch - anneal["begin"] + (batch_number + 1) / steps_per_epoch
                rate = annealed_lr(anneal["lr"], config.min_lr, done / (anneal["end"] - anneal["begin"]))
                for group in optimizer.param_groups:
                    group["lr"] = rate
            optimizer.zero_grad(set_to_none=True)
            loss = _backward_share(model, training, chosen, world, device, config, recipe)
            if config.gradient_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
            optimizer.step()
            state["step"] += 1
            _update_ema(ema, model, config.ema_decay, state["step"])
            size = len(chosen)
            running += loss * size
            seen += size
            bar.update(size)
            bar.set_postfix(loss=f"{running / seen:.4g}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        bar.close()
        metrics = evaluate_errors(ema, validation, recipe=recipe, config=config)
        val_loss = metrics.pop("loss")
        if state["step"] >= config.warmup_steps and not annealing:
            plateau.step(val_loss)
        row = dict(epoch=epoch + 1, train_loss=running / max(seen, 1), val_loss=val_loss,
                   lr=optimizer.param_groups[0]["lr"], **{f"val_{k}": v for k, v in metrics.items()})
        state["history"].append(row)
        improved = val_loss < state["best"]
        if improved:
            state.update(best=val_loss, best_epoch=epoch + 1, since_best=0)
            if world.main:
                recipe.save(ema, output / "model.pt")
        else:
            state["since_best"] += 1
        state["epoch"] = epoch + 1
        _say(config, f"epoch {epoch + 1}: train loss {row['train_loss']:.4g}, val loss {val_loss:.4g}, val forces "
                     f"MAE {metrics['forces_mae_meV_per_A']:.1f} meV/Å, energy MAE "
                     f"{metrics['energy_per_atom_mae_meV']:.2f} meV/atom{' (best)' if improved else ''}")
        if world.main:
            torch.save(dict(version=TRAINING_STATE_VERSION, config=_comparable(config), model=model.state_dict(),
                            ema=ema.state_dict(), optimizer=optimizer.state_dict(), plateau=plateau.state_dict(),
                            state=state, torch_rng=torch.get_rng_state()), last)
        if state["since_best"] >= config.early_stopping_patience:
            stopped = f"early stopping (no improvement for {config.early_stopping_patience} epochs)"
            break
        if config.max_minutes is not None and time.time() - started > 60 * config.max_minutes:
            stopped = f"time limit ({config.max_minutes} min)"
            break

    world.barrier()  # model.pt is written
    best = recipe.load(output / "model.pt")
    test_metrics = evaluate_errors(best, test, recipe=recipe) if len(test) else {}
    if world.main:
        _write_reports(output, state["history"], test_metrics, config, stopped, molecules, train_records,
                       val_records, test_records, len(left_out))
    return TrainingResult(best, state["history"], test_metrics, output, state["epoch"], stopped)


def _backward_share(model, training: Batches, chosen: Sequence[Record], world: World, device: torch.device,
                    config: TrainingConfig, recipe: TensorNetRecipe) -> float:
    """Gradients of the global batch ``chosen`` summed over the processes (each backpropagates its share, with
    the loss normalised by the global counts); returns the global batch's loss."""
    mine = world.share(chosen)
    loss = 0.0
    if mine:
        terms = loss_terms(model, to_device(training.collate(mine), device), config, recipe, training.totals(chosen))
        terms["loss"].backward()
        loss = float(terms["loss"].detach())
    world.sum_gradients([parameter for parameter in model.parameters() if parameter.requires_grad])
    return world.sum(loss, device)


def _check_elements(molecules: Sequence[Molecule], max_z: int) -> None:
    for molecule in molecules:
        bad = sorted({int(z) for z in molecule.z if z >= max_z})
        if bad:
            raise ValueError(f"{molecule.source or molecule.name}: elements {bad} are beyond the model's max_z "
                             f"({max_z}); raise model.max_z.")


def _start_from(model: torch.nn.Module, path: Path, atomrefs: torch.Tensor, recipe: TensorNetRecipe,
                config: TrainingConfig) -> None:
    """``init_from``: the weights of the checkpoint at ``path`` (same architecture), with the per-element reference
    energies refitted on this data set, so that a warm restart on the same data starts exactly where the checkpoint
    left off and fine-tuning on another level of theory starts from its energy offsets."""
    if not path.exists():
        raise FileNotFoundError(f"init_from: {path} does not exist; give the model.pt (or torchmd-net .ckpt) to "
                                "start from.")
    start = recipe.load(path)
    units = (start.hparams.get("energy_unit"), start.hparams.get("length_unit"))
    if units != ("eV", "angstrom"):
        raise ValueError(f"init_from: {path} was trained in {units[0]} and {units[1]}, but training works in eV "
                         "and Å (its weights would give energies in the wrong unit); start from a model trained in "
                         "eV and Å, or from scratch.")
    ours, theirs = model.state_dict(), start.state_dict()
    differ = [f"{key}: {start.hparams.get(key)!r} there, {value!r} here" for key, value in model.hparams.items()
              if key not in ("elements", "dtype", "energy_unit", "length_unit") and start.hparams.get(key) != value]
    differ += [f"weights {key}" for key in sorted(set(ours) | set(theirs))
               if key not in ours or key not in theirs or ours[key].shape != theirs[key].shape][:3]
    if differ:
        raise ValueError(f"init_from: {path} has another architecture than this configuration's model ("
                         f"{'; '.join(differ)}); set model: to the checkpoint's hyper-parameters.")
    model.load_state_dict({key: value.to(ours[key].dtype) for key, value in theirs.items()})
    with torch.no_grad():
        model.atomref.copy_(atomrefs[: model.max_z].to(model.atomref.dtype))
        model.energy_mean.zero_()
    _say(config, f"started from the weights of {path}")


def _anneal_window(config: TrainingConfig, state: Dict[str, Any], epoch: int, lr: float) -> Optional[Dict[str, Any]]:
    """The cosine anneal that covers ``epoch`` (``None`` before it): from ``lr`` at its first epoch to ``min_lr`` at
    the end of the run. Kept in ``state``; when ``epochs`` or ``anneal_epochs`` change on resume it starts again from
    the current rate and epoch, so the rate never jumps."""
    if config.anneal_epochs is None or epoch < config.epochs - config.anneal_epochs:
        return None
    planned = [config.epochs - config.anneal_epochs, config.epochs]
    window = state.get("anneal")
    if window is None or window["planned"] != planned:
        window = dict(planned=planned, begin=max(planned[0], epoch), end=config.epochs, lr=lr)
        state["anneal"] = window
        _say(config, f"annealing the learning rate from {lr:.2e} to {config.min_lr:.2e} over epochs "
                     f"{window['begin'] + 1}-{window['end']}")
    return window


def annealed_lr(start: float, end: float, progress: float) -> float:
    """Cosine from ``start`` (``progress`` 0) to ``end`` (``progress`` 1 and beyond)."""
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _comparable(config: TrainingConfig) -> Dict[str, Any]:
    """The settings that define a run (what may change on resume: epochs, annealing, progress, time limit, threads)."""
    values = asdict(config)
    for key in ("epochs", "progress", "max_minutes", "threads", "resume", "output", "early_stopping_patience",
                "device", "anneal_epochs"):
        values.pop(key)
    values["split"] = list(values["split"])
    return values


def _update_ema(ema: TensorNet, model: TensorNet, decay: float, step: int) -> None:
    # Warm-started decay (as in common EMA practice) so that early averages are not dominated by the random init.
    rate = min(decay, (1.0 + step) / (10.0 + step)) if decay > 0 else 0.0
    with torch.no_grad():
        for target, source in zip(ema.parameters(), model.parameters()):
            target.mul_(rate).add_(source.detach(), alpha=1.0 - rate)
        for target, source in zip(ema.buffers(), model.buffers()):
            target.copy_(source)


def _export(ema: TensorNet) -> TensorNet:
    model = copy.deepcopy(ema).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _say(config: TrainingConfig, text: str) -> None:
    if config.progress:
        print(text, file=sys.stderr, flush=True)


def _progress(config: TrainingConfig):
    """A tqdm bar on a terminal; a line a minute otherwise (logs of nohup/batch runs see long epochs advance)."""
    if config.progress and sys.stderr.isatty():
        from tqdm import tqdm

        return lambda **kw: tqdm(unit="mol", leave=False, **kw)
    if config.progress:
        return lambda **kw: _LogBar(**kw)
    return lambda **kw: _NoBar()


class _LogBar:
    """Progress as plain lines on stderr, at most one per ``interval`` seconds: configurations done, rate, postfix."""

    def __init__(self, total: int, desc: str, interval: float = 60.0, clock=time.monotonic):
        self.total, self.desc, self.interval, self.clock = total, desc, interval, clock
        self.done, self.postfix = 0, ""
        self.started = self.last = clock()

    def update(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            print(f"{self.desc}: {self.done}/{self.total} configurations, {rate:.1f}/s, about "
                  f"{(self.total - self.done) / max(rate, 1e-9) / 60:.1f} min left{self.postfix}", file=sys.stderr,
                  flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = "".join(f", {key} {value}" for key, value in values.items())

    def close(self) -> None:
        pass


class _NoBar:
    def update(self, *_):
        pass

    def set_postfix(self, **_):
        pass

    def close(self):
        pass


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _write_reports(output: Path, history, test_metrics, config, stopped, molecules, train_r, val_r, test_r,
                   left_out: int = 0) -> None:
    if history:
        with open(output / "history.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[-1].keys()))
            writer.writeheader()
            writer.writerows(history)
    best = min(history, key=lambda row: row["val_loss"]) if history else {}
    data = ", ".join(config.data) if isinstance(config.data, list) else config.data
    lines = [f"# Training report ({output})", "",
             f"Data: {data} - {len(molecules)} molecules; records train/validation/test "
             f"{len(train_r)}/{len(val_r)}/{len(test_r)} (split by {config.split_by})"
             + (f"; {left_out} records left out (a force component above max_force {config.max_force})."
                if left_out else "."),
             f"Stopped by: {stopped}. Best epoch: {best.get('epoch', '-')} of {len(history)}.", "",
             "| set | energy MAE (meV/atom) | energy MAE (meV) | conformational energy MAE (meV/atom) | "
             "forces MAE (meV/Å) |", "|---|---|---|---|---|"]
    if best:
        lines.append(f"| validation (best epoch) | {best['val_energy_per_atom_mae_meV']:.2f} | "
                     f"{best['val_energy_mae_meV']:.1f} | {_number(best.get('val_conformational_energy_mae_meV_per_atom'))} | "
                     f"{best['val_forces_mae_meV_per_A']:.1f} |")
    if test_metrics:
        lines.append(f"| test | {test_metrics['energy_per_atom_mae_meV']:.2f} | {test_metrics['energy_mae_meV']:.1f} | "
                     f"{test_metrics['conformational_energy_mae_meV_per_atom']:.2f} | "
                     f"{test_metrics['forces_mae_meV_per_A']:.1f} |")
    (output / "metrics.md").write_text("\n".join(lines) + "\n")
    if history:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [row["epoch"] for row in history]
        figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        axes[0].semilogy(epochs, [row["train_loss"] for row in history], label="train")
        axes[0].semilogy(epochs, [row["val_loss"] for row in history], label="validation (EMA)")
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        axes[0].legend()
        axes[1].plot(epochs, [row["val_forces_mae_meV_per_A"] for row in history])
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("validation force MAE (meV/Å)")
        figure.tight_layout()
        figure.savefig(output / "learning_curve.png", dpi=100)
        plt.close(figure)
