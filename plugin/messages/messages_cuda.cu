// CUDA kernels of openmm_tensornet::tensor_messages, tensor_embedding and tensor_product and their backward passes
// (see messages.cpp). Sums over an atom's pairs use one thread per (atom, channel) and the CSR indices (no atomics,
// deterministic); per-pair gradients use one thread per (pair, channel), or per pair where a sum over channels is
// needed. Nothing is read back to the host, so all of them run inside CUDA graphs.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "messages.h"
#include "tensor_algebra.h"

namespace openmm_tensornet {

namespace {

template <typename scalar_t>
__global__ void messages_kernel(const scalar_t* __restrict__ weights, const scalar_t* __restrict__ features,
                                const int64_t* __restrict__ first, const int64_t* __restrict__ second,
                                const int64_t* __restrict__ first_ptr, const int64_t* __restrict__ second_order,
                                const int64_t* __restrict__ second_ptr, scalar_t* __restrict__ out, int64_t atoms,
                                int64_t channels) {
    const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= atoms * channels) return;
    const int64_t i = index / channels, c = index % channels;
    scalar_t sum[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int pass = 0; pass < 2; ++pass) {
        const int64_t* ptr = pass == 0 ? first_ptr : second_ptr;
        for (int64_t q = ptr[i]; q < ptr[i + 1]; ++q) {
            const int64_t pair = pass == 0 ? q : second_order[q];
            const int64_t j = pass == 0 ? second[pair] : first[pair];
            const scalar_t* w = weights + pair * 3 * channels + c;
            const scalar_t* x = features + j * 9 * channels + c;
            const scalar_t w0 = w[0], w1 = w[channels], w2 = w[2 * channels];
            sum[0] += w0 * x[0];
#pragma unroll
            for (int k = 1; k < 4; ++k) sum[k] += w1 * x[k * channels];
#pragma unroll
            for (int k = 4; k < 9; ++k) sum[k] += w2 * x[k * channels];
        }
    }
#pragma unroll
    for (int k = 0; k < 9; ++k) out[(i * 9 + k) * channels + c] = sum[k];
}

template <typename scalar_t>
__global__ void weight_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ features,
                                   const int64_t* __restrict__ first, const int64_t* __restrict__ second,
                                   scalar_t* __restrict__ out, int64_t num_pairs, int64_t channels) {
    const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= num_pairs * channels) return;
    const int64_t q = index / channels, c = index % channels;
    const int64_t i = first[q], j = second[q];
    scalar_t part[3] = {0, 0, 0};
    if (i >= 0 && j >= 0) {
#pragma unroll
        for (int k = 0; k < 9; ++k) {
            const int64_t a = (i * 9 + k) * channels + c, b = (j * 9 + k) * channels + c;
            part[part_of(k)] += grad[a] * features[b] + grad[b] * features[a];
        }
    }
    for (int g = 0; g < 3; ++g) out[(q * 3 + g) * channels + c] = part[g];
}

__device__ __forceinline__ float parity_of(int k) { return (k >= 1 && k <= 3) ? -1.0f : 1.0f; }

template <typename scalar_t>
__global__ void embedding_kernel(const scalar_t* __restrict__ radial, const scalar_t* __restrict__ edge,
                                 const scalar_t* __restrict__ receiver, const scalar_t* __restrict__ sender,
                                 const int64_t* __restrict__ first, const int64_t* __restrict__ second,
                                 const int64_t* __restrict__ first_ptr, const int64_t* __restrict__ second_order,
                                 const int64_t* __restrict__ second_ptr, scalar_t* __restrict__ features,
                                 scalar_t* __restrict__ sums, int64_t atoms, int64_t channels) {
    const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= atoms * channels) return;
    const int64_t i = index / channels, c = index % channels;
    scalar_t t[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0}, u[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int pass = 0; pass < 2; ++pass) {
        const int64_t* ptr = pass == 0 ? first_ptr : second_ptr;
        for (int64_t q = ptr[i]; q < ptr[i + 1]; ++q) {
            const int64_t pair = pass == 0 ? q : second_order[q];
            const int64_t other = pass == 0 ? second[pair] : first[pair];
            const scalar_t s = sender[other * channels + c];
#pragma unroll
            for (int k = 0; k < 9; ++k) {
                const scalar_t sign = pass == 0 ? scalar_t(1) : scalar_t(parity_of(k));
                const scalar_t value = sign * radial[(pair * 3 + part_of(k)) * channels + c] * edge[pair * 9 + k];
                t[k] += value;
                u[k] += value * s;
            }
        }
    }
    const scalar_t r = receiver[i * channels + c];
#pragma unroll
    for (int k = 0; k < 9; ++k) {
        sums[(i * 9 + k) * channels + c] = t[k];
        features[(i * 9 + k) * channels + c] = u[k] + r * t[k];
    }
}

template <typename scalar_t>
__global__ void embedding_node_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ sums,
                                           const scalar_t* __restrict__ radial, const scalar_t* __restrict__ edge,
                                           const int64_t* __restrict__ first, const int64_t* __restrict__ second,
                                           const int64_t* __restrict__ first_ptr,
                                           const int64_t* __restrict__ second_order,
                                           const int64_t* __restrict__ second_ptr, scalar_t* __restrict__ grad_receiver,
                                           scalar_t* __restrict__ grad_sender, int64_t atoms, int64_t channels) {
    const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= atoms * channels) return;
    const int64_t a = index / channels, c = index % channels;
    scalar_t gr = 0, gs = 0;
#pragma unroll
    for (int k = 0; k < 9; ++k) gr += grad[(a * 9 + k) * channels + c] * sums[(a * 9 + k) * channels + c];
    for (int pass = 0; pass < 2; ++pass) {
        // pass 0: a is the first atom of (a, j) and sends to j along -u; pass 1: second atom of (i, a), along u.
        const int64_t* ptr = pass == 0 ? first_ptr : second_ptr;
        for (int64_t q = ptr[a]; q < ptr[a + 1]; ++q) {
            const int64_t pair = pass == 0 ? q : second_order[q];
            const int64_t to = pass == 0 ? second[pair] : first[pair];
#pragma unroll
            for (int k = 0; k < 9; ++k) {
                const scalar_t sign = pass == 0 ? scalar_t(parity_of(k)) : scalar_t(1);
                gs += sign * grad[(to * 9 + k) * channels + c] * radial[(pair * 3 + part_of(k)) * channels + c] *
                      edge[pair * 9 + k];
            }
        }
    }
    grad_receiver[a * channels + c] = gr;
    grad_sender[a * channels + c] = gs;
}

template <typename scalar_t>
__global__ void embedding_pair_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ radial,
                                           const scalar_t* __restrict__ edge, const scalar_t* __restrict__ receiver,
                                           const scalar_t* __restrict__ sender, const int64_t* __restrict__ first,
                                           const int64_t* __restrict__ second, scalar_t* __restrict__ grad_radial,
                                           scalar_t* __restrict__ grad_edge, int64_t num_pairs, int64_t channels) {
    const int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (q >= num_pairs) return;
    const int64_t i = first[q], j = second[q];
    scalar_t dot[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t c = 0; c < channels; ++c) {
        scalar_t part[3] = {0, 0, 0};
        if (i >= 0 && j >= 0) {
            const scalar_t to_i = receiver[i * channels + c] + sender[j * channels + c];
            const scalar_t to_j = receiver[j * channels + c] + sender[i * channels + c];
#pragma unroll
            for (int k = 0; k < 9; ++k) {
                const scalar_t h = grad[(i * 9 + k) * channels + c] * to_i +
                                   scalar_t(parity_of(k)) * grad[(j * 9 + k) * channels + c] * to_j;
                part[part_of(k)] += edge[q * 9 + k] * h;
                dot[k] += radial[(q * 3 + part_of(k)) * channels + c] * h;
            }
        }
        for (int g = 0; g < 3; ++g) grad_radial[(q * 3 + g) * channels + c] = part[g];
    }
    for (int k = 0; k < 9; ++k) grad_edge[q * 9 + k] = dot[k];
}

template <typename scalar_t, bool transpose_a, bool transpose_b>
__global__ void product_kernel(const scalar_t* __restrict__ left, const scalar_t* __restrict__ right,
                               scalar_t* __restrict__ out, int64_t atoms, int64_t channels) {
    const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= atoms * channels) return;
    const int64_t offset = (index / channels) * 9 * channels + index % channels;
    component_product<scalar_t, transpose_a, transpose_b>(left + offset, right + offset, out + offset, channels);
}

constexpr int kThreads = 128;

int64_t blocks_for(int64_t work) { return (work + kThreads - 1) / kThreads; }

at::Tensor tensor_messages_cuda(const at::Tensor& weights_in, const at::Tensor& features_in, const at::Tensor& pairs_in,
                                const at::Tensor& first_ptr_in, const at::Tensor& second_order_in,
                                const at::Tensor& second_ptr_in) {
    check_message_arguments(weights_in, features_in, pairs_in, first_ptr_in, second_order_in, second_ptr_in);
    const c10::cuda::CUDAGuard guard(features_in.device());
    const auto weights = weights_in.contiguous();
    const auto features = features_in.contiguous();
    const auto pairs = pairs_in.contiguous();
    const auto first_ptr = first_ptr_in.contiguous();
    const auto second_order = second_order_in.contiguous();
    const auto second_ptr = second_ptr_in.contiguous();
    const int64_t n = features.size(0), f = features.size(2), p = weights.size(0);
    auto out = at::empty_like(features);
    if (n * f == 0) return out.zero_();
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "tensor_messages_cuda", [&] {
        const int64_t* first = pairs.data_ptr<int64_t>();
        messages_kernel<scalar_t><<<blocks_for(n * f), kThreads, 0, stream>>>(
            weights.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), first, first + p,
            first_ptr.data_ptr<int64_t>(), second_order.data_ptr<int64_t>(), second_ptr.data_ptr<int64_t>(),
            out.data_ptr<scalar_t>(), n, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

at::Tensor tensor_messages_weight_grad_cuda(const at::Tensor& grad_in, const at::Tensor& features_in,
                                            const at::Tensor& pairs_in) {
    const c10::cuda::CUDAGuard guard(features_in.device());
    const auto grad = grad_in.contiguous();
    const auto features = features_in.contiguous();
    const auto pairs = pairs_in.contiguous();
    TORCH_CHECK(grad.sizes() == features.sizes() && features.dim() == 3 && features.size(1) == 9,
                "tensor_messages_weight_grad: grad_messages and features must both be [N, 9, F]");
    const int64_t f = features.size(2), p = pairs.size(1);
    auto out = at::empty({p, 3, f}, features.options());
    if (p * f == 0) return out.zero_();
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "tensor_messages_weight_grad_cuda", [&] {
        const int64_t* first = pairs.data_ptr<int64_t>();
        weight_grad_kernel<scalar_t><<<blocks_for(p * f), kThreads, 0, stream>>>(
            grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), first, first + p, out.data_ptr<scalar_t>(), p,
            f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

std::tuple<at::Tensor, at::Tensor> tensor_embedding_cuda(const at::Tensor& radial_in, const at::Tensor& edge_in,
                                                         const at::Tensor& receiver_in, const at::Tensor& sender_in,
                                                         const at::Tensor& pairs_in, const at::Tensor& first_ptr_in,
                                                         const at::Tensor& second_order_in,
                                                         const at::Tensor& second_ptr_in) {
    check_embedding_arguments(radial_in, edge_in, receiver_in, sender_in, pairs_in, first_ptr_in, second_order_in,
                              second_ptr_in);
    const c10::cuda::CUDAGuard guard(radial_in.device());
    const auto radial = radial_in.contiguous(), edge = edge_in.contiguous();
    const auto receiver = receiver_in.contiguous(), sender = sender_in.contiguous();
    const auto pairs = pairs_in.contiguous(), first_ptr = first_ptr_in.contiguous();
    const auto second_order = second_order_in.contiguous(), second_ptr = second_ptr_in.contiguous();
    const int64_t n = receiver.size(0), f = receiver.size(1), p = radial.size(0);
    auto features = at::empty({n, 9, f}, radial.options()), sums = at::empty({n, 9, f}, radial.options());
    if (n * f == 0) return {features.zero_(), sums.zero_()};
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "tensor_embedding_cuda", [&] {
        const int64_t* first = pairs.data_ptr<int64_t>();
        embedding_kernel<scalar_t><<<blocks_for(n * f), kThreads, 0, stream>>>(
            radial.data_ptr<scalar_t>(), edge.data_ptr<scalar_t>(), receiver.data_ptr<scalar_t>(),
            sender.data_ptr<scalar_t>(), first, first + p, first_ptr.data_ptr<int64_t>(),
            second_order.data_ptr<int64_t>(), second_ptr.data_ptr<int64_t>(), features.data_ptr<scalar_t>(),
            sums.data_ptr<scalar_t>(), n, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return {features, sums};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> tensor_embedding_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& sums_in, const at::Tensor& radial_in, const at::Tensor& edge_in,
    const at::Tensor& receiver_in, const at::Tensor& sender_in, const at::Tensor& pairs_in,
    const at::Tensor& first_ptr_in, const at::Tensor& second_order_in, const at::Tensor& second_ptr_in) {
    const c10::cuda::CUDAGuard guard(radial_in.device());
    const auto grad = grad_in.contiguous(), sums = sums_in.contiguous();
    const auto radial = radial_in.contiguous(), edge = edge_in.contiguous();
    const auto receiver = receiver_in.contiguous(), sender = sender_in.contiguous();
    const auto pairs = pairs_in.contiguous(), first_ptr = first_ptr_in.contiguous();
    const auto second_order = second_order_in.contiguous(), second_ptr = second_ptr_in.contiguous();
    const int64_t n = receiver.size(0), f = receiver.size(1), p = radial.size(0);
    auto grad_radial = at::zeros_like(radial), grad_edge = at::zeros_like(edge);
    auto grad_receiver = at::zeros_like(receiver), grad_sender = at::zeros_like(sender);
    if (n * f == 0) return {grad_radial, grad_edge, grad_receiver, grad_sender};
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "tensor_embedding_backward_cuda", [&] {
        const int64_t* first = pairs.data_ptr<int64_t>();
        embedding_node_grad_kernel<scalar_t><<<blocks_for(n * f), kThreads, 0, stream>>>(
            grad.data_ptr<scalar_t>(), sums.data_ptr<scalar_t>(), radial.data_ptr<scalar_t>(),
            edge.data_ptr<scalar_t>(), first, first + p, first_ptr.data_ptr<int64_t>(),
            second_order.data_ptr<int64_t>(), second_ptr.data_ptr<int64_t>(), grad_receiver.data_ptr<scalar_t>(),
            grad_sender.data_ptr<scalar_t>(), n, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (p > 0) {
            embedding_pair_grad_kernel<scalar_t><<<blocks_for(p), kThreads, 0, stream>>>(
                grad.data_ptr<scalar_t>(), radial.data_ptr<scalar_t>(), edge.data_ptr<scalar_t>(),
                receiver.data_ptr<scalar_t>(), sender.data_ptr<scalar_t>(), first, first + p,
                grad_radial.data_ptr<scalar_t>(), grad_edge.data_ptr<scalar_t>(), p, f);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
    });
    return {grad_radial, grad_edge, grad_receiver, grad_sender};
}

at::Tensor tensor_product_cuda(const at::Tensor& left_in, const at::Tensor& right_in) {
    check_product_arguments(left_in, right_in);
    const c10::cuda::CUDAGuard guard(left_in.device());
    const auto left = left_in.contiguous(), right = right_in.contiguous();
    const int64_t n = left.size(0), f = left.size(2);
    auto out = at::empty_like(left);
    if (n * f == 0) return out;
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(left.scalar_type(), "tensor_product_cuda", [&] {
        product_kernel<scalar_t, false, false><<<blocks_for(n * f), kThreads, 0, stream>>>(
            left.data_ptr<scalar_t>(), right.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

std::tuple<at::Tensor, at::Tensor> tensor_product_backward_cuda(const at::Tensor& grad_in, const at::Tensor& left_in,
                                                                const at::Tensor& right_in) {
    check_product_arguments(left_in, right_in);
    const c10::cuda::CUDAGuard guard(left_in.device());
    const auto grad = grad_in.contiguous(), left = left_in.contiguous(), right = right_in.contiguous();
    const int64_t n = left.size(0), f = left.size(2);
    auto grad_left = at::empty_like(left), grad_right = at::empty_like(right);
    if (n * f == 0) return {grad_left, grad_right};
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(left.scalar_type(), "tensor_product_backward_cuda", [&] {
        product_kernel<scalar_t, false, true><<<blocks_for(n * f), kThreads, 0, stream>>>(
            grad.data_ptr<scalar_t>(), right.data_ptr<scalar_t>(), grad_left.data_ptr<scalar_t>(), n, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        product_kernel<scalar_t, true, false><<<blocks_for(n * f), kThreads, 0, stream>>>(
            left.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), grad_right.data_ptr<scalar_t>(), n, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return {grad_left, grad_right};
}

}  // namespace

TORCH_LIBRARY_IMPL(openmm_tensornet, CUDA, m) {
    m.impl("tensor_messages", &tensor_messages_cuda);
    m.impl("tensor_messages_weight_grad", &tensor_messages_weight_grad_cuda);
    m.impl("tensor_embedding", &tensor_embedding_cuda);
    m.impl("tensor_embedding_backward", &tensor_embedding_backward_cuda);
    m.impl("tensor_product", &tensor_product_cuda);
    m.impl("tensor_product_backward", &tensor_product_backward_cuda);
}

}  // namespace openmm_tensornet
