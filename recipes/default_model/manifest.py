"""Write the manifest of the default model's data set (what data.sh made): configurations and atoms per element,
per total charge, per size and per kind (single molecule, molecule + water, molecule + molecule), and the records
that train_v2.yaml's max_force leaves out.

    python manifest.py [DATA] > data-manifest.md        (DATA defaults to ./data-v2)
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from openmm_tensornet.elements import ELEMENTS
from openmm_tensornet.io.data import read_dataset

MAX_FORCE = 50.0  # eV/Å, as train_v2.yaml


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data-v2")
    molecules = read_dataset(data)
    shards, configurations, atoms = len(molecules), sum(len(m) for m in molecules), 0
    element_atoms, element_molecules = Counter(), Counter()
    charge = Counter()
    size = Counter()
    kind = Counter()
    method = Counter()
    above = []
    for m in molecules:
        count = len(m)
        atoms += count * len(m.z)
        for z, n in Counter(int(z) for z in m.z).items():
            element_atoms[z] += n * count
            element_molecules[z] += 1
        charge[int(round(float(m.charge)))] += count
        size[min(len(m.z) // 10 * 10, 80)] += count
        kind["molecule + water" if m.name.endswith("+water") else "molecule + molecule" if "+" in m.name
             else "single molecule"] += count
        method[m.method] += count
        largest = np.abs(m.forces).reshape(count, -1).max(axis=1)
        above += [(m.name, int(i), float(largest[i])) for i in np.flatnonzero(largest > MAX_FORCE)]
    out = ["# The default model's data set (recipes/default_model/data.sh)", "",
           f"{shards} shards (molecules and pairs), {configurations} configurations, {atoms} atoms in all; labels: "
           + ", ".join(f"{k} ({v})" for k, v in method.items()) + ". Written by `manifest.py`.", "",
           "| element | atoms (all configurations) | shards containing it |", "|---|---|---|"]
    out += [f"| {ELEMENTS[z][0]} | {element_atoms[z]} | {element_molecules[z]} |" for z in sorted(element_atoms)]
    out += ["", "| total charge (e) | configurations |", "|---|---|"]
    out += [f"| {q:+d} | {n} |" for q, n in sorted(charge.items())]
    out += ["", "| atoms per configuration | configurations |", "|---|---|"]
    out += [(f"| {s}–{s + 9} | {n} |" if s < 80 else f"| ≥ 80 | {n} |") for s, n in sorted(size.items())]
    out += ["", "| kind | configurations |", "|---|---|"]
    out += [f"| {k} | {n} |" for k, n in sorted(kind.items())]
    out += ["", f"Records with a force component above {MAX_FORCE:g} eV/Å (left out by `max_force` in train_v2.yaml; "
            "bond distortions that pushed the moved atom into a third one, made before generate-data redrew such "
            f"distortions): **{len(above)}** ({100 * len(above) / configurations:.2f} %), largest "
            f"{max((f for *_, f in above), default=0):.0f} eV/Å."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
