// CPU kernel of openmm_tensornet::neighbor_pairs: count the pairs of every atom, prefix-sum, then fill. Both passes
// run in parallel over atoms and the output order does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cell_grid.h"
#include "checks.h"
#include "pair_search.h"

namespace openmm_tensornet {

namespace {

struct CollectPairs {
    std::vector<int64_t>& neighbours;
    std::vector<int32_t>& shifts;
    void operator()(int64_t j, const int32_t* shift) {
        neighbours.push_back(j);
        shifts.push_back(shift[0]);
        shifts.push_back(shift[1]);
        shifts.push_back(shift[2]);
    }
};

// Below this many atoms the O(N^2) search is faster than building a cell grid (measured: benchmarks/README.md).
constexpr int64_t kBruteForceAtoms = 200;

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
        // One search per atom; each fixed-size chunk of atoms collects its pairs in its own buffer, so the result
        // is the same for any number of threads.
        const int64_t chunk = 128;
        const int64_t num_chunks = (num_atoms + chunk - 1) / chunk;
        std::vector<std::vector<int64_t>> neighbours(num_chunks);
        std::vector<std::vector<int32_t>> cell_shifts(num_chunks);
        std::vector<int64_t> count(num_atoms);
        at::parallel_for(0, num_chunks, 1, [&](int64_t begin, int64_t end) {
            for (int64_t c = begin; c < end; ++c) {
                neighbours[c].reserve(64 * chunk);
                cell_shifts[c].reserve(3 * 64 * chunk);
                CollectPairs emit{neighbours[c], cell_shifts[c]};
                for (int64_t i = c * chunk; i < std::min(num_atoms, (c + 1) * chunk); ++i)
                    count[i] = search_atom(search, i, emit);
            }
        });
        std::vector<int64_t> chunk_start(num_chunks + 1, 0);
        for (int64_t c = 0; c < num_chunks; ++c)
            chunk_start[c + 1] = chunk_start[c] + static_cast<int64_t>(neighbours[c].size());
        total = chunk_start[num_chunks];
        const int64_t capacity = max_pairs >= 0 ? max_pairs : total;
        if (capacity == total) {  // every row is written below
            indices = at::empty({2, capacity}, positions.options().dtype(at::kLong));
            shifts = at::empty({capacity, 3}, positions.options().dtype(at::kInt));
        } else {
            indices = at::full({2, capacity}, -1, positions.options().dtype(at::kLong));
            shifts = at::zeros({capacity, 3}, positions.options().dtype(at::kInt));
        }
        int64_t* first = indices.data_ptr<int64_t>();
        int64_t* second = first + capacity;
        int32_t* shift = shifts.data_ptr<int32_t>();
        at::parallel_for(0, num_chunks, 1, [&](int64_t begin, int64_t end) {
            for (int64_t c = begin; c < end; ++c) {
                int64_t slot = chunk_start[c];
                const int64_t kept = std::max<int64_t>(0, std::min(capacity, chunk_start[c + 1]) - slot);
                if (kept == 0) continue;
                std::copy_n(neighbours[c].data(), kept, second + slot);
                std::copy_n(cell_shifts[c].data(), 3 * kept, shift + 3 * slot);
                for (int64_t i = c * chunk; i < std::min(num_atoms, (c + 1) * chunk) && slot < capacity; ++i)
                    for (int64_t n = 0; n < count[i] && slot < capacity; ++n) first[slot++] = i;
            }
        });
    });
    return {indices, shifts, at::scalar_tensor(total, positions.options().dtype(at::kLong))};
}

}  // namespace

TORCH_LIBRARY_IMPL(openmm_tensornet, CPU, m) { m.impl("neighbor_pairs", &neighbor_pairs_cpu); }

}  // namespace openmm_tensornet
