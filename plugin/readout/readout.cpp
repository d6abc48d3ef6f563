// TensorNet's invariant readout as one op (inference): part norms, LayerNorm, linear, activation.
//
// invariant_readout(features [N, 9, F], norm_weight [3F], norm_bias [3F], float eps, weight [F_out, 3F],
//                   bias [F_out], str activation) -> scalars [N, F_out]
//
//     scalars = act(LayerNorm((|I|^2, |A|^2, |S|^2)) W^T + b)
//
// with the squared Frobenius norms of the three irreducible parts of every channel, concatenated part by part
// (openmm_tensornet.ops.tensors.invariant_norms), exactly as TensorNet.forward computes them (the twin). First derivative
// with respect to features only (forces); the weights must not require gradients. ATen calls only (any device).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/activations.h"
#include "../common/parts.h"

namespace openmm_tensornet {

namespace {

void check_arguments(const at::Tensor& features, const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                     const at::Tensor& weight, const at::Tensor& bias, const std::string& activation) {
    TORCH_CHECK(features.dim() == 3 && features.size(1) == 9,
                "invariant_readout: features must have shape [N, 9, F]; got ", features.sizes());
    const int64_t width = 3 * features.size(2);
    TORCH_CHECK(norm_weight.dim() == 1 && norm_weight.size(0) == width && norm_bias.sizes() == norm_weight.sizes(),
                "invariant_readout: norm_weight and norm_bias must have shape [3F] = [", width, "]; got ",
                norm_weight.sizes(), " and ", norm_bias.sizes());
    TORCH_CHECK(weight.dim() == 2 && weight.size(1) == width && bias.dim() == 1 && bias.size(0) == weight.size(0),
                "invariant_readout: weight must have shape [F_out, 3F] = [F_out, ", width, "] and bias [F_out]; got ",
                weight.sizes(), " and ", bias.sizes());
    TORCH_CHECK(known_activation(activation), "invariant_readout: unknown activation '", activation, "'");
    for (const at::Tensor* t : {&norm_weight, &norm_bias, &weight, &bias}) {
        TORCH_CHECK(t->scalar_type() == features.scalar_type(), "invariant_readout: all inputs must be ",
                    features.scalar_type(), "; got ", t->scalar_type());
        TORCH_CHECK(t->device() == features.device(), "invariant_readout: all inputs must be on ", features.device());
    }
}

// {scalars, norms, mean, rstd, pre}
std::vector<at::Tensor> invariant_readout_forward(const at::Tensor& features_in, const at::Tensor& norm_weight,
                                                  const at::Tensor& norm_bias, double eps, const at::Tensor& weight,
                                                  const at::Tensor& bias, c10::string_view activation_name) {
    const std::string activation(activation_name);
    check_arguments(features_in, norm_weight, norm_bias, weight, bias, activation);
    const at::Tensor features = features_in.contiguous();
    const int64_t n = features.size(0), width = 3 * features.size(2);
    at::Tensor norms = sum_parts(features * features).view({n, width});
    auto [normed, mean, rstd] = at::native_layer_norm(norms, {width}, norm_weight, norm_bias, eps);
    at::Tensor pre = at::addmm(bias, normed, weight.t());
    at::Tensor scalars = activate(pre, activation);
    return {scalars, norms, mean, rstd, pre};
}

at::Tensor invariant_readout_backward(const at::Tensor& grad, at::TensorList saved, const at::Tensor& features,
                                      const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                                      const at::Tensor& weight, c10::string_view activation_name) {
    TORCH_CHECK(saved.size() == 5, "invariant_readout_backward: expected the 5 saved tensors of the forward; got ",
                saved.size());
    const std::string activation(activation_name);
    const at::Tensor &scalars = saved[0], &norms = saved[1], &mean = saved[2], &rstd = saved[3], &pre = saved[4];
    const int64_t n = features.size(0), f = features.size(2);
    at::Tensor grad_pre = activate_backward(grad.contiguous(), pre, scalars, activation);
    at::Tensor grad_normed = grad_pre.mm(weight);
    at::Tensor grad_norms = std::get<0>(at::native_layer_norm_backward(
        grad_normed, norms, {3 * f}, mean, rstd, norm_weight, norm_bias, {true, false, false}));
    return expand_parts(grad_norms.view({n, 3, f}), 1).mul_(features).mul_(2.0);  // d|x|^2 = 2 x dx
}

at::Tensor invariant_readout_plain(const at::Tensor& features, const at::Tensor& norm_weight,
                                   const at::Tensor& norm_bias, double eps, const at::Tensor& weight,
                                   const at::Tensor& bias, c10::string_view activation) {
    return invariant_readout_forward(features, norm_weight, norm_bias, eps, weight, bias, activation)[0];
}

// Forward and backward go through the dispatcher, so that torch.compile traces them as opaque ops.
class InvariantReadout : public torch::autograd::Function<InvariantReadout> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& features,
                              const at::Tensor& norm_weight, const at::Tensor& norm_bias, double eps,
                              const at::Tensor& weight, const at::Tensor& bias, const std::string& activation) {
        at::AutoDispatchBelowADInplaceOrView guard;
        for (const at::Tensor* t : {&norm_weight, &norm_bias, &weight, &bias})
            TORCH_CHECK(!t->requires_grad(),
                        "invariant_readout: the weights require gradients, which this inference op does not "
                        "provide; use the pure-torch path (model.train()) or freeze the weights "
                        "(requires_grad_(False)).");
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::invariant_readout_forward", "")
                             .typed<decltype(invariant_readout_forward)>();
        std::vector<at::Tensor> saved = op.call(features, norm_weight, norm_bias, eps, weight, bias, activation);
        const at::Tensor scalars = saved[0];
        saved.insert(saved.end(), {features, norm_weight, norm_bias, weight});
        ctx->save_for_backward(saved);
        ctx->saved_data["activation"] = activation;
        return scalars;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "invariant_readout: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto v = ctx->get_saved_variables();
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::invariant_readout_backward", "")
                             .typed<decltype(invariant_readout_backward)>();
        const std::vector<at::Tensor> saved(v.begin(), v.begin() + 5);
        torch::autograd::variable_list result(7);
        result[0] = op.call(grads[0], saved, v[5], v[6], v[7], v[8], ctx->saved_data["activation"].toStringRef());
        return result;
    }
};

at::Tensor invariant_readout_autograd(const at::Tensor& features, const at::Tensor& norm_weight,
                                      const at::Tensor& norm_bias, double eps, const at::Tensor& weight,
                                      const at::Tensor& bias, c10::string_view activation) {
    return InvariantReadout::apply(features, norm_weight, norm_bias, eps, weight, bias, std::string(activation));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("invariant_readout(Tensor features, Tensor norm_weight, Tensor norm_bias, float eps, Tensor weight, "
          "Tensor bias, str activation) -> Tensor");
    m.def("invariant_readout_forward(Tensor features, Tensor norm_weight, Tensor norm_bias, float eps, "
          "Tensor weight, Tensor bias, str activation) -> Tensor[]");
    m.def("invariant_readout_backward(Tensor grad, Tensor[] saved, Tensor features, Tensor norm_weight, "
          "Tensor norm_bias, Tensor weight, str activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(openmm_tensornet, CompositeExplicitAutograd, m) {
    m.impl("invariant_readout", &invariant_readout_plain);
    m.impl("invariant_readout_forward", &invariant_readout_forward);
    m.impl("invariant_readout_backward", &invariant_readout_backward);
}

TORCH_LIBRARY_IMPL(openmm_tensornet, Autograd, m) { m.impl("invariant_readout", &invariant_readout_autograd); }

}  // namespace openmm_tensornet
