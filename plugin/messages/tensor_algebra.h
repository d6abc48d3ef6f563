// 3x3 tensors in the orthonormal irreducible basis of openmm_tensornet/nn/tensors.py (components 0: identity / sqrt(3);
// 1-3: skew [e_x]_x, [e_y]_x, [e_z]_x / sqrt(2); 4-8: symmetric traceless xy, xz, yz, (xx - yy) / sqrt(2),
// (xx + yy - 2 zz) / sqrt(6)), shared by the CPU and CUDA kernels. The two maps are each other's transpose.
#pragma once

#ifdef __CUDACC__
#define OTN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define OTN_HOST_DEVICE inline
#endif

namespace openmm_tensornet {

// Components c[9] -> row-major matrix m[9].
template <typename scalar_t>
OTN_HOST_DEVICE void components_to_matrix(const scalar_t* c, scalar_t* m) {
    const scalar_t r2 = scalar_t(0.70710678118654752440), r3 = scalar_t(0.57735026918962576451),
                   r6 = scalar_t(0.40824829046386301637);
    const scalar_t iso = c[0] * r3;
    m[0] = iso + c[7] * r2 + c[8] * r6;
    m[4] = iso - c[7] * r2 + c[8] * r6;
    m[8] = iso - 2 * c[8] * r6;
    m[1] = (c[4] - c[3]) * r2;
    m[3] = (c[4] + c[3]) * r2;
    m[2] = (c[5] + c[2]) * r2;
    m[6] = (c[5] - c[2]) * r2;
    m[5] = (c[6] - c[1]) * r2;
    m[7] = (c[6] + c[1]) * r2;
}

// Row-major matrix m[9] -> components c[9].
template <typename scalar_t>
OTN_HOST_DEVICE void matrix_to_components(const scalar_t* m, scalar_t* c) {
    const scalar_t r2 = scalar_t(0.70710678118654752440), r3 = scalar_t(0.57735026918962576451),
                   r6 = scalar_t(0.40824829046386301637);
    c[0] = (m[0] + m[4] + m[8]) * r3;
    c[1] = (m[7] - m[5]) * r2;
    c[2] = (m[2] - m[6]) * r2;
    c[3] = (m[3] - m[1]) * r2;
    c[4] = (m[1] + m[3]) * r2;
    c[5] = (m[2] + m[6]) * r2;
    c[6] = (m[5] + m[7]) * r2;
    c[7] = (m[0] - m[4]) * r2;
    c[8] = (m[0] + m[4] - 2 * m[8]) * r6;
}

// out = a . b, or a^T . b, or a . b^T (row-major 3x3).
template <typename scalar_t, bool transpose_a, bool transpose_b>
OTN_HOST_DEVICE void matrix_product(const scalar_t* a, const scalar_t* b, scalar_t* out) {
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
OTN_HOST_DEVICE void component_product(const scalar_t* left, const scalar_t* right, scalar_t* out, long stride) {
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
