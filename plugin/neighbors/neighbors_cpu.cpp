// CPU kernel of openmm_tensornet::neighbor_pairs: count the pairs of every atom, prefix-sum, then fill. Both passes
// run in parallel over atoms and the output order does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/cell_grid.h"
#include "../common/checks.h"
#include "../common/pair_search.h"

namespace openmm_tensornet {

namespace {

// Below this many atoms the O(N^2) search is faster than building a cell grid (measured: benchmarks/README.md).
constexpr int64_t kBruteForceAtoms = 256;

std::tuple<at::Tensor, at::Tensor, at::Tensor> neighbor_pairs_cpu(const at::Tensor& positions_in,
                                                                  const c10::optional<at::Tensor>& box,
                                                                  const c10::optional<at::Tensor>& batch_in,
                                                                  double cutoff, int64_t max_pairs, bool half,
                                                                  c10::string_view algorithm_name) {
    const Algorithm algorithm = check_arguments(positions_in, box, batch_in, cutoff, max_pairs,
                                                std::string(algorithm_name));
    const auto positions = positions_in.contiguous();
    c10::optional<at::Tensor> batch;
    if (batch_in.has_value()) batch = batch_in.value().contiguous();
    const int64_t num_atoms = positions.size(0);
    TORCH_CHECK(at::isfinite(positions).all().item<bool>(),
                "neighbor_pairs: positions contain NaN or infinity (the simulation may have become unstable)");

    double box_host[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
    const bool periodic = box.has_value();
    if (periodic) {
        const auto b = box.value().to(at::kDouble).contiguous();
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) box_host[r][c] = b[r][c].item<double>();
        check_box_values(box_host, cutoff);
    }
    const bool use_cells = algorithm == Algorithm::Cells ||
                           (algorithm == Algorithm::Automatic && num_atoms > kBruteForceAtoms);

    at::Tensor indices, shifts;
    int64_t total = 0;
    AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "neighbor_pairs_cpu", [&] {
        PairSearch<scalar_t> search = make_search<scalar_t>(positions, batch, periodic, box_host, cutoff, half);
        CellGrid grid;
        if (use_cells && num_atoms > 0) {
            grid = build_cell_grid(positions, periodic, box_host, cutoff);
            attach_grid(search, grid);
        }
        auto counts = at::empty({num_atoms}, positions.options().dtype(at::kLong));
        int64_t* count = counts.data_ptr<int64_t>();
        const int64_t grain = 64;
        at::parallel_for(0, num_atoms, grain, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) count[i] = search_atom(search, i, PairSink());
        });
        auto offsets = at::cumsum(counts, 0) - counts;
        total = num_atoms > 0 ? counts.sum().item<int64_t>() : 0;
        const int64_t capacity = max_pairs >= 0 ? max_pairs : total;
        indices = at::full({2, capacity}, -1, positions.options().dtype(at::kLong));
        shifts = at::zeros({capacity, 3}, positions.options().dtype(at::kInt));
        const int64_t* offset = offsets.data_ptr<int64_t>();
        PairSink sink;
        sink.indices = indices.data_ptr<int64_t>();
        sink.shifts = shifts.data_ptr<int32_t>();
        sink.capacity = capacity;
        at::parallel_for(0, num_atoms, grain, [&](int64_t begin, int64_t end) {
            PairSink mine = sink;
            for (int64_t i = begin; i < end; ++i) {
                if (offset[i] >= capacity) break;
                mine.offset = offset[i];
                search_atom(search, i, mine);
            }
        });
    });
    return {indices, shifts, at::scalar_tensor(total, positions.options().dtype(at::kLong))};
}

}  // namespace

TORCH_LIBRARY_IMPL(openmm_tensornet, CPU, m) { m.impl("neighbor_pairs", &neighbor_pairs_cpu); }

}  // namespace openmm_tensornet
