// Shared declarations of the tensor message-passing op (see messages.cpp for its definition).
#pragma once

#include <ATen/ATen.h>

#include "../common/basis.h"

namespace openmm_tensornet {

void check_message_arguments(const at::Tensor& weights, const at::Tensor& features, const at::Tensor& pairs,
                             const at::Tensor& first_ptr, const at::Tensor& second_order,
                             const at::Tensor& second_ptr);

void check_product_arguments(const at::Tensor& left, const at::Tensor& right);

void check_embedding_arguments(const at::Tensor& radial, const at::Tensor& edge, const at::Tensor& receiver,
                               const at::Tensor& sender, const at::Tensor& pairs, const at::Tensor& first_ptr,
                               const at::Tensor& second_order, const at::Tensor& second_ptr);

// The ops, called through the dispatcher (so each device's kernel runs).
at::Tensor call_messages(const at::Tensor& weights, const at::Tensor& features, const at::Tensor& pairs,
                         const at::Tensor& first_ptr, const at::Tensor& second_order, const at::Tensor& second_ptr);
at::Tensor call_weight_grad(const at::Tensor& grad_messages, const at::Tensor& features, const at::Tensor& pairs);
at::Tensor call_product(const at::Tensor& left, const at::Tensor& right);
std::tuple<at::Tensor, at::Tensor> call_product_backward(const at::Tensor& grad, const at::Tensor& left,
                                                         const at::Tensor& right);

}  // namespace openmm_tensornet
