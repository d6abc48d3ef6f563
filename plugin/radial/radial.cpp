// Fused radial filter of TensorNet's layers: an MLP of the radial basis times the cosine cutoff, per pair.
//
// radial_mlp(rbf [P, K], cutoff [P], weights Tensor[], biases Tensor[], activation) -> [P, M]
//
//     h_0 = rbf,  h_l = act(h_{l-1} W_l^T + b_l)  (no activation when ``activation`` is "none"),  out = h_L * cutoff.
//
// Built from ATen calls, so it runs on any device (CPU, CUDA) and inside CUDA graphs. The op exists for speed under
// TorchScript: the JIT's symbolic differentiation would otherwise expand every activation's derivative into several
// full-size elementwise passes; here the backward is the hand-written chain below (first derivatives with respect to
// rbf and cutoff; the weights must not require gradients: the model calls this op only for inference with frozen
// weights, and trains through the pure-torch path, which is twice differentiable).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <vector>

#include "../common/activations.h"

namespace openmm_tensornet {

namespace {

void check_arguments(const at::Tensor& rbf, const at::Tensor& cutoff, const std::vector<at::Tensor>& weights,
                     const std::vector<at::Tensor>& biases, const std::string& activation) {
    TORCH_CHECK(rbf.dim() == 2, "radial_mlp: rbf must have shape [P, K]; got ", rbf.sizes());
    TORCH_CHECK(cutoff.dim() == 1 && cutoff.size(0) == rbf.size(0), "radial_mlp: cutoff must have shape [P] = [",
                rbf.size(0), "]; got ", cutoff.sizes());
    TORCH_CHECK(!weights.empty() && weights.size() == biases.size(),
                "radial_mlp: need one bias per weight and at least one layer; got ", weights.size(), " weights and ",
                biases.size(), " biases");
    int64_t width = rbf.size(1);
    for (size_t l = 0; l < weights.size(); ++l) {
        TORCH_CHECK(weights[l].dim() == 2 && weights[l].size(1) == width && biases[l].dim() == 1 &&
                        biases[l].size(0) == weights[l].size(0),
                    "radial_mlp: layer ", l, " has weight ", weights[l].sizes(), " and bias ", biases[l].sizes(),
                    " but its input has ", width, " features");
        width = weights[l].size(0);
    }
    TORCH_CHECK(activation == "none" || known_activation(activation),
                "radial_mlp: unknown activation '", activation, "'");
}

// Forward pass; ``inputs`` receives each layer's input and ``pre`` each layer's pre-activation (for the backward).
at::Tensor forward_pass(const at::Tensor& rbf, const at::Tensor& cutoff, const std::vector<at::Tensor>& weights,
                        const std::vector<at::Tensor>& biases, const std::string& activation,
                        std::vector<at::Tensor>* inputs, std::vector<at::Tensor>* pre) {
    at::Tensor h = rbf;
    for (size_t l = 0; l < weights.size(); ++l) {
        if (inputs) inputs->push_back(h);
        at::Tensor z = at::addmm(biases[l], h, weights[l].t());
        if (pre) pre->push_back(z);
        h = activation == "none" ? z : activate(z, activation);
    }
    if (inputs) inputs->push_back(h);  // the last layer's output
    return h * cutoff.unsqueeze(1);
}

at::Tensor radial_mlp_plain(const at::Tensor& rbf, const at::Tensor& cutoff, at::TensorList weights,
                            at::TensorList biases, c10::string_view activation_name) {
    const std::string activation(activation_name);
    const std::vector<at::Tensor> w(weights.begin(), weights.end()), b(biases.begin(), biases.end());
    check_arguments(rbf, cutoff, w, b, activation);
    return forward_pass(rbf, cutoff, w, b, activation, nullptr, nullptr);
}

class RadialMLP : public torch::autograd::Function<RadialMLP> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rbf, const at::Tensor& cutoff,
                              const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
                              const std::string& activation) {
        at::AutoDispatchBelowADInplaceOrView guard;
        check_arguments(rbf, cutoff, weights, biases, activation);
        for (size_t l = 0; l < weights.size(); ++l)
            TORCH_CHECK(!weights[l].requires_grad() && !biases[l].requires_grad(),
                        "radial_mlp: the weights require gradients, which this inference op does not provide; use "
                        "the pure-torch path (model.train()) or freeze the weights (requires_grad_(False)).");
        std::vector<at::Tensor> inputs, pre;
        at::Tensor out = forward_pass(rbf, cutoff, weights, biases, activation, &inputs, &pre);
        std::vector<at::Tensor> saved{cutoff};
        saved.insert(saved.end(), weights.begin(), weights.end());
        saved.insert(saved.end(), inputs.begin(), inputs.end());
        saved.insert(saved.end(), pre.begin(), pre.end());
        ctx->save_for_backward(saved);
        ctx->saved_data["layers"] = static_cast<int64_t>(weights.size());
        ctx->saved_data["activation"] = activation;
        return out;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "radial_mlp: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto saved = ctx->get_saved_variables();
        const int64_t layers = ctx->saved_data["layers"].toInt();
        const std::string activation = ctx->saved_data["activation"].toStringRef();
        const at::Tensor& cutoff = saved[0];
        auto weight = [&](int64_t l) -> const at::Tensor& { return saved[1 + l]; };
        auto input = [&](int64_t l) -> const at::Tensor& { return saved[1 + layers + l]; };  // l = layers: output
        auto pre = [&](int64_t l) -> const at::Tensor& { return saved[2 + 2 * layers + l]; };
        const at::Tensor grad = grads[0];
        at::Tensor grad_cutoff = (grad * input(layers)).sum(1);
        at::Tensor g = grad * cutoff.unsqueeze(1);
        for (int64_t l = layers - 1; l >= 0; --l) {
            if (activation != "none") g = activate_backward(g, pre(l), input(l + 1), activation);
            g = g.mm(weight(l));
        }
        // Inputs: rbf, cutoff, weights (list), biases (list), activation.
        return {g, grad_cutoff, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

at::Tensor radial_mlp_autograd(const at::Tensor& rbf, const at::Tensor& cutoff, at::TensorList weights,
                               at::TensorList biases, c10::string_view activation) {
    return RadialMLP::apply(rbf, cutoff, std::vector<at::Tensor>(weights.begin(), weights.end()),
                            std::vector<at::Tensor>(biases.begin(), biases.end()), std::string(activation));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("radial_mlp(Tensor rbf, Tensor cutoff, Tensor[] weights, Tensor[] biases, str activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(openmm_tensornet, CompositeExplicitAutograd, m) { m.impl("radial_mlp", &radial_mlp_plain); }

TORCH_LIBRARY_IMPL(openmm_tensornet, Autograd, m) { m.impl("radial_mlp", &radial_mlp_autograd); }

}  // namespace openmm_tensornet
