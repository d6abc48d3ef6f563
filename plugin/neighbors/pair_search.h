// Pair search shared by the CPU and CUDA kernels: one implementation of "which (i, j, shift) are within the cutoff".
//
// Conventions (docs/conventions.md): the pair (i, j) with integer cell shift S carries the vector
//   v = (x_i - x_j) - (S_0 a + S_1 b + S_2 c)
// where a, b, c are the box rows in OpenMM's reduced triclinic form. A pair is kept when |v|^2 < cutoff^2 evaluated
// from the positions as given (not wrapped), so the result does not depend on which image the caller passes.
// The cell list first filters candidates with wrapped, cell-sorted coordinates and a slightly larger cutoff (cheap,
// contiguous memory), then applies the exact test above.
#pragma once

#include <cstdint>
#include <cmath>

#include "../common/basis.h"  // OTN_HD

namespace openmm_tensornet {

template <typename scalar_t>
struct PairSearch {
    const scalar_t* positions = nullptr;   // [N, 3] as given
    const int64_t* batch = nullptr;        // [N] molecule index, or nullptr
    // cell algorithm
    const int32_t* cells = nullptr;        // [N, 3] cell coordinates of each atom
    const int32_t* wraps = nullptr;        // [N, 3] W with x = x_wrapped + W . box (periodic), else nullptr
    const scalar_t* wrapped = nullptr;     // [N, 3] wrapped positions, by atom
    const scalar_t* sorted = nullptr;      // [N, 3] wrapped positions in cell order
    const scalar_t* sorted_positions = nullptr;  // [N, 3] positions as given, in cell order
    const int32_t* sorted_wraps = nullptr;       // [N, 3] wraps in cell order (periodic)
    const int64_t* order = nullptr;        // [N] atom at each cell-ordered slot (ascending within a cell)
    const int64_t* cell_start = nullptr;   // [num_cells + 1] offsets into ``order``
    int64_t num_atoms = 0;
    int32_t grid[3] = {1, 1, 1};           // cells along a, b, c (or x, y, z without a box)
    int32_t reach[3] = {1, 1, 1};          // neighbouring cells searched on each side
    scalar_t box[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
    scalar_t cutoff2 = 0;                  // cutoff * cutoff, rounded once to scalar_t
    scalar_t filter2 = 0;                  // slightly larger: the cheap pre-test on wrapped coordinates
    bool periodic = false;
    bool use_cells = false;
    bool half = false;                     // keep only j < i
};

OTN_HD int32_t floor_div(int32_t value, int32_t divisor) {
    int32_t quotient = value / divisor;
    return (value % divisor != 0 && ((value < 0) != (divisor < 0))) ? quotient - 1 : quotient;
}

// The exact test on the positions as given: true when (x_i, x_j, S) is inside the cutoff.
template <typename scalar_t>
OTN_HD bool inside_cutoff(const PairSearch<scalar_t>& s, const scalar_t* xi, const scalar_t* xj, const int32_t shift[3]) {
    scalar_t v[3] = {xi[0] - xj[0], xi[1] - xj[1], xi[2] - xj[2]};
    if (s.periodic) {
        const scalar_t f0 = static_cast<scalar_t>(shift[0]), f1 = static_cast<scalar_t>(shift[1]),
                       f2 = static_cast<scalar_t>(shift[2]);
        for (int k = 0; k < 3; ++k) v[k] = v[k] - (f0 * s.box[0][k] + f1 * s.box[1][k] + f2 * s.box[2][k]);
    }
    return v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < s.cutoff2;
}

// Every neighbour of atom i, in a deterministic order, handed to ``emit(j, shift)``. Returns how many.
template <typename scalar_t, typename Emit>
OTN_HD int64_t search_atom(const PairSearch<scalar_t>& s, int64_t i, Emit& emit) {
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
            if (inside_cutoff(s, s.positions + 3 * i, s.positions + 3 * j, shift)) {
                emit(j, shift);
                ++found;
            }
        }
        return found;
    }
    const int32_t* ci = s.cells + 3 * i;
    const scalar_t* wi = s.wrapped + 3 * i;
    const scalar_t* pi = s.positions + 3 * i;
    const int32_t* wri = s.periodic ? s.wraps + 3 * i : nullptr;
    const scalar_t* sorted = s.sorted;
    const scalar_t filter2 = s.filter2;
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
                // atom i seen from this image of the neighbouring cell: x_i - q . box
                scalar_t x0 = wi[0], x1 = wi[1], x2 = wi[2];
                if (s.periodic) {
                    const scalar_t q0 = static_cast<scalar_t>(q[0]), q1 = static_cast<scalar_t>(q[1]),
                                   q2 = static_cast<scalar_t>(q[2]);
                    x0 -= q0 * s.box[0][0] + q1 * s.box[1][0] + q2 * s.box[2][0];
                    x1 -= q1 * s.box[1][1] + q2 * s.box[2][1];
                    x2 -= q2 * s.box[2][2];
                }
                const int64_t cell = c[0] + static_cast<int64_t>(s.grid[0]) * (c[1] + static_cast<int64_t>(s.grid[1]) * c[2]);
                const int64_t last = s.cell_start[cell + 1];
                for (int64_t k = s.cell_start[cell]; k < last; ++k) {
                    const scalar_t d0 = x0 - sorted[3 * k], d1 = x1 - sorted[3 * k + 1], d2 = x2 - sorted[3 * k + 2];
                    if (!(d0 * d0 + d1 * d1 + d2 * d2 < filter2)) continue;
                    const int64_t j = s.order[k];
                    if (j == i || (s.half && j > i)) continue;
                    if (s.batch != nullptr && s.batch[j] != molecule) continue;
                    int32_t shift[3] = {0, 0, 0};
                    if (s.periodic) {
                        const int32_t* wrj = s.sorted_wraps + 3 * k;
                        for (int m = 0; m < 3; ++m) shift[m] = q[m] + wri[m] - wrj[m];
                    }
                    if (inside_cutoff(s, pi, s.sorted_positions + 3 * k, shift)) {
                        emit(j, shift);
                        ++found;
                    }
                }
            }
        }
    }
    return found;
}

// Emitters: count only, or write into [2, capacity] indices and [capacity, 3] shifts starting at a slot.
struct CountPairs {
    OTN_HD void operator()(int64_t, const int32_t*) {}
};

struct WritePairs {
    int64_t* indices;
    int32_t* shifts;
    int64_t capacity;
    int64_t i;
    int64_t slot;
    OTN_HD void operator()(int64_t j, const int32_t* shift) {
        if (slot < capacity) {
            indices[slot] = i;
            indices[capacity + slot] = j;
            shifts[3 * slot + 0] = shift[0];
            shifts[3 * slot + 1] = shift[1];
            shifts[3 * slot + 2] = shift[2];
        }
        ++slot;
    }
};

}  // namespace openmm_tensornet
