// Fused tensor message passing of TensorNet's interaction layers: schema, argument checks and autograd.
// Kernels: messages_cpu.cpp (CPU), messages_cuda.cu (CUDA).
//
// tensor_messages(weights [P, 3, F], features [N, 9, F], pairs [2, P], first_ptr [N + 1], second_order [P],
//                 second_ptr [N + 1]) -> messages [N, 9, F]
//
// ``pairs`` is a half neighbour list (each unordered pair once; padding rows hold -1). For every atom i,
//     M[i, k, c] = sum over pairs p = (i, j) or (j, i) of weights[p, part(k), c] * features[j, k, c],
// where part(k) is 0 for component 0, 1 for components 1-3 and 2 for components 4-8 (the I, A and S parts of the
// irreducible layout of openmm_tensornet/ops/tensors.py). ``first_ptr`` is the CSR index of the pairs by first atom (valid
// pairs sorted by first atom), ``second_order`` lists the pairs sorted by second atom and ``second_ptr`` indexes it.
// Each output row is written by one thread: no atomics, and the result does not depend on the thread count.
//
// The operator is symmetric in the atoms (the same weight serves both directions of a pair), so the gradient with
// respect to ``features`` is the same op applied to the output gradient. The weight gradient is
//     dW[p, g, c] = sum over k in part g of (dM[i, k, c] * X[j, k, c] + dM[j, k, c] * X[i, k, c]).
//
// tensor_embedding(radial [P, 3, F], edge [P, 9], receiver_term [N, F], sender_term [N, F], pairs, first_ptr,
//                  second_order, second_ptr) -> (features [N, 9, F], edge_sum [N, 9, F])
//
// TensorNet's embedding sum over the same half list: with u_p the unit vector of pair p = (i, j) and edge[p] the
// components of its edge tensors (Id, [u]_x, u u^T - Id / 3), the direction i <- j uses edge[p] and j <- i uses
// parity * edge[p] (u -> -u flips the skew components 1-3). For every atom i,
//     edge_sum[i, k, c] = sum over its pairs of sign * radial[p, part(k), c] * edge[p, k]
//     features[i, k, c] = receiver_term[i, c] * edge_sum[i, k, c]
//                         + sum over its pairs of sign * sender_term[other, c] * radial[p, part(k), c] * edge[p, k].
// edge_sum is returned for the backward pass (not differentiable).
//
//
// pair_csr(pairs [2, P], num_atoms) -> (first_ptr [N + 1], second_order [P], second_ptr [N + 1]): the CSR indices
// above for a half list (CPU; openmm_tensornet.nn.messages.pair_index is the twin and serves other devices).
//
// tensor_product(left [N, 9, F], right [N, 9, F]) -> [N, 9, F]: the components of the channel-wise matrix product
// left . right. Gradients: dleft = G . right^T, dright = left^T . G (in matrix form).
//
// Only first derivatives are provided (inference and forces); training uses the pure-torch twin
// openmm_tensornet.nn.messages.tensor_messages_reference.
#include <torch/autograd.h>
#include <torch/library.h>

#include "messages.h"

namespace openmm_tensornet {

namespace {

void check_pair_arguments(const char* op, int64_t n, int64_t p, const at::Device& device, const at::Tensor& pairs,
                          const at::Tensor& first_ptr, const at::Tensor& second_order, const at::Tensor& second_ptr) {
    TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.size(1) == p && pairs.scalar_type() == at::kLong,
                op, ": pairs must be int64 with shape [2, P] = [2, ", p, "]; got ", pairs.sizes(), " ",
                pairs.scalar_type());
    TORCH_CHECK(first_ptr.dim() == 1 && first_ptr.size(0) == n + 1 && first_ptr.scalar_type() == at::kLong, op,
                ": first_ptr must be int64 with shape [N + 1] = [", n + 1, "]");
    TORCH_CHECK(second_ptr.dim() == 1 && second_ptr.size(0) == n + 1 && second_ptr.scalar_type() == at::kLong, op,
                ": second_ptr must be int64 with shape [N + 1] = [", n + 1, "]");
    TORCH_CHECK(second_order.dim() == 1 && second_order.size(0) == p && second_order.scalar_type() == at::kLong, op,
                ": second_order must be int64 with shape [P] = [", p, "]");
    for (const at::Tensor* t : {&pairs, &first_ptr, &second_order, &second_ptr})
        TORCH_CHECK(t->device() == device, op, ": all inputs must be on ", device);
}

}  // namespace

void check_message_arguments(const at::Tensor& weights, const at::Tensor& features, const at::Tensor& pairs,
                             const at::Tensor& first_ptr, const at::Tensor& second_order,
                             const at::Tensor& second_ptr) {
    TORCH_CHECK(features.dim() == 3 && features.size(1) == 9,
                "tensor_messages: features must have shape [N, 9, F]; got ", features.sizes());
    const int64_t n = features.size(0), f = features.size(2);
    TORCH_CHECK(weights.dim() == 3 && weights.size(1) == 3 && weights.size(2) == f,
                "tensor_messages: weights must have shape [P, 3, F] with F = ", f, "; got ", weights.sizes());
    TORCH_CHECK(weights.scalar_type() == features.scalar_type(), "tensor_messages: weights are ",
                weights.scalar_type(), " but features are ", features.scalar_type());
    TORCH_CHECK(weights.device() == features.device(), "tensor_messages: all inputs must be on ", features.device());
    check_pair_arguments("tensor_messages", n, weights.size(0), features.device(), pairs, first_ptr, second_order,
                         second_ptr);
}

void check_product_arguments(const at::Tensor& left, const at::Tensor& right) {
    TORCH_CHECK(left.dim() == 3 && left.size(1) == 9 && left.sizes() == right.sizes(),
                "tensor_product: left and right must both have shape [N, 9, F]; got ", left.sizes(), " and ",
                right.sizes());
    TORCH_CHECK(left.scalar_type() == right.scalar_type() && left.device() == right.device(),
                "tensor_product: left and right must share dtype and device");
}

void check_embedding_arguments(const at::Tensor& radial, const at::Tensor& edge, const at::Tensor& receiver,
                               const at::Tensor& sender, const at::Tensor& pairs, const at::Tensor& first_ptr,
                               const at::Tensor& second_order, const at::Tensor& second_ptr) {
    TORCH_CHECK(receiver.dim() == 2 && sender.sizes() == receiver.sizes(),
                "tensor_embedding: receiver_term and sender_term must both have shape [N, F]; got ", receiver.sizes(),
                " and ", sender.sizes());
    TORCH_CHECK(edge.dim() == 2 && edge.size(1) == 9 && edge.size(0) == radial.size(0),
                "tensor_embedding: edge must have shape [P, 9] with P = ", radial.size(0), "; got ", edge.sizes());
    TORCH_CHECK(edge.scalar_type() == radial.scalar_type() && receiver.scalar_type() == radial.scalar_type() &&
                    sender.scalar_type() == radial.scalar_type(),
                "tensor_embedding: radial, edge, receiver_term and sender_term must share one dtype");
    TORCH_CHECK(radial.dim() == 3 && radial.size(1) == 3 && radial.size(2) == receiver.size(1),
                "tensor_embedding: radial must have shape [P, 3, F] with F = ", receiver.size(1), "; got ",
                radial.sizes());
    for (const at::Tensor* t : {&edge, &receiver, &sender})
        TORCH_CHECK(t->device() == radial.device(), "tensor_embedding: all inputs must be on ", radial.device());
    check_pair_arguments("tensor_embedding", receiver.size(0), radial.size(0), radial.device(), pairs, first_ptr,
                         second_order, second_ptr);
}

// Calls through the dispatcher (declared in messages.h; plugin/interaction uses them too).
at::Tensor call_messages(const at::Tensor& weights, const at::Tensor& features, const at::Tensor& pairs,
                         const at::Tensor& first_ptr, const at::Tensor& second_order, const at::Tensor& second_ptr) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("openmm_tensornet::tensor_messages", "")
                         .typed<decltype(call_messages)>();
    return op.call(weights, features, pairs, first_ptr, second_order, second_ptr);
}

at::Tensor call_weight_grad(const at::Tensor& grad_messages, const at::Tensor& features, const at::Tensor& pairs) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("openmm_tensornet::tensor_messages_weight_grad", "")
                         .typed<decltype(call_weight_grad)>();
    return op.call(grad_messages, features, pairs);
}

at::Tensor call_product(const at::Tensor& left, const at::Tensor& right) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("openmm_tensornet::tensor_product", "")
                         .typed<decltype(call_product)>();
    return op.call(left, right);
}

std::tuple<at::Tensor, at::Tensor> call_product_backward(const at::Tensor& grad, const at::Tensor& left,
                                                         const at::Tensor& right) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("openmm_tensornet::tensor_product_backward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                   const at::Tensor&)>();
    return op.call(grad, left, right);
}

namespace {

class TensorMessages : public torch::autograd::Function<TensorMessages> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& weights,
                              const at::Tensor& features, const at::Tensor& pairs, const at::Tensor& first_ptr,
                              const at::Tensor& second_order, const at::Tensor& second_ptr) {
        at::AutoDispatchBelowADInplaceOrView guard;
        ctx->save_for_backward({weights, features, pairs, first_ptr, second_order, second_ptr});
        return call_messages(weights, features, pairs, first_ptr, second_order, second_ptr);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "tensor_messages: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto saved = ctx->get_saved_variables();
        const at::Tensor grad = grads[0].contiguous();
        at::Tensor grad_weights, grad_features;
        if (ctx->needs_input_grad(0)) grad_weights = call_weight_grad(grad, saved[1], saved[2]);
        if (ctx->needs_input_grad(1))
            grad_features = call_messages(saved[0], grad, saved[2], saved[3], saved[4], saved[5]);
        return {grad_weights, grad_features, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

std::vector<at::Tensor> call_embedding(const at::Tensor& radial, const at::Tensor& edge, const at::Tensor& receiver,
                                       const at::Tensor& sender, const at::Tensor& pairs, const at::Tensor& first_ptr,
                                       const at::Tensor& second_order, const at::Tensor& second_ptr) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("openmm_tensornet::tensor_embedding", "")
                         .typed<std::tuple<at::Tensor, at::Tensor>(
                             const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
    auto result = op.call(radial, edge, receiver, sender, pairs, first_ptr, second_order, second_ptr);
    return {std::get<0>(result), std::get<1>(result)};
}

std::vector<at::Tensor> call_embedding_backward(const at::Tensor& grad, const at::Tensor& edge_sum,
                                                const at::Tensor& radial, const at::Tensor& edge,
                                                const at::Tensor& receiver, const at::Tensor& sender,
                                                const at::Tensor& pairs, const at::Tensor& first_ptr,
                                                const at::Tensor& second_order, const at::Tensor& second_ptr) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("openmm_tensornet::tensor_embedding_backward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                             const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&, const at::Tensor&)>();
    auto r = op.call(grad, edge_sum, radial, edge, receiver, sender, pairs, first_ptr, second_order, second_ptr);
    return {std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r)};
}

class TensorEmbedding : public torch::autograd::Function<TensorEmbedding> {
   public:
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& radial,
                                                  const at::Tensor& edge, const at::Tensor& receiver,
                                                  const at::Tensor& sender, const at::Tensor& pairs,
                                                  const at::Tensor& first_ptr, const at::Tensor& second_order,
                                                  const at::Tensor& second_ptr) {
        at::AutoDispatchBelowADInplaceOrView guard;
        auto outputs = call_embedding(radial, edge, receiver, sender, pairs, first_ptr, second_order, second_ptr);
        ctx->save_for_backward(
            {outputs[1], radial, edge, receiver, sender, pairs, first_ptr, second_order, second_ptr});
        ctx->mark_non_differentiable({outputs[1]});
        return outputs;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "tensor_embedding: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto s = ctx->get_saved_variables();
        at::Tensor grad = grads[0];
        if (!grad.defined()) grad = at::zeros_like(s[0]);
        auto g = call_embedding_backward(grad.contiguous(), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]);
        return {g[0], g[1], g[2], g[3], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

std::tuple<at::Tensor, at::Tensor> tensor_embedding_autograd(const at::Tensor& radial, const at::Tensor& edge,
                                                             const at::Tensor& receiver, const at::Tensor& sender,
                                                             const at::Tensor& pairs, const at::Tensor& first_ptr,
                                                             const at::Tensor& second_order,
                                                             const at::Tensor& second_ptr) {
    auto outputs = TensorEmbedding::apply(radial, edge, receiver, sender, pairs, first_ptr, second_order, second_ptr);
    return {outputs[0], outputs[1]};
}

class TensorProduct : public torch::autograd::Function<TensorProduct> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& left, const at::Tensor& right) {
        at::AutoDispatchBelowADInplaceOrView guard;
        ctx->save_for_backward({left, right});
        return call_product(left, right);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "tensor_product: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto saved = ctx->get_saved_variables();
        auto [grad_left, grad_right] = call_product_backward(grads[0].contiguous(), saved[0], saved[1]);
        return {grad_left, grad_right};
    }
};

at::Tensor tensor_product_autograd(const at::Tensor& left, const at::Tensor& right) {
    return TensorProduct::apply(left, right);
}

at::Tensor tensor_messages_autograd(const at::Tensor& weights, const at::Tensor& features, const at::Tensor& pairs,
                                    const at::Tensor& first_ptr, const at::Tensor& second_order,
                                    const at::Tensor& second_ptr) {
    return TensorMessages::apply(weights, features, pairs, first_ptr, second_order, second_ptr);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("tensor_messages(Tensor weights, Tensor features, Tensor pairs, Tensor first_ptr, Tensor second_order, "
          "Tensor second_ptr) -> Tensor");
    m.def("tensor_messages_weight_grad(Tensor grad_messages, Tensor features, Tensor pairs) -> Tensor");
    m.def("tensor_embedding(Tensor radial, Tensor edge, Tensor receiver_term, Tensor sender_term, Tensor pairs, "
          "Tensor first_ptr, Tensor second_order, Tensor second_ptr) -> (Tensor features, Tensor edge_sum)");
    m.def("tensor_embedding_backward(Tensor grad_features, Tensor edge_sum, Tensor radial, Tensor edge, "
          "Tensor receiver_term, Tensor sender_term, Tensor pairs, Tensor first_ptr, Tensor second_order, "
          "Tensor second_ptr) -> (Tensor grad_radial, Tensor grad_edge, Tensor grad_receiver_term, "
          "Tensor grad_sender_term)");
    m.def("pair_csr(Tensor pairs, int num_atoms) -> (Tensor first_ptr, Tensor second_order, Tensor second_ptr)");
    m.def("tensor_product(Tensor left, Tensor right) -> Tensor");
    m.def("tensor_product_backward(Tensor grad, Tensor left, Tensor right) -> (Tensor grad_left, Tensor grad_right)");
}

TORCH_LIBRARY_IMPL(openmm_tensornet, Autograd, m) {
    m.impl("tensor_messages", &tensor_messages_autograd);
    m.impl("tensor_embedding", &tensor_embedding_autograd);
    m.impl("tensor_product", &tensor_product_autograd);
}

}  // namespace openmm_tensornet
