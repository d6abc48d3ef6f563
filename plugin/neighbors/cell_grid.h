// Cell grid for the O(N) pair search, built with ATen operations so that the CPU and CUDA kernels share it.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "pair_search.h"

namespace openmm_tensornet {

// Cells are a little wider than the cutoff, and the pre-test on wrapped coordinates a little more generous than the
// exact test, so that rounding (float32, positions many boxes away from the origin) never loses a pair.
constexpr double kCellMargin = 1e-3;

struct CellGrid {
    at::Tensor cells;       // [N, 3] int32
    at::Tensor wraps;       // [N, 3] int32 (periodic only; undefined otherwise)
    at::Tensor wrapped;     // [N, 3] positions' dtype: positions moved into the box (periodic) or as given
    at::Tensor sorted;      // [N, 3] ``wrapped`` in cell order
    at::Tensor sorted_positions;  // [N, 3] positions as given, in cell order
    at::Tensor sorted_wraps;      // [N, 3] int32 ``wraps`` in cell order (periodic)
    at::Tensor order;       // [N] int64
    at::Tensor cell_start;  // [num_cells + 1] int64
    int32_t grid[3] = {1, 1, 1};
    int32_t reach[3] = {1, 1, 1};
};

// ``box_host`` holds the box in double (already checked) when ``periodic``. Reads positions' extent on the host
// for non-periodic systems, so it synchronises a CUDA stream.
CellGrid build_cell_grid(const at::Tensor& positions, bool periodic, const double box_host[3][3], double cutoff);

// Fill the parts of a PairSearch that do not depend on the algorithm.
template <typename scalar_t>
PairSearch<scalar_t> make_search(const at::Tensor& positions, const c10::optional<at::Tensor>& batch,
                                 bool periodic, const double box_host[3][3], double cutoff, bool half) {
    PairSearch<scalar_t> s;
    s.positions = positions.data_ptr<scalar_t>();
    s.batch = batch.has_value() ? batch.value().data_ptr<int64_t>() : nullptr;
    s.num_atoms = positions.size(0);
    s.cutoff2 = static_cast<scalar_t>(cutoff * cutoff);
    s.filter2 = static_cast<scalar_t>(cutoff * cutoff * (1 + 4 * kCellMargin));
    s.periodic = periodic;
    s.half = half;
    if (periodic)
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) s.box[r][c] = static_cast<scalar_t>(box_host[r][c]);
    return s;
}

template <typename scalar_t>
void attach_grid(PairSearch<scalar_t>& s, const CellGrid& g) {
    s.use_cells = true;
    s.cells = g.cells.data_ptr<int32_t>();
    s.wraps = g.wraps.defined() ? g.wraps.data_ptr<int32_t>() : nullptr;
    s.wrapped = g.wrapped.data_ptr<scalar_t>();
    s.sorted = g.sorted.data_ptr<scalar_t>();
    s.sorted_positions = g.sorted_positions.data_ptr<scalar_t>();
    s.sorted_wraps = g.sorted_wraps.defined() ? g.sorted_wraps.data_ptr<int32_t>() : nullptr;
    s.order = g.order.data_ptr<int64_t>();
    s.cell_start = g.cell_start.data_ptr<int64_t>();
    for (int k = 0; k < 3; ++k) {
        s.grid[k] = g.grid[k];
        s.reach[k] = g.reach[k];
    }
}

}  // namespace openmm_tensornet
