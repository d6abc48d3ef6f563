"""Install metadata, the torch/openmmtorch ABI guard, the README and the command line stay consistent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from openmm_tensornet.ops import abi

ROOT = Path(__file__).resolve().parents[2]

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

# pip name -> conda-forge name
CONDA_NAMES = {"torch": "pytorch", "openmmtorch": "openmm-torch", "openmmml": "openmm-ml", "tblite": "tblite-python",
               "matplotlib": "matplotlib-base"}


def _split(requirement: str):
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _series(spec: str) -> str:
    """The version a spec pins or starts at, as 'major.minor' ('>=2.9,<2.10' -> '2.9', '=8.6.1' -> '8.6')."""
    numbers = re.findall(r"\d+(?:\.\d+)*", spec)
    return ".".join(numbers[0].split(".")[:2]) if numbers else ""


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    pip_requirements = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip_section = {}, []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip_section += entry["pip"]
        else:
            name, spec = _split(entry)
            conda[name] = spec
    pip_in_env = dict(_split(r) for r in pip_section if not r.startswith("-e"))
    assert "-e ." in pip_section, "environment.yml must install the project itself from the checkout"
    for name, spec in pip_requirements.items():
        conda_name = CONDA_NAMES.get(name, name)
        if conda_name in conda:
            assert _series(conda[conda_name]) == _series(spec), f"{name}: pip {spec} vs conda {conda[conda_name]}"
        else:
            assert name in pip_in_env, f"{name} is in pyproject.toml but not in environment.yml"
            assert pip_in_env[name] == spec, f"{name}: pyproject {spec} vs environment.yml {pip_in_env[name]}"
    python_spec = conda["python"]
    assert _series(python_spec) == _series(project["requires-python"])


def test_torch_pin_matches_the_abi_table():
    torch_spec = dict(_split(r) for r in _pyproject()["project"]["dependencies"])["torch"]
    openmmtorch_spec = dict(_split(r) for r in _pyproject()["project"]["dependencies"])["openmmtorch"]
    assert abi.OPENMMTORCH_TORCH_SERIES[openmmtorch_spec.lstrip("=")] == _series(torch_spec)
    assert abi.torch_series(torch.__version__) == _series(torch_spec), "the installed torch breaks the pin"


def test_abi_mismatch_is_a_clear_import_error(monkeypatch):
    message = abi.abi_problem("2.14.0+cu130", "1.5")
    assert "compiled against torch 2.9.x" in message and "pip install 'torch==2.9.*'" in message
    assert abi.abi_problem("2.9.1+cu128", "1.5") is None
    assert abi.abi_problem("2.14.0", None) is None, "no openmmtorch installed: nothing to check"
    monkeypatch.setattr(torch, "__version__", "2.14.0")
    with pytest.raises(ImportError, match="torch 2.14.0 is installed"):
        abi.check_torch_abi()
    monkeypatch.setenv(abi.SKIP_VARIABLE, "1")
    abi.check_torch_abi()


def test_import_fails_cleanly_in_a_fresh_process_with_a_mismatched_torch():
    code = "import torch; torch.__version__ = '2.14.0'; import openmm_tensornet"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "ImportError: openmmtorch 1.5 from PyPI is compiled against torch 2.9.x" in result.stderr


def _readme_block(language: str, index: int = 0) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return blocks[index]


def _section_block(heading: str) -> str:
    """The first bash block under the README's ``## heading``."""
    section = (ROOT / "README.md").read_text().split("\n## " + heading + "\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]


def test_ci_runs_the_readme_install_and_test_commands():
    install, test = _section_block("Install").strip(), _section_block("Test").strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert install == 'pip install ".[test]"' and test == "pytest"
    assert re.search(r"^pip install --quiet \"\.\[test\]\"$", ci, flags=re.M)
    assert re.search(r"^pytest$", ci, flags=re.M)


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    example = next(block for block in blocks if "methanol_model.pt" in block)
    exec(compile(example, "README.md", "exec"), {})
    assert (tmp_path / "methanol_model.pt").is_file()


def test_command_line():
    command = str(Path(sys.executable).parent / "openmm-tensornet")  # the installed console script
    info = subprocess.run([command, "info"], capture_output=True, text=True, timeout=300)
    assert info.returncode == 0 and "openmmtorch 1.5" in info.stdout and "torch 2.9" in info.stdout
    simulate = subprocess.run([command, "simulate", "x.pdb"], capture_output=True, text=True, timeout=300)
    assert simulate.returncode == 1 and "x.pdb does not exist" in simulate.stderr
    assert subprocess.run([command], capture_output=True, timeout=300).returncode == 2, "no sub-command is an error"


@pytest.mark.skipif(os.environ.get("OPENMM_TENSORNET_OPS") == "reference", reason="the fallback was asked for")
def test_doctor_checks_the_installation():
    from openmm_tensornet.app.doctor import doctor

    lines = []
    problems = doctor(show=lines.append)
    text = "\n".join(lines)
    assert problems == 0, text
    for name in ("torch", "openmm", "openmmtorch", "compiled ops", "TorchForce on Reference", "TorchForce on CPU"):
        assert any(line.startswith("[ok ] " + name) for line in lines), text
    result = subprocess.run([sys.executable, "-m", "openmm_tensornet.app.cli", "doctor"], capture_output=True, text=True)
    assert result.returncode == 0 and "no problems found" in result.stdout, result.stdout + result.stderr
    import os

    broken = subprocess.run([sys.executable, "-m", "openmm_tensornet.app.cli", "doctor"], capture_output=True, text=True,
                            env={**os.environ, "OPENMM_TENSORNET_OPS": "reference"})
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "[BAD] compiled ops" in broken.stdout and "fix: install g++ and ninja" in broken.stdout, broken.stdout


def test_every_plugin_source_ships_in_the_wheel():
    """The library compiles every source ``contract.plugin_sources`` finds under openmm_tensornet/_plugin: each must
    match the package-data of that package, or an installed package falls back to the slow pure-torch ops."""
    from fnmatch import fnmatch

    from openmm_tensornet.ops.contract import plugin_sources

    setuptools = _pyproject()["tool"]["setuptools"]
    assert "openmm_tensornet._plugin" in setuptools["packages"]
    patterns = setuptools["package-data"]["openmm_tensornet._plugin"]
    found = plugin_sources(ROOT / "plugin")
    assert len(found.cpu) >= 12 and len(found.cuda) >= 2 and len(found.headers) >= 8
    for source in found.cpu + found.cuda + found.headers:
        assert any(fnmatch(source, pattern) for pattern in patterns), f"{source} matches no package-data pattern"


def test_every_data_file_of_the_package_ships_in_the_wheel():
    """Files the package reads at run time (the element table, the shipped models) must match its package-data,
    or an installed package fails where a source checkout works."""
    from fnmatch import fnmatch

    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["openmm_tensornet"]
    package = ROOT / "openmm_tensornet"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts]
    assert "elements.csv" in data and "models/default.pt" in data
    for name in data:
        assert any(fnmatch(name, pattern) for pattern in patterns), f"{name} matches no package-data pattern"


def test_importing_never_compiles_the_ops(tmp_path):
    """`import openmmml` loads our entry point and so imports openmm_tensornet: with a cold ops cache that must not
    compile anything (the first model does); with the cache warm, importing loads the cached library."""
    code = ("import openmmml, openmm_tensornet as t; s = t.ops_status(); print('STATUS', s.compiled, s.reason)")
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENMM_TENSORNET_CACHE": str(tmp_path / "cold")})
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert "STATUS False not loaded yet" in cold.stdout and "compiling" not in cold.stderr
    assert not any((tmp_path / "cold").glob("openmm_tensornet_ops-*/*.so")), "a library was built on import"
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert "STATUS True compiled" in warm.stdout and "compiling" not in warm.stderr
    # The first model loads the ops: it starts the build. (A compiler that fails at once keeps the test short; the
    # model then runs on the pure-torch fallback, with the warning that says why.)
    first = subprocess.run([sys.executable, "-c", "import openmm_tensornet as t; print('BEFORE', t.ops_status().reason);"
                            " t.TensorNet(hidden_channels=8, num_layers=1); print('AFTER', t.ops_status().reason)"],
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OPENMM_TENSORNET_CACHE": str(tmp_path / "cold"), "CXX": "false"})
    assert first.returncode == 0, first.stderr[-2000:]
    assert "BEFORE not loaded yet" in first.stdout and "compiling" in first.stderr
    assert "AFTER not loaded yet" not in first.stdout and "could not be built" in first.stderr
