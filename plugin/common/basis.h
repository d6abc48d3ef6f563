// The one definition of TensorNet's 9-component layout of a 3x3 tensor, shared by every CPU and CUDA kernel and
// equal to openmm_tensornet/ops/tensors.py (tests/test_message_ops.py checks the ops against it):
//   component 0    identity / sqrt(3)                                    part 0 (I)
//   components 1-3 skew [e_x]_x, [e_y]_x, [e_z]_x / sqrt(2)              part 1 (A), odd when the edge vector flips
//   components 4-8 symmetric traceless xy, xz, yz, (xx - yy) / sqrt(2),  part 2 (S)
//                  (xx + yy - 2 zz) / sqrt(6)
// The basis is orthonormal, so matrix_to_components is the transpose of components_to_matrix.
#pragma once

#if defined(__CUDACC__)
#define OTN_HD __host__ __device__ __forceinline__
#else
#define OTN_HD inline
#endif

namespace openmm_tensornet {

// The irreducible part (0: I, 1: A, 2: S) of component k, and the parts' first components and sizes (1 + 3 + 5).
OTN_HD constexpr int part_of(int k) { return k == 0 ? 0 : (k < 4 ? 1 : 2); }
OTN_HD constexpr int part_first(int part) { return part == 0 ? 0 : (part == 1 ? 1 : 4); }
OTN_HD constexpr int part_size(int part) { return 2 * part + 1; }

// Sign of component k when the pair's unit vector flips (the skew part is odd).
OTN_HD constexpr int parity(int k) { return part_of(k) == 1 ? -1 : 1; }

template <typename T>
struct InvSqrt {
    static constexpr T r2 = T(0.70710678118654752440);  // 1 / sqrt(2)
    static constexpr T r3 = T(0.57735026918962576451);  // 1 / sqrt(3)
    static constexpr T r6 = T(0.40824829046386301637);  // 1 / sqrt(6)
};

// Components c(k) -> row-major matrix entries m(i): any accessors (pointers, strided or block-wise views).
template <typename T, typename C, typename M>
OTN_HD void components_to_matrix(const C& c, M&& m) {
    const T r2 = InvSqrt<T>::r2, r3 = InvSqrt<T>::r3, r6 = InvSqrt<T>::r6;
    const T iso = c(0) * r3;
    m(0) = iso + c(7) * r2 + c(8) * r6;
    m(4) = iso - c(7) * r2 + c(8) * r6;
    m(8) = iso - 2 * c(8) * r6;
    m(1) = (c(4) - c(3)) * r2;
    m(3) = (c(4) + c(3)) * r2;
    m(2) = (c(5) + c(2)) * r2;
    m(6) = (c(5) - c(2)) * r2;
    m(5) = (c(6) - c(1)) * r2;
    m(7) = (c(6) + c(1)) * r2;
}

// Row-major matrix entries m(i) -> components c(k).
template <typename T, typename M, typename C>
OTN_HD void matrix_to_components(const M& m, C&& c) {
    const T r2 = InvSqrt<T>::r2, r3 = InvSqrt<T>::r3, r6 = InvSqrt<T>::r6;
    c(0) = (m(0) + m(4) + m(8)) * r3;
    c(1) = (m(7) - m(5)) * r2;
    c(2) = (m(2) - m(6)) * r2;
    c(3) = (m(3) - m(1)) * r2;
    c(4) = (m(1) + m(3)) * r2;
    c(5) = (m(2) + m(6)) * r2;
    c(6) = (m(5) + m(7)) * r2;
    c(7) = (m(0) - m(4)) * r2;
    c(8) = (m(0) + m(4) - 2 * m(8)) * r6;
}

// Accessors of a plain array: the form the per-element kernels use.
template <typename T>
struct Entries {
    T* data;
    OTN_HD T& operator()(int k) const { return data[k]; }
};

template <typename T>
OTN_HD void components_to_matrix(const T* c, T* m) {
    components_to_matrix<T>(Entries<const T>{c}, Entries<T>{m});
}

template <typename T>
OTN_HD void matrix_to_components(const T* m, T* c) {
    matrix_to_components<T>(Entries<const T>{m}, Entries<T>{c});
}

}  // namespace openmm_tensornet
