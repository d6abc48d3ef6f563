// Schema of the neighbour-list op. Kernels: neighbors_cpu.cpp (CPU), neighbors_cuda.cu (CUDA).
//
// neighbor_pairs(positions [N, 3], box [3, 3]?, batch [N]?, cutoff, max_pairs, half, algorithm)
//   -> (indices [2, P] int64, shifts [P, 3] int32, num_pairs [] int64)
//
// Every pair (i, j) closer than ``cutoff`` (strictly) under the minimum-image convention, with its integer cell shift S
// such that the displacement is x_i - x_j - S . box. P is ``num_pairs`` when ``max_pairs`` is -1, otherwise exactly
// ``max_pairs``: unused rows hold index -1 and shift 0, and ``num_pairs`` is the true number of pairs even when it
// exceeds the capacity (rows beyond the capacity are not written; the caller must treat num_pairs > max_pairs as an
// error). Pairs are grouped by i in ascending order. ``half`` keeps only j < i.
// ``algorithm``: "auto", "brute" (O(N^2), no host synchronisation) or "cells" (O(N) cell list).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("neighbor_pairs(Tensor positions, Tensor? box, Tensor? batch, float cutoff, int max_pairs=-1, "
          "bool half=False, str algorithm='auto') -> (Tensor indices, Tensor shifts, Tensor num_pairs)");
}
