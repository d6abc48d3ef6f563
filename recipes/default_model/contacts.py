"""Contact pulls for data_v3.py's set (issue 15): a group closing in on another while a proton moves over.

    python contacts.py [--per-shard 1] [--workers 2] [--output contacts]   (after data_v3.py; resumable)

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
SUFFIX, SEED = ".contacts.npz", 13


def _pull(job):
    from through_space import shard_md
    from openmm_tensornet.io.data import write_molecule
    from openmm_tensornet.training.datagen import pull_contact, records_molecule

    path, output, index, count = job
    source, frames, z, bonds, rng, xtb = shard_md(path, [SEED, index])
    records, failures, lost = [], 0, 0
    for _ in range(count):
        lost = pull_contact(xtb, frames, z, bonds, rng, records)
        if lost is None:
            break  # no candidate in any frame: nothing folds back
        failures += lost
    target = output / (path.name[:-len(".npz")] + SUFFIX)
    if records:
        write_molecule(records_molecule(source.name, z, source.charge, records, source.method), target)
    elif lost is None:
        target.with_suffix(".none").touch()  # done, nothing to pull: not redone on resume
    return path.name, len(records), failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("DATA", HERE / "data-v3")))
    parser.add_argument("--output", type=Path, default=HERE / "contacts")
    parser.add_argument("--per-shard", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from through_space import full_shards

    args.output.mkdir(parents=True, exist_ok=True)

    def done(path: Path) -> bool:
        target = args.output / (path.name[:-len(".npz")] + SUFFIX)
        return target.exists() or target.with_suffix(".none").exists()

    jobs = [(path, args.output, index, args.per_shard)
            for index, path in full_shards(args.data, done, np.random.default_rng(SEED).permutation)]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start, written, failed = time.time(), 0, 0
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        for finished, (name, count, failures) in enumerate(pool.map(_pull, jobs), start=1):
            written, failed = written + count, failed + failures
            print(f"[{finished}/{len(jobs)}] {name}: {count} records, {failures} MD frames lost to SCF failures "
                  f"({time.time() - start:.0f} s)", flush=True)
    print(f"{len(jobs)} shards: {written} contact records, {failed} MD frames lost to SCF failures")


if __name__ == "__main__":
    main()
