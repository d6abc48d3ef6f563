// Pair search shared by the CPU and CUDA kernels: one implementation of "which (i, j, shift) are within the cutoff".
//
// Conventions (docs/conventions.md): the pair (i, j) with integer cell shift S carries the vector
//   v = (x_i - x_j) - (S_0 a + S_1 b + S_2 c)
// where a, b, c are the box rows in OpenMM's reduced triclinic form. The expression is evaluated in exactly this
// order here and in the Python wrapper (openmm_tensornet/neighbors.py: vectors_from_shifts), so the kernel's
// inside/outside decision and the distances returned to the model agree bit for bit.
#pragma once

#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define OTN_HD __host__ __device__ __forceinline__
#else
#define OTN_HD inline
#endif

namespace openmm_tensornet {

template <typename scalar_t>
struct PairSearch {
    const scalar_t* positions = nullptr;   // [N, 3]
    const int64_t* batch = nullptr;        // [N] molecule index, or nullptr
    const int32_t* cells = nullptr;        // [N, 3] cell coordinates of each atom (cell algorithm)
    const int32_t* wraps = nullptr;        // [N, 3] box image holding the atom: x = x_wrapped + W . box (periodic)
    const int64_t* order = nullptr;        // [N] atoms sorted by cell (stable, so ascending within a cell)
    const int64_t* cell_start = nullptr;   // [num_cells + 1] offsets into ``order``
    int64_t num_atoms = 0;
    int32_t grid[3] = {1, 1, 1};           // cells along a, b, c (or x, y, z without a box)
    int32_t reach[3] = {1, 1, 1};          // neighbouring cells searched on each side
    scalar_t box[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
    scalar_t cutoff2 = 0;                  // cutoff * cutoff, rounded once to scalar_t
    bool periodic = false;
    bool use_cells = false;
    bool half = false;                     // keep only j < i
};

// Where the pairs of one atom go. ``indices`` is [2, capacity] (row 0: i, row 1: j), ``shifts`` is [capacity, 3].
struct PairSink {
    int64_t* indices = nullptr;            // nullptr: only count
    int32_t* shifts = nullptr;
    int64_t capacity = 0;
    int64_t offset = 0;                    // first slot of this atom
};

OTN_HD int32_t floor_div(int32_t value, int32_t divisor) {
    int32_t quotient = value / divisor;
    return (value % divisor != 0 && ((value < 0) != (divisor < 0))) ? quotient - 1 : quotient;
}

// Test one candidate and record it when it is inside the cutoff. Returns 1 if recorded (or counted), else 0.
template <typename scalar_t>
OTN_HD int64_t test_pair(const PairSearch<scalar_t>& s, int64_t i, int64_t j, int32_t s0, int32_t s1, int32_t s2,
                         const PairSink& sink, int64_t found) {
    const scalar_t* xi = s.positions + 3 * i;
    const scalar_t* xj = s.positions + 3 * j;
    scalar_t v[3] = {xi[0] - xj[0], xi[1] - xj[1], xi[2] - xj[2]};
    if (s.periodic) {
        const scalar_t f0 = static_cast<scalar_t>(s0), f1 = static_cast<scalar_t>(s1), f2 = static_cast<scalar_t>(s2);
        for (int k = 0; k < 3; ++k) {
            scalar_t offset = f0 * s.box[0][k] + f1 * s.box[1][k];
            offset = offset + f2 * s.box[2][k];
            v[k] = v[k] - offset;
        }
    }
    const scalar_t d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    if (!(d2 < s.cutoff2)) return 0;
    if (sink.indices != nullptr) {
        const int64_t slot = sink.offset + found;
        if (slot < sink.capacity) {
            sink.indices[slot] = i;
            sink.indices[sink.capacity + slot] = j;
            sink.shifts[3 * slot + 0] = s0;
            sink.shifts[3 * slot + 1] = s1;
            sink.shifts[3 * slot + 2] = s2;
        }
    }
    return 1;
}

// All neighbours of atom i, in a deterministic order. Returns how many there are; writes them when sink has storage.
template <typename scalar_t>
OTN_HD int64_t search_atom(const PairSearch<scalar_t>& s, int64_t i, const PairSink& sink) {
    int64_t found = 0;
    const int64_t molecule = s.batch != nullptr ? s.batch[i] : 0;
    if (!s.use_cells) {
        const int64_t end = s.half ? i : s.num_atoms;
        for (int64_t j = 0; j < end; ++j) {
            if (j == i || (s.batch != nullptr && s.batch[j] != molecule)) continue;
            int32_t shift[3] = {0, 0, 0};
            if (s.periodic) {
                // Minimum image by sequential rounding along c, b, a: exact for the reduced form when the cutoff is
                // at most half of a_x, b_y and c_z (checked by the caller).
                const scalar_t* xi = s.positions + 3 * i;
                const scalar_t* xj = s.positions + 3 * j;
                scalar_t d[3] = {xi[0] - xj[0], xi[1] - xj[1], xi[2] - xj[2]};
                for (int k = 2; k >= 0; --k) {
                    const scalar_t n = nearbyint(d[k] / s.box[k][k]);
                    for (int m = 0; m < 3; ++m) d[m] = d[m] - n * s.box[k][m];
                    shift[k] = static_cast<int32_t>(n);
                }
            }
            found += test_pair(s, i, j, shift[0], shift[1], shift[2], sink, found);
        }
        return found;
    }
    const int32_t* ci = s.cells + 3 * i;
    const int32_t* wi = s.wraps != nullptr ? s.wraps + 3 * i : nullptr;
    for (int32_t dz = -s.reach[2]; dz <= s.reach[2]; ++dz) {
        for (int32_t dy = -s.reach[1]; dy <= s.reach[1]; ++dy) {
            for (int32_t dx = -s.reach[0]; dx <= s.reach[0]; ++dx) {
                int32_t c[3] = {ci[0] + dx, ci[1] + dy, ci[2] + dz};
                int32_t q[3] = {0, 0, 0};
                bool inside = true;
                for (int k = 0; k < 3; ++k) {
                    if (s.periodic) {
                        q[k] = floor_div(c[k], s.grid[k]);
                        c[k] -= q[k] * s.grid[k];
                    } else if (c[k] < 0 || c[k] >= s.grid[k]) {
                        inside = false;
                    }
                }
                if (!inside) continue;
                const int64_t cell = c[0] + static_cast<int64_t>(s.grid[0]) * (c[1] + static_cast<int64_t>(s.grid[1]) * c[2]);
                for (int64_t k = s.cell_start[cell]; k < s.cell_start[cell + 1]; ++k) {
                    const int64_t j = s.order[k];
                    if (j == i || (s.half && j > i)) continue;
                    if (s.batch != nullptr && s.batch[j] != molecule) continue;
                    int32_t shift[3] = {0, 0, 0};
                    if (s.periodic) {
                        const int32_t* wj = s.wraps + 3 * j;
                        for (int m = 0; m < 3; ++m) shift[m] = q[m] + wi[m] - wj[m];
                    }
                    found += test_pair(s, i, j, shift[0], shift[1], shift[2], sink, found);
                }
            }
        }
    }
    return found;
}

}  // namespace openmm_tensornet
