// CPU kernels of openmm_tensornet::tensor_messages and its weight gradient (see messages.cpp). Parallel over atoms
// (forward) and over pairs (weight gradient); the innermost loop runs over channels and vectorises.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "messages.h"
#include "tensor_algebra.h"

namespace openmm_tensornet {

namespace {

template <typename scalar_t>
inline void accumulate(scalar_t* out, const scalar_t* weight, const scalar_t* source, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
        const scalar_t* w = weight + part_of(k) * channels;
        const scalar_t* x = source + k * channels;
        scalar_t* o = out + k * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) o[c] += w[c] * x[c];
    }
}

template <typename scalar_t>
inline void accumulate_weight_grad(scalar_t* row, const scalar_t* gi, const scalar_t* gj, const scalar_t* xi,
                                   const scalar_t* xj, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
        scalar_t* r = row + part_of(k) * channels;
        const int64_t off = k * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) r[c] += gi[off + c] * xj[off + c] + gj[off + c] * xi[off + c];
    }
}

at::Tensor tensor_messages_cpu(const at::Tensor& weights_in, const at::Tensor& features_in, const at::Tensor& pairs_in,
                               const at::Tensor& first_ptr_in, const at::Tensor& second_order_in,
                               const at::Tensor& second_ptr_in) {
    check_message_arguments(weights_in, features_in, pairs_in, first_ptr_in, second_order_in, second_ptr_in);
    const auto weights = weights_in.contiguous();
    const auto features = features_in.contiguous();
    const auto pairs = pairs_in.contiguous();
    const auto first_ptr = first_ptr_in.contiguous();
    const auto second_order = second_order_in.contiguous();
    const auto second_ptr = second_ptr_in.contiguous();
    const int64_t n = features.size(0), f = features.size(2), p = weights.size(0);
    auto out = at::zeros_like(features);
    if (n == 0 || f == 0) return out;
    const int64_t* first = pairs.data_ptr<int64_t>();
    const int64_t* second = first + p;
    const int64_t* fptr = first_ptr.data_ptr<int64_t>();
    const int64_t* sorder = second_order.data_ptr<int64_t>();
    const int64_t* sptr = second_ptr.data_ptr<int64_t>();
    TORCH_CHECK(fptr[0] == 0 && fptr[n] <= p && sptr[0] == 0 && sptr[n] <= p,
                "tensor_messages: first_ptr and second_ptr must start at 0 and end at most at P = ", p);
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "tensor_messages_cpu", [&] {
        const scalar_t* w = weights.data_ptr<scalar_t>();
        const scalar_t* x = features.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                scalar_t* row = o + i * 9 * f;
                for (int64_t q = fptr[i]; q < fptr[i + 1]; ++q)
                    accumulate(row, w + q * 3 * f, x + second[q] * 9 * f, f);
                for (int64_t q = sptr[i]; q < sptr[i + 1]; ++q) {
                    const int64_t pair = sorder[q];
                    accumulate(row, w + pair * 3 * f, x + first[pair] * 9 * f, f);
                }
            }
        });
    });
    return out;
}

at::Tensor tensor_messages_weight_grad_cpu(const at::Tensor& grad_in, const at::Tensor& features_in,
                                           const at::Tensor& pairs_in) {
    const auto grad = grad_in.contiguous();
    const auto features = features_in.contiguous();
    const auto pairs = pairs_in.contiguous();
    TORCH_CHECK(grad.sizes() == features.sizes() && features.dim() == 3 && features.size(1) == 9,
                "tensor_messages_weight_grad: grad_messages and features must both be [N, 9, F]");
    TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2, "tensor_messages_weight_grad: pairs must be [2, P]");
    const int64_t f = features.size(2), p = pairs.size(1);
    auto out = at::zeros({p, 3, f}, features.options());
    if (p == 0 || f == 0) return out;
    const int64_t* first = pairs.data_ptr<int64_t>();
    const int64_t* second = first + p;
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "tensor_messages_weight_grad_cpu", [&] {
        const scalar_t* g = grad.data_ptr<scalar_t>();
        const scalar_t* x = features.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        at::parallel_for(0, p, 64, [&](int64_t begin, int64_t end) {
            for (int64_t q = begin; q < end; ++q) {
                const int64_t i = first[q], j = second[q];
                if (i < 0 || j < 0) continue;  // padding
                const scalar_t *gi = g + i * 9 * f, *gj = g + j * 9 * f, *xi = x + i * 9 * f, *xj = x + j * 9 * f;
                accumulate_weight_grad(o + q * 3 * f, gi, gj, xi, xj, f);
            }
        });
    });
    return out;
}

// Adds one direction of pair p to atom i's sums: sign_k * radial[part(k), c] * edge[k] into edge_sum (T) and, times
// sender[c], into features (U). ``odd`` selects the parity signs (the direction opposite to the pair's vector).
template <typename scalar_t>
inline void embed_direction(scalar_t* sums, scalar_t* out, const scalar_t* radial, const scalar_t* edge,
                            const scalar_t* sender, bool odd, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
        const scalar_t e = odd ? static_cast<scalar_t>(parity(k)) * edge[k] : edge[k];
        const scalar_t* w = radial + part_of(k) * channels;
        scalar_t* t = sums + k * channels;
        scalar_t* u = out + k * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) {
            const scalar_t value = w[c] * e;
            t[c] += value;
            u[c] += value * sender[c];
        }
    }
}

// features[k, c] += receiver[c] * edge_sum[k, c]
template <typename scalar_t>
inline void add_receiver_term(scalar_t* out, const scalar_t* receiver, const scalar_t* sums, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) out[k * channels + c] += receiver[c] * sums[k * channels + c];
    }
}

// grad_receiver[c] = sum_k grad[k, c] * edge_sum[k, c]
template <typename scalar_t>
inline void receiver_grad(scalar_t* out, const scalar_t* grad, const scalar_t* sums, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) out[c] += grad[k * channels + c] * sums[k * channels + c];
    }
}

std::tuple<at::Tensor, at::Tensor> tensor_embedding_cpu(const at::Tensor& radial_in, const at::Tensor& edge_in,
                                                        const at::Tensor& receiver_in, const at::Tensor& sender_in,
                                                        const at::Tensor& pairs_in, const at::Tensor& first_ptr_in,
                                                        const at::Tensor& second_order_in,
                                                        const at::Tensor& second_ptr_in) {
    check_embedding_arguments(radial_in, edge_in, receiver_in, sender_in, pairs_in, first_ptr_in, second_order_in,
                              second_ptr_in);
    const auto radial = radial_in.contiguous(), edge = edge_in.contiguous();
    const auto receiver = receiver_in.contiguous(), sender = sender_in.contiguous();
    const auto pairs = pairs_in.contiguous(), first_ptr = first_ptr_in.contiguous();
    const auto second_order = second_order_in.contiguous(), second_ptr = second_ptr_in.contiguous();
    const int64_t n = receiver.size(0), f = receiver.size(1), p = radial.size(0);
    auto features = at::zeros({n, 9, f}, radial.options());
    auto sums = at::zeros({n, 9, f}, radial.options());
    if (n == 0 || f == 0) return {features, sums};
    const int64_t* first = pairs.data_ptr<int64_t>();
    const int64_t* second = first + p;
    const int64_t *fptr = first_ptr.data_ptr<int64_t>(), *sorder = second_order.data_ptr<int64_t>(),
                  *sptr = second_ptr.data_ptr<int64_t>();
    TORCH_CHECK(fptr[0] == 0 && fptr[n] <= p && sptr[0] == 0 && sptr[n] <= p,
                "tensor_embedding: first_ptr and second_ptr must start at 0 and end at most at P = ", p);
    AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "tensor_embedding_cpu", [&] {
        const scalar_t *w = radial.data_ptr<scalar_t>(), *e = edge.data_ptr<scalar_t>();
        const scalar_t *r = receiver.data_ptr<scalar_t>(), *snd = sender.data_ptr<scalar_t>();
        scalar_t *x = features.data_ptr<scalar_t>(), *t = sums.data_ptr<scalar_t>();
        at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                scalar_t *ti = t + i * 9 * f, *xi = x + i * 9 * f;
                for (int64_t q = fptr[i]; q < fptr[i + 1]; ++q)
                    embed_direction(ti, xi, w + q * 3 * f, e + q * 9, snd + second[q] * f, false, f);
                for (int64_t q = sptr[i]; q < sptr[i + 1]; ++q) {
                    const int64_t pair = sorder[q];
                    embed_direction(ti, xi, w + pair * 3 * f, e + pair * 9, snd + first[pair] * f, true, f);
                }
                add_receiver_term(xi, r + i * f, ti, f);
            }
        });
    });
    return {features, sums};
}

// Gradient reaching the sender term of atom a through one direction of pair p (a sends to atom ``to``).
template <typename scalar_t>
inline void sender_grad_direction(scalar_t* out, const scalar_t* grad_to, const scalar_t* radial, const scalar_t* edge,
                                  bool odd, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
        const scalar_t e = odd ? static_cast<scalar_t>(parity(k)) * edge[k] : edge[k];
        const scalar_t* w = radial + part_of(k) * channels;
        const scalar_t* g = grad_to + k * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) out[c] += g[c] * w[c] * e;
    }
}

// Per-pair gradients: H[k, c] = gX[i, k, c] (R_i + S_j)[c] + parity_k gX[j, k, c] (R_j + S_i)[c];
// grad_radial[part, c] = sum_k in part edge[k] H[k, c], grad_edge[k] = sum_c radial[part(k), c] H[k, c].
template <typename scalar_t>
inline void pair_grads(scalar_t* grad_radial, scalar_t* grad_edge, const scalar_t* gi, const scalar_t* gj,
                       const scalar_t* ri, const scalar_t* rj, const scalar_t* si, const scalar_t* sj,
                       const scalar_t* radial, const scalar_t* edge, int64_t channels) {
    for (int k = 0; k < 9; ++k) {
        const scalar_t flip = static_cast<scalar_t>(parity(k));
        const scalar_t* w = radial + part_of(k) * channels;
        scalar_t* gw = grad_radial + part_of(k) * channels;
        const scalar_t* a = gi + k * channels;
        const scalar_t* b = gj + k * channels;
        const scalar_t e = edge[k];
        scalar_t dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < channels; ++c) {
            const scalar_t h = a[c] * (ri[c] + sj[c]) + flip * b[c] * (rj[c] + si[c]);
            gw[c] += e * h;
            dot += w[c] * h;
        }
        grad_edge[k] = dot;
    }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> tensor_embedding_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& sums_in, const at::Tensor& radial_in, const at::Tensor& edge_in,
    const at::Tensor& receiver_in, const at::Tensor& sender_in, const at::Tensor& pairs_in,
    const at::Tensor& first_ptr_in, const at::Tensor& second_order_in, const at::Tensor& second_ptr_in) {
    const auto grad = grad_in.contiguous(), sums = sums_in.contiguous();
    const auto radial = radial_in.contiguous(), edge = edge_in.contiguous();
    const auto receiver = receiver_in.contiguous(), sender = sender_in.contiguous();
    const auto pairs = pairs_in.contiguous(), first_ptr = first_ptr_in.contiguous();
    const auto second_order = second_order_in.contiguous(), second_ptr = second_ptr_in.contiguous();
    const int64_t n = receiver.size(0), f = receiver.size(1), p = radial.size(0);
    auto grad_radial = at::zeros_like(radial), grad_edge = at::zeros_like(edge);
    auto grad_receiver = at::zeros_like(receiver), grad_sender = at::zeros_like(sender);
    if (n == 0 || f == 0) return {grad_radial, grad_edge, grad_receiver, grad_sender};
    const int64_t* first = pairs.data_ptr<int64_t>();
    const int64_t* second = first + p;
    const int64_t *fptr = first_ptr.data_ptr<int64_t>(), *sorder = second_order.data_ptr<int64_t>(),
                  *sptr = second_ptr.data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "tensor_embedding_backward_cpu", [&] {
        const scalar_t *g = grad.data_ptr<scalar_t>(), *t = sums.data_ptr<scalar_t>();
        const scalar_t *w = radial.data_ptr<scalar_t>(), *e = edge.data_ptr<scalar_t>();
        const scalar_t *r = receiver.data_ptr<scalar_t>(), *snd = sender.data_ptr<scalar_t>();
        scalar_t *gr = grad_receiver.data_ptr<scalar_t>(), *gs = grad_sender.data_ptr<scalar_t>();
        scalar_t *gw = grad_radial.data_ptr<scalar_t>(), *ge = grad_edge.data_ptr<scalar_t>();
        at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
            for (int64_t a = begin; a < end; ++a) {
                receiver_grad(gr + a * f, g + a * 9 * f, t + a * 9 * f, f);
                // a is the first atom of pair (a, j): it sends to j along -u (odd).
                for (int64_t q = fptr[a]; q < fptr[a + 1]; ++q)
                    sender_grad_direction(gs + a * f, g + second[q] * 9 * f, w + q * 3 * f, e + q * 9, true, f);
                // a is the second atom of pair (i, a): it sends to i along u.
                for (int64_t q = sptr[a]; q < sptr[a + 1]; ++q) {
                    const int64_t pair = sorder[q];
                    sender_grad_direction(gs + a * f, g + first[pair] * 9 * f, w + pair * 3 * f, e + pair * 9, false,
                                          f);
                }
            }
        });
        at::parallel_for(0, p, 64, [&](int64_t begin, int64_t end) {
            for (int64_t q = begin; q < end; ++q) {
                const int64_t i = first[q], j = second[q];
                if (i < 0 || j < 0) continue;  // padding
                pair_grads(gw + q * 3 * f, ge + q * 9, g + i * 9 * f, g + j * 9 * f, r + i * f, r + j * f,
                           snd + i * f, snd + j * f, w + q * 3 * f, e + q * 9, f);
            }
        });
    });
    return {grad_radial, grad_edge, grad_receiver, grad_sender};
}

// All channels of one atom; the channel loop vectorises (components are contiguous along channels).
template <typename scalar_t, bool transpose_a, bool transpose_b>
inline void product_row(const scalar_t* a, const scalar_t* b, scalar_t* out, int64_t atom, int64_t channels) {
    const int64_t offset = atom * 9 * channels;
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c)
        component_product<scalar_t, transpose_a, transpose_b>(a + offset + c, b + offset + c, out + offset + c,
                                                              channels);
}

at::Tensor tensor_product_cpu(const at::Tensor& left_in, const at::Tensor& right_in) {
    check_product_arguments(left_in, right_in);
    const auto left = left_in.contiguous(), right = right_in.contiguous();
    const int64_t n = left.size(0), f = left.size(2);
    auto out = at::empty_like(left);
    AT_DISPATCH_FLOATING_TYPES(left.scalar_type(), "tensor_product_cpu", [&] {
        const scalar_t *a = left.data_ptr<scalar_t>(), *b = right.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        at::parallel_for(0, n, 8, [&](int64_t begin, int64_t end) {
            for (int64_t atom = begin; atom < end; ++atom) product_row<scalar_t, false, false>(a, b, o, atom, f);
        });
    });
    return out;
}

std::tuple<at::Tensor, at::Tensor> tensor_product_backward_cpu(const at::Tensor& grad_in, const at::Tensor& left_in,
                                                               const at::Tensor& right_in) {
    check_product_arguments(left_in, right_in);
    const auto grad = grad_in.contiguous(), left = left_in.contiguous(), right = right_in.contiguous();
    const int64_t n = left.size(0), f = left.size(2);
    auto grad_left = at::empty_like(left), grad_right = at::empty_like(right);
    AT_DISPATCH_FLOATING_TYPES(left.scalar_type(), "tensor_product_backward_cpu", [&] {
        const scalar_t *g = grad.data_ptr<scalar_t>(), *a = left.data_ptr<scalar_t>(), *b = right.data_ptr<scalar_t>();
        scalar_t *ga = grad_left.data_ptr<scalar_t>(), *gb = grad_right.data_ptr<scalar_t>();
        at::parallel_for(0, n, 8, [&](int64_t begin, int64_t end) {
            for (int64_t atom = begin; atom < end; ++atom) {
                product_row<scalar_t, false, true>(g, b, ga, atom, f);  // G . B^T
                product_row<scalar_t, true, false>(a, g, gb, atom, f);  // A^T . G
            }
        });
    });
    return {grad_left, grad_right};
}

}  // namespace

// CSR indices of a half list (see messages.cpp): counting sorts, so second_order is stable like the twin's argsort.
std::tuple<at::Tensor, at::Tensor, at::Tensor> pair_csr_cpu(const at::Tensor& pairs_in, int64_t num_atoms) {
    TORCH_CHECK(pairs_in.dim() == 2 && pairs_in.size(0) == 2 && pairs_in.scalar_type() == at::kLong,
                "pair_csr: pairs must be int64 with shape [2, P]; got ", pairs_in.sizes(), " ", pairs_in.scalar_type());
    TORCH_CHECK(num_atoms >= 0, "pair_csr: num_atoms must be >= 0; got ", num_atoms);
    const auto pairs = pairs_in.contiguous();
    const int64_t p = pairs.size(1), n = num_atoms;
    auto options = pairs.options();
    auto first_ptr = at::zeros({n + 1}, options), second_ptr = at::zeros({n + 1}, options);
    auto second_order = at::empty({p}, options);
    const int64_t* first = pairs.data_ptr<int64_t>();
    const int64_t* second = first + p;
    int64_t *fp = first_ptr.data_ptr<int64_t>(), *sp = second_ptr.data_ptr<int64_t>(),
            *order = second_order.data_ptr<int64_t>();
    for (int64_t q = 0; q < p; ++q) {
        TORCH_CHECK(first[q] < n && second[q] < n, "pair_csr: pair ", q, " = (", first[q], ", ", second[q],
                    ") indexes beyond num_atoms = ", n);
        if (first[q] >= 0) ++fp[first[q] + 1];
        if (second[q] >= 0) ++sp[second[q] + 1];
    }
    for (int64_t i = 0; i < n; ++i) {
        fp[i + 1] += fp[i];
        sp[i + 1] += sp[i];
    }
    std::vector<int64_t> next(sp, sp + n);
    int64_t padding = sp[n];
    for (int64_t q = 0; q < p; ++q) order[second[q] >= 0 ? next[second[q]]++ : padding++] = q;
    return {first_ptr, second_order, second_ptr};
}

TORCH_LIBRARY_IMPL(openmm_tensornet, CPU, m) {
    m.impl("pair_csr", &pair_csr_cpu);
    m.impl("tensor_product", &tensor_product_cpu);
    m.impl("tensor_product_backward", &tensor_product_backward_cpu);
    m.impl("tensor_messages", &tensor_messages_cpu);
    m.impl("tensor_messages_weight_grad", &tensor_messages_weight_grad_cpu);
    m.impl("tensor_embedding", &tensor_embedding_cpu);
    m.impl("tensor_embedding_backward", &tensor_embedding_backward_cpu);
}

}  // namespace openmm_tensornet
