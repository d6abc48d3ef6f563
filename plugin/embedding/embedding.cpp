// The end of TensorNet's embedding as one op (inference): self-loop, norms, LayerNorm, gate MLP, channel mixing.
//
// embedding_gate(sums [N, 9, F], loop [N, F], norm_weight [F], norm_bias [F], float eps, weight1 [H, F], bias1 [H],
//                weight2 [3F, H], bias2 [3F], str activation, mix [3, F, F]) -> [N, 9, F]
//
//     X     = sums, plus ``loop`` on component 0 (the identity part of each atom's self-loop)
//     gates = act(act(LayerNorm(|X|^2) W1^T + b1) W2^T + b2), viewed as [N, 3, F] (I, A, S)
//     out   = mix(X, mix) * gates[part(k)]
//
// with |X|^2 the sum of squares of the 9 components and mix the channel mixing of each irreducible part, exactly as
// openmm_tensornet.nn.embedding.TensorEmbedding computes it from the output of tensor_embedding (its twin). First
// derivatives with respect to ``sums`` only (forces: the other inputs do not depend on positions); the weights must
// not require gradients, and training uses the twin. ATen calls only, so it runs on any device.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/activations.h"
#include "../common/parts.h"

namespace openmm_tensornet {

namespace {

void check_arguments(const at::Tensor& sums, const at::Tensor& loop, const at::Tensor& norm_weight,
                     const at::Tensor& norm_bias, const at::Tensor& weight1, const at::Tensor& bias1,
                     const at::Tensor& weight2, const at::Tensor& bias2, const std::string& activation,
                     const at::Tensor& mix) {
    TORCH_CHECK(sums.dim() == 3 && sums.size(1) == 9, "embedding_gate: sums must have shape [N, 9, F]; got ",
                sums.sizes());
    const int64_t n = sums.size(0), f = sums.size(2);
    TORCH_CHECK(loop.dim() == 2 && loop.size(0) == n && loop.size(1) == f, "embedding_gate: loop must have shape [",
                n, ", ", f, "]; got ", loop.sizes());
    TORCH_CHECK(norm_weight.dim() == 1 && norm_weight.size(0) == f && norm_bias.sizes() == norm_weight.sizes(),
                "embedding_gate: norm_weight and norm_bias must have shape [", f, "]");
    TORCH_CHECK(weight1.dim() == 2 && weight1.size(1) == f && bias1.dim() == 1 && bias1.size(0) == weight1.size(0),
                "embedding_gate: weight1 must have shape [H, ", f, "] and bias1 [H]; got ", weight1.sizes(), " and ",
                bias1.sizes());
    TORCH_CHECK(weight2.dim() == 2 && weight2.size(0) == 3 * f && weight2.size(1) == weight1.size(0) &&
                    bias2.dim() == 1 && bias2.size(0) == 3 * f,
                "embedding_gate: weight2 must have shape [3F, H] = [", 3 * f, ", ", weight1.size(0),
                "] and bias2 [3F]; got ", weight2.sizes(), " and ", bias2.sizes());
    TORCH_CHECK(mix.dim() == 3 && (mix.size(0) == 3 || mix.size(0) == 9) && mix.size(1) == f && mix.size(2) == f,
                "embedding_gate: mix must have shape [3, F, F] (or [9, F, F] per component) with F = ", f, "; got ",
                mix.sizes());
    TORCH_CHECK(known_activation(activation), "embedding_gate: unknown activation '", activation, "'");
    for (const at::Tensor* t : {&loop, &norm_weight, &norm_bias, &weight1, &bias1, &weight2, &bias2, &mix}) {
        TORCH_CHECK(t->scalar_type() == sums.scalar_type(), "embedding_gate: all inputs must be ", sums.scalar_type(),
                    "; got ", t->scalar_type());
        TORCH_CHECK(t->device() == sums.device(), "embedding_gate: all inputs must be on ", sums.device());
    }
}

// Forward results: {out, features, squares, mean, rstd, pre1, hidden, pre2, gates, mixed} (the backward takes the
// weights again).
std::vector<at::Tensor> embedding_gate_forward(const at::Tensor& sums, const at::Tensor& loop,
                                               const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                                               double eps, const at::Tensor& weight1, const at::Tensor& bias1,
                                               const at::Tensor& weight2, const at::Tensor& bias2,
                                               c10::string_view activation_name, const at::Tensor& mix) {
    const std::string activation(activation_name);
    check_arguments(sums, loop, norm_weight, norm_bias, weight1, bias1, weight2, bias2, activation, mix);
    const int64_t n = sums.size(0), f = sums.size(2);
    at::Tensor features = sums.clone(at::MemoryFormat::Contiguous);
    features.select(1, 0).add_(loop);
    at::Tensor squares = (features * features).sum(1);
    auto [normed, mean, rstd] = at::native_layer_norm(squares, {f}, norm_weight, norm_bias, eps);
    at::Tensor pre1 = at::addmm(bias1, normed, weight1.t());
    at::Tensor hidden = activate(pre1, activation);
    at::Tensor pre2 = at::addmm(bias2, hidden, weight2.t());
    at::Tensor gates = activate(pre2, activation);
    const at::Tensor mix9 = component_rows(mix);  // [9, F_out, F]
    at::Tensor mixed = at::bmm(features.transpose(0, 1), mix9.transpose(1, 2)).transpose(0, 1).contiguous();
    at::Tensor out = mixed * expand_parts(gates.view({n, 3, f}), 1);
    return {out, features, squares, mean, rstd, pre1, hidden, pre2, gates, mixed};
}

at::Tensor embedding_gate_backward(const at::Tensor& grad_in, at::TensorList saved, const at::Tensor& norm_weight,
                                   const at::Tensor& norm_bias, const at::Tensor& weight1, const at::Tensor& weight2,
                                   const at::Tensor& mix, c10::string_view activation_name) {
    TORCH_CHECK(saved.size() == 9, "embedding_gate_backward: expected the 9 saved tensors of the forward; got ",
                saved.size());
    const std::string activation(activation_name);
    const at::Tensor &features = saved[0], &squares = saved[1], &mean = saved[2], &rstd = saved[3],
                     &pre1 = saved[4], &hidden = saved[5], &pre2 = saved[6], &gates = saved[7], &mixed = saved[8];
    const at::Tensor grad = grad_in.contiguous();
    const int64_t n = features.size(0), f = features.size(2);
    at::Tensor grad_mixed = grad * expand_parts(gates.view({n, 3, f}), 1);
    at::Tensor grad_gates = sum_parts(grad * mixed).view({n, 3 * f});
    at::Tensor grad_pre2 = activate_backward(grad_gates, pre2, gates, activation);
    at::Tensor grad_pre1 = activate_backward(grad_pre2.mm(weight2), pre1, hidden, activation);
    at::Tensor grad_normed = grad_pre1.mm(weight1);
    at::Tensor grad_squares = std::get<0>(at::native_layer_norm_backward(
        grad_normed, squares, {f}, mean, rstd, norm_weight, norm_bias, {true, false, false}));
    at::Tensor grad_features = at::bmm(grad_mixed.transpose(0, 1), component_rows(mix)).transpose(0, 1).contiguous();
    return grad_features.addcmul_(features, grad_squares.unsqueeze(1), 2.0);
}

at::Tensor embedding_gate_plain(const at::Tensor& sums, const at::Tensor& loop, const at::Tensor& norm_weight,
                                const at::Tensor& norm_bias, double eps, const at::Tensor& weight1,
                                const at::Tensor& bias1, const at::Tensor& weight2, const at::Tensor& bias2,
                                c10::string_view activation, const at::Tensor& mix) {
    return embedding_gate_forward(sums, loop, norm_weight, norm_bias, eps, weight1, bias1, weight2, bias2, activation,
                                  mix)[0];
}

// The autograd Function calls the forward and backward ops through the dispatcher, so that torch.compile traces
// them as opaque ops (their fake kernels are in openmm_tensornet/ops/library.py).
class EmbeddingGate : public torch::autograd::Function<EmbeddingGate> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& sums, const at::Tensor& loop,
                              const at::Tensor& norm_weight, const at::Tensor& norm_bias, double eps,
                              const at::Tensor& weight1, const at::Tensor& bias1, const at::Tensor& weight2,
                              const at::Tensor& bias2, const std::string& activation, const at::Tensor& mix) {
        at::AutoDispatchBelowADInplaceOrView guard;
        for (const at::Tensor* t : {&loop, &norm_weight, &norm_bias, &weight1, &bias1, &weight2, &bias2, &mix})
            TORCH_CHECK(!t->requires_grad(),
                        "embedding_gate: the self-loop term or the weights require gradients, which this inference "
                        "op does not provide; use the pure-torch path (model.train()) or freeze the weights "
                        "(requires_grad_(False)).");
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::embedding_gate_forward", "")
                             .typed<decltype(embedding_gate_forward)>();
        std::vector<at::Tensor> results =
            op.call(sums, loop, norm_weight, norm_bias, eps, weight1, bias1, weight2, bias2, activation, mix);
        std::vector<at::Tensor> saved(results.begin() + 1, results.end());
        saved.insert(saved.end(), {norm_weight, norm_bias, weight1, weight2, mix});
        ctx->save_for_backward(saved);
        ctx->saved_data["activation"] = activation;
        return results[0];
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "embedding_gate: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto v = ctx->get_saved_variables();
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::embedding_gate_backward", "")
                             .typed<decltype(embedding_gate_backward)>();
        const std::vector<at::Tensor> saved(v.begin(), v.begin() + 9);
        at::Tensor grad_sums =
            op.call(grads[0], saved, v[9], v[10], v[11], v[12], v[13], ctx->saved_data["activation"].toStringRef());
        torch::autograd::variable_list result(11);
        result[0] = grad_sums;
        return result;
    }
};

at::Tensor embedding_gate_autograd(const at::Tensor& sums, const at::Tensor& loop, const at::Tensor& norm_weight,
                                   const at::Tensor& norm_bias, double eps, const at::Tensor& weight1,
                                   const at::Tensor& bias1, const at::Tensor& weight2, const at::Tensor& bias2,
                                   c10::string_view activation, const at::Tensor& mix) {
    return EmbeddingGate::apply(sums, loop, norm_weight, norm_bias, eps, weight1, bias1, weight2, bias2,
                                std::string(activation), mix);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("embedding_gate(Tensor sums, Tensor loop, Tensor norm_weight, Tensor norm_bias, float eps, Tensor weight1, "
          "Tensor bias1, Tensor weight2, Tensor bias2, str activation, Tensor mix) -> Tensor");
    m.def("embedding_gate_forward(Tensor sums, Tensor loop, Tensor norm_weight, Tensor norm_bias, float eps, "
          "Tensor weight1, Tensor bias1, Tensor weight2, Tensor bias2, str activation, Tensor mix) -> Tensor[]");
    m.def("embedding_gate_backward(Tensor grad, Tensor[] saved, Tensor norm_weight, Tensor norm_bias, "
          "Tensor weight1, Tensor weight2, Tensor mix, str activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(openmm_tensornet, CompositeExplicitAutograd, m) {
    m.impl("embedding_gate", &embedding_gate_plain);
    m.impl("embedding_gate_forward", &embedding_gate_forward);
    m.impl("embedding_gate_backward", &embedding_gate_backward);
}

TORCH_LIBRARY_IMPL(openmm_tensornet, Autograd, m) { m.impl("embedding_gate", &embedding_gate_autograd); }

}  // namespace openmm_tensornet
