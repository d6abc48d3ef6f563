// 3x3 algebra on TensorNet's 9-component tensors (layout and basis maps: ../common/basis.h), shared by the CPU and
// CUDA kernels.
#pragma once

#include "../common/basis.h"

namespace openmm_tensornet {

// out = a . b, or a^T . b, or a . b^T (row-major 3x3).
template <typename scalar_t, bool transpose_a, bool transpose_b>
OTN_HD void matrix_product(const scalar_t* a, const scalar_t* b, scalar_t* out) {
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            scalar_t sum = 0;
            for (int k = 0; k < 3; ++k)
                sum += (transpose_a ? a[k * 3 + i] : a[i * 3 + k]) * (transpose_b ? b[j * 3 + k] : b[k * 3 + j]);
            out[i * 3 + j] = sum;
        }
}

// Components of left . right, for components stored with stride ``stride`` (the channel count).
template <typename scalar_t, bool transpose_a, bool transpose_b>
OTN_HD void component_product(const scalar_t* left, const scalar_t* right, scalar_t* out, long stride) {
    scalar_t a[9], b[9], ma[9], mb[9], product[9], result[9];
    for (int k = 0; k < 9; ++k) {
        a[k] = left[k * stride];
        b[k] = right[k * stride];
    }
    components_to_matrix(a, ma);
    components_to_matrix(b, mb);
    matrix_product<scalar_t, transpose_a, transpose_b>(ma, mb, product);
    matrix_to_components(product, result);
    for (int k = 0; k < 9; ++k) out[k * stride] = result[k];
}

}  // namespace openmm_tensornet
