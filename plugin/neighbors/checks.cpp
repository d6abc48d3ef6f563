#include "checks.h"

#include <cmath>
#include <sstream>

namespace openmm_tensornet {

namespace {
std::string shape_of(const at::Tensor& t) {
    std::ostringstream out;
    out << t.sizes();
    return out.str();
}
}  // namespace

Algorithm check_arguments(const at::Tensor& positions, const c10::optional<at::Tensor>& box,
                          const c10::optional<at::Tensor>& batch, double cutoff, int64_t max_pairs,
                          const std::string& algorithm) {
    TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3,
                "neighbor_pairs: positions must have shape [N, 3]; got ", shape_of(positions));
    TORCH_CHECK(positions.scalar_type() == at::kFloat || positions.scalar_type() == at::kDouble,
                "neighbor_pairs: positions must be float32 or float64; got ", positions.scalar_type());
    TORCH_CHECK(positions.size(0) < (int64_t(1) << 31), "neighbor_pairs: at most 2^31 - 1 atoms; got ",
                positions.size(0));
    TORCH_CHECK(std::isfinite(cutoff) && cutoff > 0, "neighbor_pairs: cutoff must be a positive finite number; got ",
                cutoff);
    TORCH_CHECK(max_pairs >= -1, "neighbor_pairs: max_pairs must be -1 (no fixed capacity) or >= 0; got ", max_pairs);
    if (box.has_value()) {
        const at::Tensor& b = box.value();
        TORCH_CHECK(b.dim() == 2 && b.size(0) == 3 && b.size(1) == 3,
                    "neighbor_pairs: box must have shape [3, 3] (rows a, b, c); got ", shape_of(b));
        TORCH_CHECK(b.scalar_type() == positions.scalar_type(), "neighbor_pairs: box must have the dtype of positions (",
                    positions.scalar_type(), "); got ", b.scalar_type());
        TORCH_CHECK(b.device() == positions.device(), "neighbor_pairs: box must be on the device of positions (",
                    positions.device(), "); got ", b.device());
    }
    if (batch.has_value()) {
        const at::Tensor& m = batch.value();
        TORCH_CHECK(m.dim() == 1 && m.size(0) == positions.size(0),
                    "neighbor_pairs: batch must have shape [N] with N = ", positions.size(0), " atoms; got ",
                    shape_of(m));
        TORCH_CHECK(m.scalar_type() == at::kLong, "neighbor_pairs: batch must be int64; got ", m.scalar_type());
        TORCH_CHECK(m.device() == positions.device(), "neighbor_pairs: batch must be on the device of positions (",
                    positions.device(), "); got ", m.device());
    }
    if (algorithm == "auto") return Algorithm::Automatic;
    if (algorithm == "brute") return Algorithm::Brute;
    if (algorithm == "cells") return Algorithm::Cells;
    TORCH_CHECK(false, "neighbor_pairs: algorithm must be 'auto', 'brute' or 'cells'; got '", algorithm, "'");
}

void check_box_values(const double box[3][3], double cutoff) {
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            TORCH_CHECK(std::isfinite(box[r][c]), "neighbor_pairs: box vectors contain NaN or infinity");
    TORCH_CHECK(box[0][1] == 0 && box[0][2] == 0 && box[1][2] == 0,
                "neighbor_pairs: box must be in OpenMM's reduced triclinic form (a_y = a_z = b_z = 0); got a = (",
                box[0][0], ", ", box[0][1], ", ", box[0][2], "), b = (", box[1][0], ", ", box[1][1], ", ", box[1][2],
                "). Use the box vectors that OpenMM reports (State.getPeriodicBoxVectors).");
    TORCH_CHECK(box[0][0] >= 2 * cutoff && box[1][1] >= 2 * cutoff && box[2][2] >= 2 * cutoff,
                "neighbor_pairs: the periodic box is too small for the cutoff: a_x, b_y, c_z = ", box[0][0], ", ",
                box[1][1], ", ", box[2][2], " must each be at least twice the cutoff (", cutoff,
                "). Use a larger box (more solvent padding) or a model with a shorter cutoff.");
    // Same relative tolerance as the Python check (neighbors.py): boxes written with rounded decimals stay valid.
    const double slack = 1 + 1e-5;
    TORCH_CHECK(2 * std::abs(box[1][0]) <= box[0][0] * slack && 2 * std::abs(box[2][0]) <= box[0][0] * slack &&
                    2 * std::abs(box[2][1]) <= box[1][1] * slack,
                "neighbor_pairs: box must be in OpenMM's reduced triclinic form (|b_x|, |c_x| <= a_x / 2 and "
                "|c_y| <= b_y / 2); got b_x = ", box[1][0], ", c_x = ", box[2][0], ", c_y = ", box[2][1],
                ". Use the box vectors that OpenMM reports (State.getPeriodicBoxVectors).");
}

}  // namespace openmm_tensornet
