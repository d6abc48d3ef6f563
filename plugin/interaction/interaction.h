// The elementwise steps of tensor_interaction (interaction.cpp) fused into one pass each on the CPU
// (interaction_cpu.cpp). Every tensor is contiguous, [N, 9, F] unless noted; ``factor`` is the charge factor [N],
// ``loop`` the per-component self-loop weights [9, F], denominators are [N, 1, F].
#pragma once

#include <ATen/ATen.h>

namespace openmm_tensornet {

// y = x / (|x|^2 + 1); returns {y, denominator}.
std::tuple<at::Tensor, at::Tensor> normalise_cpu(const at::Tensor& x);

// With g = grad + extra (both defined): g / denominator - 2 y <g, y>, the gradient through normalise.
at::Tensor normalise_backward_cpu(const at::Tensor& grad, const at::Tensor& extra, const at::Tensor& y,
                                  const at::Tensor& denominator);

// messages += loop * mixed (in place), C = c (M Y + Y M) (O(3)) or 2 Y M (SO(3)); returns {C / (|C|^2 + 1),
// denominator}.
std::tuple<at::Tensor, at::Tensor> combine_cpu(at::Tensor& messages, const at::Tensor& mixed, const at::Tensor& loop,
                                               const at::Tensor& factor, bool so3);

// Gradients {grad_messages, grad_mixed} of combine_cpu's output from grad_normalised (the gradient of C / (|C|^2 + 1)),
// including the self-loop term loop * grad_messages in grad_mixed (messages: after the in-place update).
std::tuple<at::Tensor, at::Tensor> combine_backward_cpu(const at::Tensor& grad_normalised,
                                                        const at::Tensor& normalised, const at::Tensor& denominator,
                                                        const at::Tensor& messages, const at::Tensor& mixed,
                                                        const at::Tensor& loop, const at::Tensor& factor, bool so3);

// out = Xn + U + c U U.
at::Tensor finish_cpu(const at::Tensor& normalised, const at::Tensor& update, const at::Tensor& factor);

// Gradient with respect to U of finish_cpu's output: grad + c (G U^T + U^T G).
at::Tensor finish_backward_cpu(const at::Tensor& grad, const at::Tensor& update, const at::Tensor& factor);

}  // namespace openmm_tensornet
