// CUDA kernel of openmm_tensornet::neighbor_pairs: one thread per atom counts its pairs, a prefix sum gives every atom
// its slots, a second launch writes them. Same pair search as the CPU kernel (common/pair_search.h); the output is
// grouped by i and deterministic.
//
// CUDA graphs: while a stream is being captured nothing may be read back to the host, so the kernel then uses the
// O(N^2) search with the box read on the device, needs a fixed capacity (max_pairs >= 0), and leaves the overflow
// check to the caller through num_pairs. Outside capture it checks the box and uses the cell list for large systems.
// Build with --fmad=false so that the distance test rounds like the PyTorch expression in the wrapper.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cell_grid.h"
#include "checks.h"
#include "pair_search.h"

namespace openmm_tensornet {

namespace {

constexpr int64_t kBruteForceAtoms = 4096;
constexpr int kThreads = 128;

template <typename scalar_t>
__global__ void search_kernel(PairSearch<scalar_t> search, const scalar_t* box, int64_t* counts,
                              const int64_t* offsets, WritePairs sink) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= search.num_atoms) return;
    if (box != nullptr)
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) search.box[r][c] = box[3 * r + c];
    if (offsets == nullptr) {
        CountPairs count;
        counts[i] = search_atom(search, i, count);
    } else if (offsets[i] < sink.capacity) {
        sink.i = i;
        sink.slot = offsets[i];
        search_atom(search, i, sink);
    }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> neighbor_pairs_cuda(const at::Tensor& positions_in,
                                                                   const c10::optional<at::Tensor>& box_in,
                                                                   const c10::optional<at::Tensor>& batch_in,
                                                                   double cutoff, int64_t max_pairs, bool half,
                                                                   c10::string_view algorithm_name) {
    const Algorithm algorithm = check_arguments(positions_in, box_in, batch_in, cutoff, max_pairs,
                                                std::string(algorithm_name));
    const c10::cuda::CUDAGuard guard(positions_in.device());
    const auto stream = at::cuda::getCurrentCUDAStream();
    const bool capturing = c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
    TORCH_CHECK(!capturing || max_pairs >= 0,
                "neighbor_pairs: a fixed capacity (max_pairs >= 0) is needed while capturing a CUDA graph; got -1");
    TORCH_CHECK(!capturing || algorithm != Algorithm::Cells,
                "neighbor_pairs: algorithm 'cells' reads the box on the host and cannot run inside a CUDA graph; "
                "use 'auto' or 'brute'");
    const auto positions = positions_in.contiguous();
    c10::optional<at::Tensor> batch;
    if (batch_in.has_value()) batch = batch_in.value().contiguous();
    at::Tensor box;
    if (box_in.has_value()) box = box_in.value().contiguous();
    const int64_t num_atoms = positions.size(0);
    const bool periodic = box.defined();

    double box_host[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
    if (!capturing) {
        TORCH_CHECK(at::isfinite(positions).all().item<bool>(),
                    "neighbor_pairs: positions contain NaN or infinity (the simulation may have become unstable)");
        if (periodic) {
            const auto b = box.to(at::kCPU, at::kDouble).contiguous();
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c) box_host[r][c] = b[r][c].item<double>();
            check_box_values(box_host, cutoff);
        }
    }
    const bool use_cells = !capturing && num_atoms > 0 &&
                           (algorithm == Algorithm::Cells ||
                            (algorithm == Algorithm::Automatic && num_atoms > kBruteForceAtoms));

    at::Tensor indices, shifts, num_pairs;
    AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "neighbor_pairs_cuda", [&] {
        PairSearch<scalar_t> search = make_search<scalar_t>(positions, batch, periodic, box_host, cutoff, half);
        CellGrid grid;
        if (use_cells) {
            grid = build_cell_grid(positions, periodic, box_host, cutoff);
            attach_grid(search, grid);
        }
        const scalar_t* box_device = periodic ? box.data_ptr<scalar_t>() : nullptr;
        const int blocks = static_cast<int>(std::max<int64_t>(1, (num_atoms + kThreads - 1) / kThreads));
        auto counts = at::zeros({num_atoms}, positions.options().dtype(at::kLong));
        search_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(search, box_device, counts.data_ptr<int64_t>(),
                                                                  nullptr, WritePairs{});
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        const auto ends = at::cumsum(counts, 0);
        const auto offsets = (ends - counts).contiguous();
        num_pairs = num_atoms > 0 ? ends[num_atoms - 1].clone()
                                  : at::zeros({}, positions.options().dtype(at::kLong));
        const int64_t capacity = max_pairs >= 0 ? max_pairs : num_pairs.item<int64_t>();
        indices = at::full({2, capacity}, -1, positions.options().dtype(at::kLong));
        shifts = at::zeros({capacity, 3}, positions.options().dtype(at::kInt));
        WritePairs sink{indices.data_ptr<int64_t>(), shifts.data_ptr<int32_t>(), capacity, 0, 0};
        if (num_atoms > 0 && capacity > 0) {
            search_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(search, box_device, nullptr,
                                                                      offsets.data_ptr<int64_t>(), sink);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
    });
    return {indices, shifts, num_pairs};
}

}  // namespace

TORCH_LIBRARY_IMPL(openmm_tensornet, CUDA, m) { m.impl("neighbor_pairs", &neighbor_pairs_cuda); }

}  // namespace openmm_tensornet
