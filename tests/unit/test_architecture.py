"""The package's layers (docs/architecture.md): each module imports only from its own layer or the ones below."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "openmm_tensornet"
LAYERS = {"": 0, "ops": 1, "nn": 2, "io": 3, "openmm": 4, "training": 5, "app": 6}  # "": choices, elements, units (foundation)
OPENMM_FREE = {"", "ops", "nn"}  # the model math never imports OpenMM (nor openmm-torch, openmm-ml, openmmtools)
OPENMM_PACKAGES = {"openmm", "openmmtorch", "openmmml", "openmmtools"}
FACADE = {"__init__.py", "__main__.py", "_moved.py"}  # the facade re-exports from every layer


def _layer(module: str) -> str:
    """'openmm_tensornet.nn.model' -> 'nn'; 'openmm_tensornet.units' -> ''."""
    parts = module.split(".")[1:]
    return parts[0] if parts and parts[0] in LAYERS else ""


def _imports(path: Path):
    """(line, absolute module) for every import of the file, including those inside functions."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
                yield from ((node.lineno, name) for name in names)
            else:
                yield node.lineno, node.module


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in FACADE or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_respect_the_layers(path):
    own = _layer(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    wrong = []
    for line, target in _imports(path):
        if target.split(".")[0] == "openmm_tensornet":
            layer = "app" if target == "openmm_tensornet" else _layer(target)  # only app/ may use the facade
            if LAYERS[layer] > LAYERS[own]:
                wrong.append(f"line {line}: {target} (layer {layer})")
        elif own in OPENMM_FREE and target.split(".")[0] in OPENMM_PACKAGES:
            wrong.append(f"line {line}: {target} (OpenMM in the model layers)")
    assert not wrong, f"{path.relative_to(PACKAGE)} (layer {own or 'foundation'}) imports upwards: " + "; ".join(wrong)


def test_every_module_lives_in_a_layer():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in FACADE | {"choices.py", "elements.py", "units.py"})
    assert loose == [], f"modules outside the layer folders: {loose}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(name for name in LAYERS if name)


def test_the_check_sees_upward_and_openmm_imports(tmp_path, monkeypatch):
    """The checker itself: a relative import one layer up and an `import openmm` in nn/ are both caught."""
    fake = tmp_path / "openmm_tensornet"
    (fake / "nn").mkdir(parents=True)
    (fake / "nn" / "bad.py").write_text("def f():\n    from ..app import cli\n    import openmm.app\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match=r"line 2: openmm_tensornet.app \(layer app\).*line 3: openmm.app "):
        test_imports_respect_the_layers(fake / "nn" / "bad.py")


def test_element_table_is_openmms():
    from openmm.app.element import Element

    from openmm_tensornet.elements import ELEMENTS

    for number, (symbol, mass) in ELEMENTS.items():
        element = Element.getByAtomicNumber(number)
        assert (symbol, mass) == (element.symbol, element.mass._value)
    assert ELEMENTS[1][0] == "H" and ELEMENTS[17] == ("Cl", Element.getBySymbol("Cl").mass._value)
