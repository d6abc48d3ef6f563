// One TensorNet interaction layer as a single op (inference): schema, forward, analytic backward and autograd.
//
// tensor_interaction(features [N, 9, F], radial [P, 3, F], loop [3, F], charge_factor [N], mix_in [3, F, F],
//                    mix_out [3, F, F], pairs [2, P], first_ptr [N + 1], second_order [P], second_ptr [N + 1],
//                    bool so3) -> [N, 9, F]
// (loop, mix_in and mix_out may also be given per component, [9, F] and [9, F, F]: component k takes part(k).)
//
// With X the features in the irreducible layout of openmm_tensornet/ops/tensors.py, c the charge factor per atom,
// mix(T, W) the channel mixing of the I, A and S parts with W[0], W[1], W[2] (T[:, k] @ W[part(k)]^T), msg the op
// tensor_messages over the half list, and x the channel-wise matrix product (tensor_product):
//
//     Xn = X / (|X|^2 + 1)                 |.|^2 sums the squares of the 9 components, per atom and channel
//     Y  = mix(Xn, mix_in)
//     M  = msg(radial, Y) + loop[part(k)] * Y          (loop: the radial weights of the self-loop)
//     C  = c (M x Y + Y x M)   (O(3))   or   2 Y x M   (SO(3))
//     Cn = C / (|C|^2 + 1)
//     U  = mix(Cn, mix_out)
//     out = Xn + U + c U x U
//
// exactly as openmm_tensornet.nn.interaction.Interaction computes it in plain torch (the twin). The op exists for speed
// at small atom counts: one call instead of a few hundred interpreted operator calls and autograd nodes. It is built
// from ATen calls and the tensor_messages / tensor_product ops, so it runs on every device those support.
//
// Derivatives: first derivatives with respect to features and radial only (forces). loop, charge_factor and the mix
// weights must not require gradients (inference with frozen weights); training uses the twin, which is twice
// differentiable.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "../common/parts.h"
#include "../messages/messages.h"
#include "interaction.h"

namespace openmm_tensornet {

namespace {

const char* kSecondDerivative =
    "tensor_interaction: the compiled op has no second derivative (create_graph=True). Train with model.train(), "
    "which uses the pure-torch path, or evaluate forces without create_graph.";

void check_arguments(const at::Tensor& features, const at::Tensor& radial, const at::Tensor& loop,
                     const at::Tensor& charge_factor, const at::Tensor& mix_in, const at::Tensor& mix_out,
                     const at::Tensor& pairs) {
    TORCH_CHECK(features.dim() == 3 && features.size(1) == 9,
                "tensor_interaction: features must have shape [N, 9, F]; got ", features.sizes());
    const int64_t n = features.size(0), f = features.size(2);
    TORCH_CHECK(radial.dim() == 3 && radial.size(1) == 3 && radial.size(2) == f,
                "tensor_interaction: radial must have shape [P, 3, F] with F = ", f, "; got ", radial.sizes());
    TORCH_CHECK(loop.dim() == 2 && (loop.size(0) == 3 || loop.size(0) == 9) && loop.size(1) == f,
                "tensor_interaction: loop must have shape [3, F] (or [9, F] per component) with F = ", f, "; got ",
                loop.sizes());
    TORCH_CHECK(charge_factor.dim() == 1 && charge_factor.size(0) == n,
                "tensor_interaction: charge_factor must have shape [N] = [", n, "]; got ", charge_factor.sizes());
    for (const at::Tensor* w : {&mix_in, &mix_out})
        TORCH_CHECK(w->dim() == 3 && (w->size(0) == 3 || w->size(0) == 9) && w->size(1) == f && w->size(2) == f,
                    "tensor_interaction: mix_in and mix_out must have shape [3, F, F] (or [9, F, F] per component) "
                    "with F = ", f, "; got ", w->sizes());
    for (const at::Tensor* t : {&radial, &loop, &charge_factor, &mix_in, &mix_out}) {
        TORCH_CHECK(t->scalar_type() == features.scalar_type(), "tensor_interaction: all floating inputs must be ",
                    features.scalar_type(), "; got ", t->scalar_type());
        TORCH_CHECK(t->device() == features.device(), "tensor_interaction: all inputs must be on ",
                    features.device());
    }
    TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.size(1) == radial.size(0),
                "tensor_interaction: pairs must have shape [2, P] with P = ", radial.size(0), "; got ",
                pairs.sizes());
}

// out[:, k, :] = x[:, k, :] @ weights[k] for per-component matrices ``weights [9, F, F_out]``: one batched product
// over the components, then back to the [N, 9, F_out] layout.
at::Tensor mix(const at::Tensor& x, const at::Tensor& weights) {
    return at::bmm(x.transpose(0, 1), weights).transpose(0, 1).contiguous();
}

// x / (|x|^2 + 1) and the denominator [N, 1, F].
std::tuple<at::Tensor, at::Tensor> normalise(const at::Tensor& x) {
    at::Tensor denominator = (x * x).sum(1, /*keepdim=*/true).add_(1.0);
    return {x / denominator, denominator};
}

// Gradient through y = x / (|x|^2 + 1), from y and the denominator: g / denominator - 2 y <g, y>.
at::Tensor normalise_backward(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& denominator) {
    at::Tensor dot = (grad * y).sum(1, /*keepdim=*/true);
    return (grad / denominator).addcmul_(y, dot, -2.0);
}

// The CPU passes of interaction_cpu.cpp, unless OPENMM_TENSORNET_GENERIC_OPS=1 asks for the ATen composition that
// other devices use (the tests run both on the CPU).
bool fused_passes(const at::Tensor& features) {
    if (!features.is_cpu()) return false;
    const char* generic = std::getenv("OPENMM_TENSORNET_GENERIC_OPS");
    return generic == nullptr || std::string(generic) != "1";
}

struct Saved {
    at::Tensor mix_in, mix_out, loop, factor, normalised, denominator, mixed, messages, product, product_denominator,
        update, out;
};

Saved forward_pass(const at::Tensor& features_in, const at::Tensor& radial, const at::Tensor& loop,
                   const at::Tensor& charge_factor, const at::Tensor& mix_in, const at::Tensor& mix_out,
                   const at::Tensor& pairs, const at::Tensor& first_ptr, const at::Tensor& second_order,
                   const at::Tensor& second_ptr, bool so3) {
    check_arguments(features_in, radial, loop, charge_factor, mix_in, mix_out, pairs);
    const at::Tensor features = features_in.contiguous();
    const bool fused = fused_passes(features);
    Saved s;
    s.mix_in = component_rows(mix_in);  // [9, F_out, F]
    s.mix_out = component_rows(mix_out);
    s.loop = component_rows(loop);  // [9, F]
    s.factor = charge_factor.contiguous();
    const at::Tensor factor = s.factor.view({-1, 1, 1});
    std::tie(s.normalised, s.denominator) = fused ? normalise_cpu(features) : normalise(features);
    s.mixed = mix(s.normalised, s.mix_in.transpose(1, 2));
    s.messages = call_messages(radial, s.mixed, pairs, first_ptr, second_order, second_ptr);
    if (fused) {
        std::tie(s.product, s.product_denominator) = combine_cpu(s.messages, s.mixed, s.loop, s.factor, so3);
    } else {
        s.messages.addcmul_(s.loop.unsqueeze(0), s.mixed);
        at::Tensor product;
        if (so3) {
            product = call_product(s.mixed, s.messages).mul_(2.0);
        } else {
            product = call_product(s.messages, s.mixed).add_(call_product(s.mixed, s.messages)).mul_(factor);
        }
        std::tie(s.product, s.product_denominator) = normalise(product);
    }
    s.update = mix(s.product, s.mix_out.transpose(1, 2));
    s.out = fused ? finish_cpu(s.normalised, s.update, s.factor)
                  : call_product(s.update, s.update).mul_(factor).add_(s.normalised).add_(s.update);
    return s;
}

// Gradients {features, radial} from the output gradient (radial: only when ``radial_grad``).
std::tuple<at::Tensor, at::Tensor> backward_pass(const at::Tensor& grad_in, const Saved& s, const at::Tensor& radial,
                                                 const at::Tensor& pairs, const at::Tensor& first_ptr,
                                                 const at::Tensor& second_order, const at::Tensor& second_ptr,
                                                 bool so3, bool radial_grad) {
    const at::Tensor grad = grad_in.contiguous();
    const bool fused = fused_passes(grad);
    const at::Tensor factor = s.factor.view({-1, 1, 1});
    // out = Xn + U + c U x U
    at::Tensor grad_update;
    if (fused) {
        grad_update = finish_backward_cpu(grad, s.update, s.factor);
    } else {
        auto [grad_left, grad_right] = call_product_backward(grad * factor, s.update, s.update);
        grad_update = grad_left.add_(grad_right).add_(grad);
    }
    at::Tensor grad_product = mix(grad_update, s.mix_out);
    at::Tensor grad_mixed, grad_messages;
    if (fused) {
        std::tie(grad_messages, grad_mixed) = combine_backward_cpu(grad_product, s.product, s.product_denominator,
                                                                   s.messages, s.mixed, s.loop, s.factor, so3);
    } else {
        grad_product = normalise_backward(grad_product, s.product, s.product_denominator);
        if (so3) {
            std::tie(grad_mixed, grad_messages) = call_product_backward(grad_product.mul_(2.0), s.mixed, s.messages);
        } else {
            grad_product.mul_(factor);
            auto [g_messages, g_mixed] = call_product_backward(grad_product, s.messages, s.mixed);
            auto [g_mixed2, g_messages2] = call_product_backward(grad_product, s.mixed, s.messages);
            grad_mixed = g_mixed.add_(g_mixed2);
            grad_messages = g_messages.add_(g_messages2);
        }
        grad_mixed.addcmul_(s.loop.unsqueeze(0), grad_messages);
    }
    at::Tensor grad_radial;
    if (radial_grad) grad_radial = call_weight_grad(grad_messages, s.mixed, pairs);
    grad_mixed.add_(call_messages(radial, grad_messages, pairs, first_ptr, second_order, second_ptr));
    at::Tensor grad_normalised = mix(grad_mixed, s.mix_in);
    at::Tensor grad_features = fused ? normalise_backward_cpu(grad_normalised, grad, s.normalised, s.denominator)
                                     : normalise_backward(grad_normalised.add_(grad), s.normalised, s.denominator);
    return {grad_features, grad_radial};
}

at::Tensor tensor_interaction_plain(const at::Tensor& features, const at::Tensor& radial, const at::Tensor& loop,
                                    const at::Tensor& charge_factor, const at::Tensor& mix_in,
                                    const at::Tensor& mix_out, const at::Tensor& pairs, const at::Tensor& first_ptr,
                                    const at::Tensor& second_order, const at::Tensor& second_ptr, bool so3) {
    return forward_pass(features, radial, loop, charge_factor, mix_in, mix_out, pairs, first_ptr, second_order,
                        second_ptr, so3)
        .out;
}

// The forward pass with the intermediates the backward needs: {out, normalised, denominator, mixed, messages,
// product, product_denominator, update} (the backward takes the weights again).
std::vector<at::Tensor> tensor_interaction_forward(const at::Tensor& features, const at::Tensor& radial,
                                                   const at::Tensor& loop, const at::Tensor& charge_factor,
                                                   const at::Tensor& mix_in, const at::Tensor& mix_out,
                                                   const at::Tensor& pairs, const at::Tensor& first_ptr,
                                                   const at::Tensor& second_order, const at::Tensor& second_ptr,
                                                   bool so3) {
    Saved s = forward_pass(features, radial, loop, charge_factor, mix_in, mix_out, pairs, first_ptr, second_order,
                           second_ptr, so3);
    return {s.out, s.normalised, s.denominator, s.mixed, s.messages, s.product, s.product_denominator, s.update};
}

std::tuple<at::Tensor, at::Tensor> tensor_interaction_backward(
    const at::Tensor& grad, at::TensorList saved, const at::Tensor& radial, const at::Tensor& loop,
    const at::Tensor& charge_factor, const at::Tensor& mix_in, const at::Tensor& mix_out, const at::Tensor& pairs,
    const at::Tensor& first_ptr, const at::Tensor& second_order, const at::Tensor& second_ptr, bool so3) {
    TORCH_CHECK(saved.size() == 7, "tensor_interaction_backward: expected the 7 saved tensors of "
                "tensor_interaction_forward; got ", saved.size());
    Saved s;
    s.mix_in = component_rows(mix_in), s.mix_out = component_rows(mix_out), s.loop = component_rows(loop);
    s.factor = charge_factor.contiguous(), s.normalised = saved[0], s.denominator = saved[1], s.mixed = saved[2];
    s.messages = saved[3], s.product = saved[4], s.product_denominator = saved[5], s.update = saved[6];
    return backward_pass(grad, s, radial.contiguous(), pairs, first_ptr, second_order, second_ptr, so3, true);
}

// The autograd Function calls the two ops above through the dispatcher, so that torch.compile traces them as opaque
// ops (their fake kernels are in openmm_tensornet/ops/library.py).
class TensorInteraction : public torch::autograd::Function<TensorInteraction> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& features,
                              const at::Tensor& radial, const at::Tensor& loop, const at::Tensor& charge_factor,
                              const at::Tensor& mix_in, const at::Tensor& mix_out, const at::Tensor& pairs,
                              const at::Tensor& first_ptr, const at::Tensor& second_order,
                              const at::Tensor& second_ptr, bool so3) {
        at::AutoDispatchBelowADInplaceOrView guard;
        for (const at::Tensor* t : {&loop, &charge_factor, &mix_in, &mix_out})
            TORCH_CHECK(!t->requires_grad(),
                        "tensor_interaction: loop, charge_factor, mix_in and mix_out require gradients, which this "
                        "inference op does not provide; use the pure-torch path (model.train()) or freeze the "
                        "weights (requires_grad_(False)).");
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::tensor_interaction_forward", "")
                             .typed<decltype(tensor_interaction_forward)>();
        std::vector<at::Tensor> results =
            op.call(features, radial, loop, charge_factor, mix_in, mix_out, pairs, first_ptr, second_order,
                    second_ptr, so3);
        std::vector<at::Tensor> saved(results.begin() + 1, results.end());
        saved.insert(saved.end(),
                     {radial, loop, charge_factor, mix_in, mix_out, pairs, first_ptr, second_order, second_ptr});
        ctx->save_for_backward(saved);
        ctx->saved_data["so3"] = so3;
        return results[0];
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(), kSecondDerivative);
        const auto v = ctx->get_saved_variables();
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::tensor_interaction_backward", "")
                             .typed<decltype(tensor_interaction_backward)>();
        const std::vector<at::Tensor> saved(v.begin(), v.begin() + 7);
        auto [grad_features, grad_radial] = op.call(grads[0], saved, v[7], v[8], v[9], v[10], v[11], v[12], v[13],
                                                    v[14], v[15], ctx->saved_data["so3"].toBool());
        return {grad_features, grad_radial, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
                at::Tensor(),  at::Tensor(),  at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

at::Tensor tensor_interaction_autograd(const at::Tensor& features, const at::Tensor& radial, const at::Tensor& loop,
                                       const at::Tensor& charge_factor, const at::Tensor& mix_in,
                                       const at::Tensor& mix_out, const at::Tensor& pairs,
                                       const at::Tensor& first_ptr, const at::Tensor& second_order,
                                       const at::Tensor& second_ptr, bool so3) {
    return TensorInteraction::apply(features, radial, loop, charge_factor, mix_in, mix_out, pairs, first_ptr,
                                    second_order, second_ptr, so3);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("tensor_interaction(Tensor features, Tensor radial, Tensor loop, Tensor charge_factor, Tensor mix_in, "
          "Tensor mix_out, Tensor pairs, Tensor first_ptr, Tensor second_order, Tensor second_ptr, bool so3) "
          "-> Tensor");
    m.def("tensor_interaction_forward(Tensor features, Tensor radial, Tensor loop, Tensor charge_factor, "
          "Tensor mix_in, Tensor mix_out, Tensor pairs, Tensor first_ptr, Tensor second_order, Tensor second_ptr, "
          "bool so3) -> Tensor[]");
    m.def("tensor_interaction_backward(Tensor grad, Tensor[] saved, Tensor radial, Tensor loop, Tensor charge_factor, "
          "Tensor mix_in, Tensor mix_out, Tensor pairs, Tensor first_ptr, Tensor second_order, Tensor second_ptr, "
          "bool so3) -> (Tensor grad_features, Tensor grad_radial)");
}

TORCH_LIBRARY_IMPL(openmm_tensornet, CompositeExplicitAutograd, m) {
    m.impl("tensor_interaction", &tensor_interaction_plain);
    m.impl("tensor_interaction_forward", &tensor_interaction_forward);
    m.impl("tensor_interaction_backward", &tensor_interaction_backward);
}

TORCH_LIBRARY_IMPL(openmm_tensornet, Autograd, m) { m.impl("tensor_interaction", &tensor_interaction_autograd); }

}  // namespace openmm_tensornet
