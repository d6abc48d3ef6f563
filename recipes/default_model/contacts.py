"""Contact pulls for data_v3.py's set (issue 15): a group closing in on another while a proton moves over.

    python contacts.py [--per-shard 1] [--workers 2] [--output contacts]   (after data_v3.py; resumable)
    python contacts.py --pulled hydrogen [--cations] [--output protons]

Dopamine broke in vacuum MD when its ammonium folded over the ring: N and the ring carbon came from 3.08 to 2.48 Å
and a proton moved onto the carbon (breaks/README.md). Neither data_v3.py's transfers nor through_space.py's
(hydrogens moved between fixed heavy atoms) changed the model there. This script samples the path itself, for every
full shard of the set: ``--per-shard`` pulls (``datagen.pull_contact``, the same as ``generate-data --contacts``)
from the shard's own GFN2-xTB MD frames: a hydrogen's atom and a heavy atom three or more bonds away (or in the pair
partner) drawn together by a spring to 2.1-2.6 Å over 100 fs of GFN2-xTB MD at 300 K, ten frames labelled with
GFN2-xTB's own energy and forces, plus the hydrogen moved over at the end (unless the pull moved it already). They
go to ``OUTPUT/NAME.contacts.npz`` under the molecule's name, so the split by name keeps them with their molecule;
a training config lists the folder after data-v3 (``data: [data-v3, contacts]``, train_v6.yaml). Shards are done
in a fixed shuffled order, so an interrupted run has covered a random part of the set. About 2-4 s per pull for
20-40 atoms on one core (one pull per shard: about 50 min for the set on 2 cores).

``--pulled hydrogen``: the spring draws the hydrogen itself onto the acceptor (1.0-1.2 Å) while every heavy atom is
free, the proton transfer's whole path (``pull_contact(pulled="hydrogen")``); output ``OUTPUT/NAME.protons.npz``.
``--cations``: only the molecules and pairs of positive total charge (ammonium and other N-H+ protons).
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SUFFIXES = {"donor": ".contacts.npz", "hydrogen": ".protons.npz"}
OUTPUTS = {"donor": "contacts", "hydrogen": "protons"}
SEEDS = {"donor": 13, "hydrogen": 17}
SEED = SEEDS["donor"]  # the order the shards are done in, either kind


def _pull(job):
    from through_space import shard_md
    from openmm_tensornet.io.data import write_molecule
    from openmm_tensornet.training.datagen import pull_contact, records_molecule

    path, output, index, count, pulled = job
    source, frames, z, bonds, rng, xtb = shard_md(path, [SEEDS[pulled], index])
    records, failures, lost = [], 0, 0
    for _ in range(count):
        lost = pull_contact(xtb, frames, z, bonds, rng, records, pulled=pulled)
        if lost is None:
            break  # no candidate in any frame: nothing folds back
        failures += lost
    target = output / (path.name[:-len(".npz")] + SUFFIXES[pulled])
    if records:
        write_molecule(records_molecule(source.name, z, source.charge, records, source.method), target)
    elif lost is None:
        target.with_suffix(".none").touch()  # done, nothing to pull: not redone on resume
    return path.name, len(records), failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("DATA", HERE / "data-v3")))
    parser.add_argument("--output", type=Path, help="default: contacts (protons with --pulled hydrogen)")
    parser.add_argument("--per-shard", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pulled", choices=list(SUFFIXES), default="donor",
                        help="what the spring draws to the acceptor: the hydrogen's heavy atom (default) or the "
                             "hydrogen itself")
    parser.add_argument("--cations", action="store_true", help="only molecules and pairs of positive total charge")
    args = parser.parse_args()
    from through_space import full_shards

    output = args.output or HERE / OUTPUTS[args.pulled]
    output.mkdir(parents=True, exist_ok=True)

    def done(path: Path) -> bool:
        target = output / (path.name[:-len(".npz")] + SUFFIXES[args.pulled])
        return target.exists() or target.with_suffix(".none").exists()

    jobs = [(path, output, index, args.per_shard, args.pulled)
            for index, path in full_shards(args.data, done, np.random.default_rng(SEED).permutation,
                                           (lambda shard: shard.charge > 0) if args.cations else None)]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start, written, failed = time.time(), 0, 0
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        for finished, (name, count, failures) in enumerate(pool.map(_pull, jobs), start=1):
            written, failed = written + count, failed + failures
            print(f"[{finished}/{len(jobs)}] {name}: {count} records, {failures} MD frames lost to SCF failures "
                  f"({time.time() - start:.0f} s)", flush=True)
    print(f"{len(jobs)} shards: {written} {args.pulled} pull records, {failed} MD frames lost to SCF failures")


if __name__ == "__main__":
    main()
