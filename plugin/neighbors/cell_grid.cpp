#include "cell_grid.h"

#include <algorithm>
#include <cmath>

namespace openmm_tensornet {

namespace {
// The grid is capped so that sparse systems do not allocate huge empty grids.
int64_t max_cells(int64_t num_atoms) { return std::max<int64_t>(64, 2 * num_atoms); }
}  // namespace

CellGrid build_cell_grid(const at::Tensor& positions, bool periodic, const double box_host[3][3], double cutoff) {
    CellGrid g;
    const int64_t n = positions.size(0);
    const auto x = positions.to(at::kDouble);
    double cell_size = cutoff * (1 + kCellMargin);
    at::Tensor coords;  // [N, 3] double, in units of cells
    if (periodic) {
        const double(*b)[3] = box_host;
        // Fractional coordinates for the reduced (lower-triangular) box, solved from c down to a.
        const auto sc = x.select(1, 2) / b[2][2];
        const auto sb = (x.select(1, 1) - sc * b[2][1]) / b[1][1];
        const auto sa = (x.select(1, 0) - sc * b[2][0] - sb * b[1][0]) / b[0][0];
        const auto frac = at::stack({sa, sb, sc}, 1);
        const auto whole = at::floor(frac);
        g.wraps = whole.to(at::kInt);
        const auto box_tensor = at::tensor(at::ArrayRef<double>(&b[0][0], 9), x.options()).view({3, 3});
        g.wrapped = (x - at::matmul(whole, box_tensor)).to(positions.scalar_type());
        // Perpendicular widths of the cell: volume over the area of the opposite face.
        const double volume = b[0][0] * b[1][1] * b[2][2];
        auto cross_norm = [](const double* u, const double* v) {
            const double w0 = u[1] * v[2] - u[2] * v[1], w1 = u[2] * v[0] - u[0] * v[2], w2 = u[0] * v[1] - u[1] * v[0];
            return std::sqrt(w0 * w0 + w1 * w1 + w2 * w2);
        };
        const double width[3] = {volume / cross_norm(b[1], b[2]), volume / cross_norm(b[2], b[0]),
                                 volume / cross_norm(b[0], b[1])};
        for (;;) {
            int64_t total = 1;
            for (int k = 0; k < 3; ++k) {
                g.grid[k] = static_cast<int32_t>(std::max(1.0, std::floor(width[k] / cell_size)));
                total *= g.grid[k];
            }
            if (total <= max_cells(n)) break;
            cell_size *= 1.25;
        }
        for (int k = 0; k < 3; ++k)
            g.reach[k] = static_cast<int32_t>(std::max(1.0, std::ceil(cutoff * (1 + kCellMargin) * g.grid[k] / width[k] - 1e-9)));
        const auto grid = at::tensor({double(g.grid[0]), double(g.grid[1]), double(g.grid[2])}, x.options());
        coords = (frac - whole) * grid;
    } else {
        const auto low = std::get<0>(x.min(0));
        const auto extent = (std::get<0>(x.max(0)) - low).cpu();
        const double* e = extent.data_ptr<double>();
        for (;;) {
            int64_t total = 1;
            for (int k = 0; k < 3; ++k) {
                g.grid[k] = static_cast<int32_t>(std::floor(e[k] / cell_size) + 1);
                total *= g.grid[k];
            }
            if (total <= max_cells(n)) break;
            cell_size *= 1.25;
        }
        coords = (x - low) / cell_size;
        g.wrapped = positions;
    }
    const auto upper = at::tensor({g.grid[0] - 1, g.grid[1] - 1, g.grid[2] - 1}, x.options().dtype(at::kInt));
    g.cells = at::minimum(at::clamp_min(at::floor(coords).to(at::kInt), 0), upper).contiguous();
    const auto linear = g.cells.select(1, 0).to(at::kLong) +
                        int64_t(g.grid[0]) * (g.cells.select(1, 1).to(at::kLong) +
                                              int64_t(g.grid[1]) * g.cells.select(1, 2).to(at::kLong));
    const int64_t num_cells = int64_t(g.grid[0]) * g.grid[1] * g.grid[2];
    g.order = std::get<1>(at::sort(linear, /*stable=*/true, /*dim=*/0, /*descending=*/false)).contiguous();
    const auto counts = at::bincount(linear, {}, num_cells);
    g.cell_start = at::cat({at::zeros({1}, counts.options()), at::cumsum(counts, 0)}).contiguous();
    if (g.wraps.defined()) g.wraps = g.wraps.contiguous();
    g.wrapped = g.wrapped.contiguous();
    g.sorted = g.wrapped.index_select(0, g.order).contiguous();
    g.sorted_positions = positions.index_select(0, g.order).contiguous();
    if (g.wraps.defined()) g.sorted_wraps = g.wraps.index_select(0, g.order).contiguous();
    return g;
}

}  // namespace openmm_tensornet
