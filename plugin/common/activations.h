// Activations by name (openmm_tensornet/ops/activations.py) and their derivatives, as ATen calls (any device).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <string>

namespace openmm_tensornet {

inline bool known_activation(const std::string& name) {
    return name == "silu" || name == "tanh" || name == "sigmoid" || name == "mish" || name == "ssp";
}

inline at::Tensor activate(const at::Tensor& x, const std::string& activation) {
    if (activation == "silu") return at::silu(x);
    if (activation == "tanh") return at::tanh(x);
    if (activation == "sigmoid") return at::sigmoid(x);
    if (activation == "mish") return at::mish(x);
    if (activation == "ssp") return at::softplus(x) - std::log(2.0);
    TORCH_CHECK(false, "unknown activation '", activation, "' (expected silu, tanh, sigmoid, mish or ssp)");
}

// Gradient through the activation, given its input ``x`` and output ``y``.
inline at::Tensor activate_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y,
                                    const std::string& activation) {
    if (activation == "silu") return at::silu_backward(grad, x);
    if (activation == "tanh") return at::tanh_backward(grad, y);
    if (activation == "sigmoid") return at::sigmoid_backward(grad, y);
    if (activation == "mish") return at::mish_backward(grad, x);
    return at::softplus_backward(grad, x, 1.0, 20.0);  // ssp: softplus shifted by a constant
}

}  // namespace openmm_tensornet
