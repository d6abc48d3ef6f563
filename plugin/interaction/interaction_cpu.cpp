// CPU passes of tensor_interaction (see interaction.h): each walks the atoms once, channels innermost (contiguous, so
// the channel loop vectorises), 3x3 algebra in registers. Parallel over atoms; small systems run on one thread,
// where waking the pool would cost more than the pass.
#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/basis.h"
#include "interaction.h"

namespace openmm_tensornet {

namespace {

// Atoms per task: about 16k numbers, so a 22-atom molecule with 64 channels is one task.
int64_t grain(int64_t channels) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, 9 * channels)); }

// Channels are processed in blocks of kBlock; every step below loops over the block innermost, so it vectorises.
constexpr int kBlock = 16;

template <typename T>
using Block = T[9][kBlock];

template <typename T>
inline void load(const T* source, int64_t channels, int w, Block<T>& values) {
    for (int k = 0; k < 9; ++k)
        for (int x = 0; x < w; ++x) values[k][x] = source[k * channels + x];
}

// Components -> row-major matrix entries and back (basis.h), block-wise: channel x of every entry.
template <typename T>
inline void to_matrix(const Block<T>& c, Block<T>& m, int w) {
    for (int x = 0; x < w; ++x)
        components_to_matrix<T>([&](int k) { return c[k][x]; }, [&](int k) -> T& { return m[k][x]; });
}

template <typename T>
inline void to_components(const Block<T>& m, Block<T>& c, int w) {
    for (int x = 0; x < w; ++x)
        matrix_to_components<T>([&](int k) { return m[k][x]; }, [&](int k) -> T& { return c[k][x]; });
}

// out = a . b (or a^T . b, a . b^T), entry by entry over the block.
template <typename T, bool transpose_a, bool transpose_b>
inline void product(const Block<T>& a, const Block<T>& b, Block<T>& out, int w) {
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            const int a0 = transpose_a ? i : i * 3, a1 = transpose_a ? 3 + i : i * 3 + 1,
                      a2 = transpose_a ? 6 + i : i * 3 + 2;
            const int b0 = transpose_b ? j * 3 : j, b1 = transpose_b ? j * 3 + 1 : 3 + j,
                      b2 = transpose_b ? j * 3 + 2 : 6 + j;
            for (int x = 0; x < w; ++x)
                out[i * 3 + j][x] = a[a0][x] * b[b0][x] + a[a1][x] * b[b1][x] + a[a2][x] * b[b2][x];
        }
}

// out = g . b^T + b^T . g (scratch: workspace): d <g, b . b> / db, and both two-sided terms of the O(3)
// combination's backward.
template <typename T>
inline void sandwich(const Block<T>& g, const Block<T>& b, Block<T>& out, Block<T>& scratch, int w) {
    product<T, false, true>(g, b, out, w);
    product<T, true, false>(b, g, scratch, w);
    for (int k = 0; k < 9; ++k)
        for (int x = 0; x < w; ++x) out[k][x] += scratch[k][x];
}

template <typename T>
inline void normalise_row(const T* x, T* y, T* denominator, int64_t f) {
    for (int64_t c = 0; c < f; ++c) denominator[c] = 1;
    for (int k = 0; k < 9; ++k)
        for (int64_t c = 0; c < f; ++c) denominator[c] += x[k * f + c] * x[k * f + c];
    for (int k = 0; k < 9; ++k)
        for (int64_t c = 0; c < f; ++c) y[k * f + c] = x[k * f + c] / denominator[c];
}

template <typename T>
inline void normalise_backward_row(const T* grad, const T* extra, const T* y, const T* denominator, T* out,
                                   int64_t f) {
    T dot[kBlock];
    for (int64_t c0 = 0; c0 < f; c0 += kBlock) {
        const int w = static_cast<int>(std::min<int64_t>(kBlock, f - c0));
        for (int x = 0; x < w; ++x) dot[x] = 0;
        for (int k = 0; k < 9; ++k) {
            const int64_t o = k * f + c0;
            for (int x = 0; x < w; ++x) {
                out[o + x] = grad[o + x] + extra[o + x];
                dot[x] += out[o + x] * y[o + x];
            }
        }
        for (int k = 0; k < 9; ++k) {
            const int64_t o = k * f + c0;
            for (int x = 0; x < w; ++x) out[o + x] = out[o + x] / denominator[c0 + x] - 2 * y[o + x] * dot[x];
        }
    }
}

template <typename T, bool so3>
inline void combine_row(T* messages, const T* mixed, const T* loop, T factor, T* normalised, T* denominator,
                        int64_t f) {
    Block<T> y, m, ym, mm, a, b, p;
    for (int64_t c0 = 0; c0 < f; c0 += kBlock) {
        const int w = static_cast<int>(std::min<int64_t>(kBlock, f - c0));
        load(mixed + c0, f, w, y);
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x) {
                m[k][x] = messages[k * f + c0 + x] + loop[k * f + c0 + x] * y[k][x];
                messages[k * f + c0 + x] = m[k][x];
            }
        to_matrix(y, ym, w);
        to_matrix(m, mm, w);
        if (so3) {
            product<T, false, false>(ym, mm, a, w);
            for (int k = 0; k < 9; ++k)
                for (int x = 0; x < w; ++x) a[k][x] *= 2;
        } else {
            product<T, false, false>(mm, ym, a, w);
            product<T, false, false>(ym, mm, b, w);
            for (int k = 0; k < 9; ++k)
                for (int x = 0; x < w; ++x) a[k][x] = factor * (a[k][x] + b[k][x]);
        }
        to_components(a, p, w);
        T* den = denominator + c0;
        for (int x = 0; x < w; ++x) den[x] = 1;
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x) den[x] += p[k][x] * p[k][x];
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x) normalised[k * f + c0 + x] = p[k][x] / den[x];
    }
}

template <typename T, bool so3>
inline void combine_backward_row(const T* grad, const T* normalised, const T* denominator, const T* messages,
                                 const T* mixed, const T* loop, T factor, T* grad_messages, T* grad_mixed,
                                 int64_t f) {
    Block<T> g, y, m, gm, ym, mm, a, b, gmix, gmsg;
    T dot[kBlock], inverse[kBlock];
    const T scale = so3 ? T(2) : factor;
    for (int64_t c0 = 0; c0 < f; c0 += kBlock) {
        const int w = static_cast<int>(std::min<int64_t>(kBlock, f - c0));
        for (int x = 0; x < w; ++x) {
            dot[x] = 0;
            inverse[x] = T(1) / denominator[c0 + x];
        }
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x) dot[x] += grad[k * f + c0 + x] * normalised[k * f + c0 + x];
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x)
                g[k][x] = (grad[k * f + c0 + x] * inverse[x] - 2 * normalised[k * f + c0 + x] * dot[x]) * scale;
        load(mixed + c0, f, w, y);
        load(messages + c0, f, w, m);
        to_matrix(g, gm, w);
        to_matrix(y, ym, w);
        to_matrix(m, mm, w);
        if (so3) {  // C = 2 Y M: dY = G M^T, dM = Y^T G (the 2 is in scale)
            product<T, false, true>(gm, mm, a, w);
            to_components(a, gmix, w);
            product<T, true, false>(ym, gm, a, w);
            to_components(a, gmsg, w);
        } else {  // C = c (M Y + Y M): dM = G Y^T + Y^T G, dY = G M^T + M^T G
            sandwich(gm, ym, a, b, w);
            to_components(a, gmsg, w);
            sandwich(gm, mm, a, b, w);
            to_components(a, gmix, w);
        }
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x) {
                grad_messages[k * f + c0 + x] = gmsg[k][x];
                grad_mixed[k * f + c0 + x] = gmix[k][x] + loop[k * f + c0 + x] * gmsg[k][x];
            }
    }
}

template <typename T>
inline void finish_row(const T* normalised, const T* update, T factor, T* out, int64_t f) {
    Block<T> u, um, a, s;
    for (int64_t c0 = 0; c0 < f; c0 += kBlock) {
        const int w = static_cast<int>(std::min<int64_t>(kBlock, f - c0));
        load(update + c0, f, w, u);
        to_matrix(u, um, w);
        product<T, false, false>(um, um, a, w);
        to_components(a, s, w);
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x)
                out[k * f + c0 + x] = normalised[k * f + c0 + x] + u[k][x] + factor * s[k][x];
    }
}

template <typename T>
inline void finish_backward_row(const T* grad, const T* update, T factor, T* out, int64_t f) {
    Block<T> g, u, gm, um, a, b, d;
    for (int64_t c0 = 0; c0 < f; c0 += kBlock) {
        const int w = static_cast<int>(std::min<int64_t>(kBlock, f - c0));
        load(grad + c0, f, w, g);
        load(update + c0, f, w, u);
        to_matrix(g, gm, w);
        to_matrix(u, um, w);
        sandwich(gm, um, a, b, w);  // d <G, U U> / dU
        to_components(a, d, w);
        for (int k = 0; k < 9; ++k)
            for (int x = 0; x < w; ++x) out[k * f + c0 + x] = g[k][x] + factor * d[k][x];
    }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> normalise_cpu(const at::Tensor& x) {
    const int64_t n = x.size(0), f = x.size(2);
    auto y = at::empty_like(x);
    auto denominator = at::empty({n, 1, f}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "normalise_cpu", [&] {
        const scalar_t* in = x.data_ptr<scalar_t>();
        scalar_t *out = y.data_ptr<scalar_t>(), *den = denominator.data_ptr<scalar_t>();
        at::parallel_for(0, n, grain(f), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) normalise_row(in + i * 9 * f, out + i * 9 * f, den + i * f, f);
        });
    });
    return {y, denominator};
}

at::Tensor normalise_backward_cpu(const at::Tensor& grad, const at::Tensor& extra, const at::Tensor& y,
                                  const at::Tensor& denominator) {
    const int64_t n = y.size(0), f = y.size(2);
    auto out = at::empty_like(y);
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "normalise_backward_cpu", [&] {
        const scalar_t *g = grad.data_ptr<scalar_t>(), *yy = y.data_ptr<scalar_t>(),
                       *den = denominator.data_ptr<scalar_t>();
        const scalar_t* e = extra.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        at::parallel_for(0, n, grain(f), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i)
                normalise_backward_row(g + i * 9 * f, e + i * 9 * f, yy + i * 9 * f, den + i * f, o + i * 9 * f, f);
        });
    });
    return out;
}

std::tuple<at::Tensor, at::Tensor> combine_cpu(at::Tensor& messages, const at::Tensor& mixed, const at::Tensor& loop,
                                               const at::Tensor& factor, bool so3) {
    const int64_t n = mixed.size(0), f = mixed.size(2);
    auto normalised = at::empty_like(mixed);
    auto denominator = at::empty({n, 1, f}, mixed.options());
    AT_DISPATCH_FLOATING_TYPES(mixed.scalar_type(), "combine_cpu", [&] {
        scalar_t* m = messages.data_ptr<scalar_t>();
        const scalar_t *y = mixed.data_ptr<scalar_t>(), *l = loop.data_ptr<scalar_t>(),
                       *fac = factor.data_ptr<scalar_t>();
        scalar_t *o = normalised.data_ptr<scalar_t>(), *den = denominator.data_ptr<scalar_t>();
        at::parallel_for(0, n, grain(f), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                if (so3)
                    combine_row<scalar_t, true>(m + i * 9 * f, y + i * 9 * f, l, fac[i], o + i * 9 * f, den + i * f, f);
                else
                    combine_row<scalar_t, false>(m + i * 9 * f, y + i * 9 * f, l, fac[i], o + i * 9 * f, den + i * f,
                                                 f);
            }
        });
    });
    return {normalised, denominator};
}

std::tuple<at::Tensor, at::Tensor> combine_backward_cpu(const at::Tensor& grad_normalised,
                                                        const at::Tensor& normalised, const at::Tensor& denominator,
                                                        const at::Tensor& messages, const at::Tensor& mixed,
                                                        const at::Tensor& loop, const at::Tensor& factor, bool so3) {
    const int64_t n = mixed.size(0), f = mixed.size(2);
    auto grad_messages = at::empty_like(mixed), grad_mixed = at::empty_like(mixed);
    AT_DISPATCH_FLOATING_TYPES(mixed.scalar_type(), "combine_backward_cpu", [&] {
        const scalar_t *g = grad_normalised.data_ptr<scalar_t>(), *cn = normalised.data_ptr<scalar_t>(),
                       *den = denominator.data_ptr<scalar_t>(), *m = messages.data_ptr<scalar_t>(),
                       *y = mixed.data_ptr<scalar_t>(), *l = loop.data_ptr<scalar_t>(),
                       *fac = factor.data_ptr<scalar_t>();
        scalar_t *gm = grad_messages.data_ptr<scalar_t>(), *gy = grad_mixed.data_ptr<scalar_t>();
        at::parallel_for(0, n, grain(f), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                const int64_t o = i * 9 * f;
                if (so3)
                    combine_backward_row<scalar_t, true>(g + o, cn + o, den + i * f, m + o, y + o, l, fac[i], gm + o,
                                                         gy + o, f);
                else
                    combine_backward_row<scalar_t, false>(g + o, cn + o, den + i * f, m + o, y + o, l, fac[i], gm + o,
                                                          gy + o, f);
            }
        });
    });
    return {grad_messages, grad_mixed};
}

at::Tensor finish_cpu(const at::Tensor& normalised, const at::Tensor& update, const at::Tensor& factor) {
    const int64_t n = update.size(0), f = update.size(2);
    auto out = at::empty_like(update);
    AT_DISPATCH_FLOATING_TYPES(update.scalar_type(), "finish_cpu", [&] {
        const scalar_t *xn = normalised.data_ptr<scalar_t>(), *u = update.data_ptr<scalar_t>(),
                       *fac = factor.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        at::parallel_for(0, n, grain(f), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) finish_row(xn + i * 9 * f, u + i * 9 * f, fac[i], o + i * 9 * f, f);
        });
    });
    return out;
}

at::Tensor finish_backward_cpu(const at::Tensor& grad, const at::Tensor& update, const at::Tensor& factor) {
    const int64_t n = update.size(0), f = update.size(2);
    auto out = at::empty_like(update);
    AT_DISPATCH_FLOATING_TYPES(update.scalar_type(), "finish_backward_cpu", [&] {
        const scalar_t *g = grad.data_ptr<scalar_t>(), *u = update.data_ptr<scalar_t>(),
                       *fac = factor.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        at::parallel_for(0, n, grain(f), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i)
                finish_backward_row(g + i * 9 * f, u + i * 9 * f, fac[i], o + i * 9 * f, f);
        });
    });
    return out;
}

}  // namespace openmm_tensornet
