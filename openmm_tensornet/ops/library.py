"""Loading the compiled torch ops of ``plugin/`` (compiled on first use, cached), or the pure-torch fallback.

``import openmm_tensornet`` loads the library when it is already in the cache and never compiles; the first model,
neighbour search or deserialised TorchForce calls :func:`load_ops`, which registers the ``torch.ops.openmm_tensornet``
ops (``neighbor_pairs`` and the others):

* from the compiled library when it can be built or found in the cache (CPU kernel always; CUDA kernel when a CUDA
  toolkit whose major version matches torch's is present and a GPU is visible), or
* from the pure-torch reference implementation (:mod:`openmm_tensornet.ops.neighbors`) when it cannot, with a warning
  that says why. TorchScript models then still script and run in this process, only slower, and a model saved this
  way needs ``import openmm_tensornet`` in the process that loads it.

The library is cached under ``$OPENMM_TENSORNET_CACHE`` (default ``~/.cache/openmm-tensornet``) in a folder keyed by
the sources, torch and Python versions, so a new torch or a changed source triggers a rebuild and nothing stale is
ever loaded. ``OPENMM_TENSORNET_OPS=reference`` skips the compiled library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch

from .contract import NAMESPACE, argument_names, declared_schemas, plugin_sources, twin_schemas

LIBRARY_NAME = "openmm_tensornet_ops"
CACHE_VARIABLE = "OPENMM_TENSORNET_CACHE"
MODE_VARIABLE = "OPENMM_TENSORNET_OPS"
CUDA_VARIABLE = "OPENMM_TENSORNET_BUILD_CUDA"

# Any file of the plugin: where the C++ sources are (the rest is found by ``contract.plugin_sources``).
_ANCHOR = "neighbors/neighbors.cpp"


@dataclass
class OpsStatus:
    """What :func:`load_ops` did. ``compiled`` is False when the pure-torch fallback serves the ops."""

    compiled: bool = False
    cuda: bool = False
    library: Optional[Path] = None
    reason: str = "not loaded yet"
    notes: List[str] = field(default_factory=list)


_status = OpsStatus()
_fallback_library: Optional[torch.library.Library] = None


def source_dir() -> Path:
    """The C++/CUDA sources: ``openmm_tensornet/_plugin`` in an installed wheel, ``plugin/`` in a checkout."""
    here = Path(__file__).resolve().parent.parent  # the package folder
    for candidate in (here / "_plugin", here.parent / "plugin"):
        if (candidate / _ANCHOR).is_file():
            return candidate
    raise FileNotFoundError(
        "the C++ sources of the compiled ops were not found next to the package (looked in "
        f"{here / '_plugin'} and {here.parent / 'plugin'}); reinstall openmm-tensornet."
    )


def cache_root() -> Path:
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openmm-tensornet"


def _nvcc_major(cuda_home: Optional[str]) -> Optional[int]:
    if cuda_home is None:
        return None
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    if not nvcc.is_file():
        return None
    try:
        text = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+)\.", text)
    return int(found.group(1)) if found else None


def cuda_build_problem() -> Optional[str]:
    """Why the CUDA kernel will not be compiled, or ``None`` when it will."""
    if torch.version.cuda is None:
        return "this torch has no CUDA support"
    forced = os.environ.get(CUDA_VARIABLE, "") not in ("", "0")
    if not forced and not torch.cuda.is_available():
        return f"no GPU is visible (set {CUDA_VARIABLE}=1 to compile the CUDA kernel anyway)"
    from torch.utils.cpp_extension import CUDA_HOME

    major = _nvcc_major(CUDA_HOME)
    wanted = int(torch.version.cuda.split(".")[0])
    if major is None:
        return f"no CUDA toolkit (nvcc) was found; install CUDA {wanted}.x and set CUDA_HOME"
    if major != wanted:
        return (f"nvcc in {CUDA_HOME} is CUDA {major}, but torch was built with CUDA {torch.version.cuda}; "
                f"point CUDA_HOME at a CUDA {wanted}.x toolkit (e.g. pip install nvidia-cuda-nvcc-cu{wanted})")
    return None


NATIVE_VARIABLE = "OPENMM_TENSORNET_NATIVE"


def _cpu_flags() -> List[str]:
    """Compiler flags for this CPU: ``-march=native`` on Linux x86-64 (unless ``OPENMM_TENSORNET_NATIVE=0``), with
    the CPU's feature list, so that a cache shared by different machines never serves code built for another CPU."""
    if os.environ.get(NATIVE_VARIABLE, "1") == "0" or platform.system() != "Linux" or platform.machine() != "x86_64":
        return []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    if found is None:
        return []
    features = hashlib.sha256(" ".join(sorted(found.group(1).split())).encode()).hexdigest()[:12]
    return ["-march=native", f"-DOPENMM_TENSORNET_CPU={features}"]


def _build_key(sources: Path, with_cuda: bool) -> str:
    digest = hashlib.sha256()
    found = plugin_sources(sources)
    names = found.cpu + found.headers + (found.cuda if with_cuda else ())
    for name in names:
        digest.update(name.encode())
        digest.update((sources / name).read_bytes())
    digest.update(f"{torch.__version__}|{sys.version_info[:2]}|{platform.machine()}|{with_cuda}".encode())
    digest.update("|".join(_cpu_flags()).encode())  # built for this CPU (-march=native): a shared cache stays safe
    return digest.hexdigest()[:16]


def _library_path(with_cuda: bool) -> Path:
    folder = cache_root() / f"{LIBRARY_NAME}-{_build_key(source_dir(), with_cuda)}"
    return folder / f"{LIBRARY_NAME}.so"


def build_library(verbose: bool = False, with_cuda: Optional[bool] = None) -> Path:
    """Compile the ops library (or find it in the cache) and return its path. Does not load it."""
    sources = source_dir()
    if with_cuda is None:
        with_cuda = cuda_build_problem() is None
    library = _library_path(with_cuda)
    folder = library.parent
    if library.is_file():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("ninja") is None and not (Path(sys.executable).parent / "ninja").is_file():
        raise RuntimeError("the 'ninja' build tool is missing; pip install ninja")
    from torch.utils import cpp_extension

    print(f"openmm-tensornet: compiling the neighbour-list and message-passing ops for torch {torch.__version__}"
          f"{' with CUDA' if with_cuda else ''} (once, about a minute) into {folder}", file=sys.stderr, flush=True)
    found = plugin_sources(sources)
    names = found.cpu + (found.cuda if with_cuda else ())
    env_path = os.environ.get("PATH", "")
    if str(Path(sys.executable).parent) not in env_path.split(os.pathsep):
        os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env_path  # ninja from the venv
    cpp_extension.load(
        name=LIBRARY_NAME,
        sources=[str(sources / name) for name in names],
        build_directory=str(folder),
        # -fopenmp: at::parallel_for is inlined from the headers and runs serially without it.
        extra_cflags=["-O3", "-fopenmp"] + _cpu_flags(),
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3", "--fmad=false"],
        with_cuda=with_cuda,
        is_python_module=False,
        is_standalone=False,
        verbose=verbose,
    )
    if not library.is_file():
        raise RuntimeError(f"the build finished but {library} is missing")
    return library


def _register_fallback() -> None:
    """Serve every op's schema with its pure-torch twin (``reference.<op>``), so scripting works without a compiler.

    CompositeImplicitAutograd: autograd differentiates through the torch ops of the twin. The search and the CSR
    indices are not differentiable, so they are opaque (CompositeExplicitAutograd, with fake kernels). The backward-
    only ops (``*_backward``, ``tensor_messages_weight_grad``) have no twin: only the compiled autograd kernels call
    them.
    """
    global _fallback_library
    from . import reference

    opaque = {"neighbor_pairs", "pair_csr"}
    _fallback_library = torch.library.Library(NAMESPACE, "DEF")
    for name, schema in twin_schemas(source_dir()).items():
        _fallback_library.define(schema)
        _fallback_library.impl(name, getattr(reference, name),
                               "CompositeExplicitAutograd" if name in opaque else "CompositeImplicitAutograd")


def _register_search_fakes() -> None:
    """Fake kernels of the ops whose fallback is opaque too (CompositeExplicitAutograd), needed in both modes."""

    @torch.library.register_fake("openmm_tensornet::neighbor_pairs")
    def _(positions, box, batch, cutoff, max_pairs=-1, half=False, algorithm="auto"):
        count = max_pairs if max_pairs >= 0 else torch.library.get_ctx().new_dynamic_size()
        device = positions.device
        return (positions.new_empty((2, count), dtype=torch.long), positions.new_empty((count, 3), dtype=torch.int32),
                torch.empty((), dtype=torch.long, device=device))

    @torch.library.register_fake("openmm_tensornet::pair_csr")
    def _(pairs, num_atoms):
        return (pairs.new_empty((num_atoms + 1,)), pairs.new_empty((pairs.shape[1],)),
                pairs.new_empty((num_atoms + 1,)))


# Ops whose outputs are shaped like some of their arguments (named as in the op's declared schema), in output order.
_SHAPED_LIKE = {
    "tensor_messages": ("features",),
    "tensor_embedding_backward": ("radial", "edge", "receiver_term", "sender_term"),
    "tensor_product": ("left",),
    "tensor_product_backward": ("left", "right"),
    "tensor_interaction": ("features",),
    "tensor_interaction_backward": ("grad", "radial"),
    "pair_geometry_backward": ("vectors", "distances"),
    "embedding_gate": ("sums",),
    "embedding_gate_backward": ("grad",),
    "invariant_readout_backward": ("features",),
}


def _register_shaped_like_fakes() -> None:
    schemas = declared_schemas(source_dir())
    for op, names in _SHAPED_LIKE.items():
        arguments = argument_names(schemas[op])
        positions = tuple(arguments.index(name) for name in names)

        def fake(*args, _positions=positions):
            outputs = tuple(args[p].new_empty(args[p].shape) for p in _positions)  # the kernels return contiguous
            return outputs[0] if len(outputs) == 1 else outputs

        torch.library.register_fake(f"{NAMESPACE}::{op}")(fake)


def _empty_like_list(like: torch.Tensor, shapes) -> list:
    """The saved-tensor list of a ``*_forward`` op: one empty tensor per shape, in the C++ kernel's order."""
    return [like.new_empty(shape) for shape in shapes]


def _register_fakes() -> None:
    """Shape-only ("fake") kernels of the compiled ops, so that ``torch.compile`` can trace models that call them."""
    _register_search_fakes()
    _register_shaped_like_fakes()

    @torch.library.register_fake("openmm_tensornet::tensor_messages_weight_grad")
    def _(grad_messages, features, pairs):
        return features.new_empty((pairs.shape[1], 3, features.shape[2]))

    @torch.library.register_fake("openmm_tensornet::tensor_embedding")
    def _(radial, edge, receiver_term, sender_term, pairs, first_ptr, second_order, second_ptr):
        shape = (receiver_term.shape[0], 9, receiver_term.shape[1])
        return radial.new_empty(shape), radial.new_empty(shape)

    @torch.library.register_fake("openmm_tensornet::tensor_interaction_forward")
    def _(features, radial, loop, charge_factor, mix_in, mix_out, pairs, first_ptr, second_order, second_ptr, so3):
        n, _, f = features.shape
        full, denominator = (n, 9, f), (n, 1, f)
        return _empty_like_list(features, [full, full, denominator, full, full, full, denominator, full])

    @torch.library.register_fake("openmm_tensornet::pair_geometry")
    def _(vectors, distances, means, betas, lower, upper, rbf_type):
        count, k = vectors.shape[0], means.shape[0]
        return (vectors.new_empty((count, k)), vectors.new_empty((count,)), vectors.new_empty((count, 9)),
                vectors.new_empty((count, k)), vectors.new_empty((count,)))

    @torch.library.register_fake("openmm_tensornet::embedding_gate_forward")
    def _(sums, loop, norm_weight, norm_bias, eps, weight1, bias1, weight2, bias2, activation, mix):
        n, _, f = sums.shape
        h = weight1.shape[0]
        full = (n, 9, f)
        return _empty_like_list(sums, [full, full, (n, f), (n, 1), (n, 1), (n, h), (n, h), (n, 3 * f), (n, 3 * f),
                                       full])

    @torch.library.register_fake("openmm_tensornet::invariant_readout")
    def _(features, norm_weight, norm_bias, eps, weight, bias, activation):
        return features.new_empty((features.shape[0], weight.shape[0]))

    @torch.library.register_fake("openmm_tensornet::invariant_readout_forward")
    def _(features, norm_weight, norm_bias, eps, weight, bias, activation):
        n, width = features.shape[0], 3 * features.shape[2]
        return _empty_like_list(features, [(n, weight.shape[0]), (n, width), (n, 1), (n, 1), (n, weight.shape[0])])

    @torch.library.register_fake("openmm_tensornet::pair_vectors")
    def _(positions, indices, shifts, box):
        count = indices.shape[1]
        return positions.new_empty((count, 3)), positions.new_empty((count,))

    @torch.library.register_fake("openmm_tensornet::pair_vectors_backward")
    def _(grad_vectors, grad_distances, vectors, distances, indices, num_atoms):
        return vectors.new_empty((num_atoms, 3))

    @torch.library.register_fake("openmm_tensornet::radial_mlp")
    def _(rbf, cutoff, weights, biases, activation):
        return rbf.new_empty((rbf.shape[0], weights[-1].shape[0]))


def _already_registered() -> bool:
    try:
        torch.ops.openmm_tensornet.neighbor_pairs.default
    except (AttributeError, RuntimeError):
        return False
    return True


def load_ops(compile: bool = True) -> OpsStatus:
    """Register the ops once per process (compiled if possible, fallback otherwise) and report what happened.

    ``compile=False`` (what ``import openmm_tensornet`` does) only loads a library already in the cache and
    otherwise leaves the ops unloaded, so that importing never compiles; the first model, neighbour search or
    deserialised TorchForce then calls ``load_ops()``, which compiles (once, cached) or falls back.
    """
    global _status
    if _status.reason != "not loaded yet":
        return _status
    if _already_registered():  # e.g. the library was loaded with torch.ops.load_library before import
        _status = OpsStatus(compiled=True, reason="registered before openmm_tensornet was imported")
        return _status
    mode = os.environ.get(MODE_VARIABLE, "compiled").strip().lower()
    if mode not in ("compiled", "reference"):
        raise ValueError(f"{MODE_VARIABLE} must be 'compiled' or 'reference'; got {mode!r}")
    problem = cuda_build_problem()
    notes = [] if problem is None else [f"CUDA kernel not built: {problem}"]
    if not compile and mode == "compiled":
        try:
            cached = _library_path(problem is None).is_file()
        except (OSError, FileNotFoundError):
            cached = False
        if not cached:
            return _status
    if mode == "reference":
        _register_fallback()
        _register_search_fakes()
        _status = OpsStatus(reason=f"{MODE_VARIABLE}=reference", notes=notes)
        return _status
    try:
        library = build_library(with_cuda=problem is None)
        torch.ops.load_library(str(library))
    except Exception as error:  # noqa: BLE001 - any build failure falls back, with the reason kept
        _register_fallback()
        _register_search_fakes()
        _status = OpsStatus(reason=f"{type(error).__name__}: {error}", notes=notes)
        warnings.warn(
            "openmm-tensornet: the compiled neighbour-list ops could not be built or loaded, so the slower pure-torch "
            f"implementation is used. Reason: {_status.reason}. Fix: install a C++ compiler (g++) and "
            "'pip install ninja', then run 'openmm-tensornet build-ops' to see the full build log.",
            RuntimeWarning,
            stacklevel=2,
        )
        return _status
    _register_fakes()
    _status = OpsStatus(compiled=True, cuda=problem is None, library=library, reason="compiled", notes=notes)
    return _status


@torch.jit.unused
def require_ops() -> None:
    """Load the ops if this process has not yet (eager code only; scripted code runs after a model was built)."""
    if _status.reason == "not loaded yet":
        load_ops()


def ops_status() -> OpsStatus:
    """How the ops are served in this process (see :class:`OpsStatus`)."""
    return _status


def require_compiled_ops() -> Path:
    """Return the compiled library's path, or raise ``RuntimeError`` saying why it is missing and how to fix it."""
    if not _status.compiled or _status.library is None:
        raise RuntimeError(
            "the compiled openmm-tensornet ops are not loaded (" + _status.reason + "); a model that uses them can "
            "only run in this Python process. Fix: install g++ and ninja (pip install ninja), unset "
            f"{MODE_VARIABLE}, and run 'openmm-tensornet build-ops'."
        )
    return _status.library
