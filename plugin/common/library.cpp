// The op namespace ``openmm_tensornet``, defined once. Each op folder adds its schemas with TORCH_LIBRARY_FRAGMENT
// (the only declaration of an op: openmm_tensornet/ops/contract.py reads them) and its kernels with
// TORCH_LIBRARY_IMPL; openmm_tensornet/ops/library.py compiles every .cpp (and .cu) of plugin/*/ into one library.
#include <torch/library.h>

TORCH_LIBRARY(openmm_tensornet, m) {}
