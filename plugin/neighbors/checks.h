// Argument checks shared by the CPU and CUDA neighbour kernels. Messages name the argument, what was expected and
// what was given.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <string>

namespace openmm_tensornet {

enum class Algorithm { Automatic, Brute, Cells };

// Shape, dtype, device and scalar-argument checks: metadata only, no device synchronisation.
Algorithm check_arguments(const at::Tensor& positions, const c10::optional<at::Tensor>& box,
                          const c10::optional<at::Tensor>& batch, double cutoff, int64_t max_pairs,
                          const std::string& algorithm);

// Value checks that need the numbers on the host: finite box in reduced triclinic form, at least twice the cutoff
// wide. ``box`` is row-major [3][3] in double.
void check_box_values(const double box[3][3], double cutoff);

}  // namespace openmm_tensornet
