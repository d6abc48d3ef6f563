// The irreducible parts (I: component 0, A: 1-3, S: 4-8) of the 9-component layout (basis.h),
// as ATen calls (any device; no host data, so they can be captured in CUDA graphs).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "basis.h"

namespace openmm_tensornet {


// [..., 3, ...] per-part values along ``dim`` -> contiguous [..., 9, ...] per-component values.
inline at::Tensor expand_parts(const at::Tensor& parts, int64_t dim) {
    std::vector<int64_t> shape = parts.sizes().vec();
    shape[dim] = 9;
    at::Tensor out = at::empty(shape, parts.options());
    for (int64_t part = 0; part < 3; ++part) {
        std::vector<int64_t> block = shape;
        block[dim] = part_size(part);
        out.narrow(dim, part_first(part), part_size(part)).copy_(parts.narrow(dim, part, 1).expand(block));
    }
    return out;
}

// Per-part rows [3, ...], or rows already per component [9, ...] (such as TensorNet.freeze_for_inference's
// constants) -> contiguous per-component rows [9, ...].
inline at::Tensor component_rows(const at::Tensor& rows) {
    return rows.size(0) == 9 ? rows.contiguous() : expand_parts(rows, 0);
}

// [N, 9, F] per-component values -> [N, 3, F] sums over each part's components (the transpose of expand_parts).
inline at::Tensor sum_parts(const at::Tensor& components) {
    std::vector<at::Tensor> sums;
    for (int64_t part = 0; part < 3; ++part)
        sums.push_back(components.narrow(1, part_first(part), part_size(part)).sum(1));
    return at::stack(sums, 1);
}

}  // namespace openmm_tensornet
