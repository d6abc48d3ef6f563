#!/usr/bin/env bash
# The CUDA path in one go on a GPU machine with no network (see benchmarks/gpu_check.py for what it checks).
#
# It installs nothing from outside the machine. Wheels that the machine lacks are taken from .whl/ in the checkout
# when it is there (OpenMM 8.6.1 and its CUDA platform, openmmtorch 1.5 and its CUDA platform, mdtraj,
# openmmtools, pdbfixer, ...; fetched beforehand with `pip download --no-deps -d .whl ...` on a machine with
# network). openmmtorch 1.5 needs torch 2.9: with another torch the TorchForce checks fail and say so.
# Results: $OUT/gpu_check.md (or ./gpu_check.md), written within 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The neighbour-list CUDA kernel is compiled with the CUDA toolkit of torch's major version.
export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")}"
timeout 590 python3 benchmarks/gpu_check.py "$@"
