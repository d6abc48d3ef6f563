// Pair geometry of TensorNet in one pass (CPU inference): radial basis, cosine cutoff and edge-tensor components.
//
// pair_geometry(vectors [P, 3], distances [P], means [K], betas [K], float lower, float upper, str rbf_type)
//     -> (rbf [P, K], cutoff [P], edge [P, 9], rbf_slope [P, K], cutoff_slope [P])
//
// With d the distance and u = vectors / d (u = 0 where d = 0), exactly as openmm_tensornet/ops/radial.py and
// openmm_tensornet/ops/tensors.py compute them (the twins):
//   rbf_type "expnorm": rbf_k = env(d) exp(-betas_k (exp(alpha (lower - d)) - means_k)^2), alpha = 5 / (upper - lower),
//                       env(d) = (cos(pi d / upper) + 1) / 2 for d < upper, else 0;
//   rbf_type "gauss":   rbf_k = exp(betas_0 (d - means_k)^2) (means: the offsets, betas: [1] the coefficient);
//   cutoff: (cos(pi d / upper) + 1) / 2 for d < upper when lower = 0; with lower > 0,
//           (cos(pi (2 (d - lower) / (upper - lower) + 1)) + 1) / 2 for lower < d < upper; 0 elsewhere;
//   edge:   the 9 irreducible components of Id, [u]_x and u u^T - Id / 3 (openmm_tensornet.ops.tensors.edge_components).
//
// rbf_slope and cutoff_slope are d rbf / d d and d cutoff / d d (not differentiable; the backward uses them).
// First derivatives with respect to vectors and distances (forces); the basis parameters must not require
// gradients. The op replaces some forty small operators (and their autograd nodes) per evaluation; other devices
// use the pure-torch twins.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <string>

#include "../common/basis.h"

namespace openmm_tensornet {

namespace {

struct Basis {
    bool gauss;
    double lower, upper, alpha;
};

Basis make_basis(const std::string& rbf_type, double lower, double upper) {
    TORCH_CHECK(rbf_type == "expnorm" || rbf_type == "gauss",
                "pair_geometry: rbf_type must be 'expnorm' or 'gauss'; got '", rbf_type, "'");
    TORCH_CHECK(0 <= lower && lower < upper, "pair_geometry: need 0 <= lower < upper; got lower = ", lower,
                ", upper = ", upper);
    return {rbf_type == "gauss", lower, upper, 5.0 / (upper - lower)};
}

void check_arguments(const at::Tensor& vectors, const at::Tensor& distances, const at::Tensor& means,
                     const at::Tensor& betas, bool gauss) {
    TORCH_CHECK(vectors.dim() == 2 && vectors.size(1) == 3, "pair_geometry: vectors must have shape [P, 3]; got ",
                vectors.sizes());
    TORCH_CHECK(distances.dim() == 1 && distances.size(0) == vectors.size(0),
                "pair_geometry: distances must have shape [P] = [", vectors.size(0), "]; got ", distances.sizes());
    TORCH_CHECK(means.dim() == 1 && betas.dim() == 1 && (gauss ? betas.numel() == 1 : betas.size(0) == means.size(0)),
                "pair_geometry: means must have shape [K] and betas [K] (expnorm) or [1] (gauss); got ", means.sizes(),
                " and ", betas.sizes());
    for (const at::Tensor* t : {&vectors, &distances, &means, &betas}) {
        TORCH_CHECK(t->device().is_cpu(), "pair_geometry: CPU tensors only (other devices use the pure-torch path)");
        TORCH_CHECK(t->scalar_type() == vectors.scalar_type(), "pair_geometry: all inputs must be ",
                    vectors.scalar_type(), "; got ", t->scalar_type());
    }
}

constexpr double kPi = 3.14159265358979323846;

// Everything for one pair; with ``grads`` (backward) the gradients of vectors and distance instead of the outputs.
template <typename T>
struct PairKernel {
    Basis basis;
    const T* means;
    const T* betas;
    int64_t k;

    // cutoff value and derivative at distance d
    inline void cutoff(T d, T& value, T& slope) const {
        const T upper = T(basis.upper), lower = T(basis.lower);
        if (!(d < upper) || (lower > 0 && !(d > lower))) {
            value = slope = 0;
            return;
        }
        if (lower > 0) {
            const T scale = T(2) / (upper - lower);
            const T phase = T(kPi) * (scale * (d - lower) + 1);
            value = T(0.5) * (std::cos(phase) + 1);
            slope = T(-0.5) * std::sin(phase) * T(kPi) * scale;
        } else {
            const T phase = d * T(kPi / basis.upper);
            value = T(0.5) * (std::cos(phase) + 1);
            slope = T(-0.5) * std::sin(phase) * T(kPi / basis.upper);
        }
    }

    // rbf values (and, with slopes != nullptr, d rbf / d d) at distance d
    inline void radial(T d, T* values, T* slopes) const {
        if (basis.gauss) {
            const T coeff = betas[0];
            for (int64_t j = 0; j < k; ++j) {
                const T shifted = d - means[j];
                const T value = std::exp(coeff * shifted * shifted);
                values[j] = value;
                if (slopes) slopes[j] = value * 2 * coeff * shifted;
            }
            return;
        }
        T envelope = 0, envelope_slope = 0;
        const T upper = T(basis.upper);
        if (d < upper) {
            const T phase = d * T(kPi / basis.upper);
            envelope = T(0.5) * (std::cos(phase) + 1);
            envelope_slope = T(-0.5) * std::sin(phase) * T(kPi / basis.upper);
        }
        const T e = std::exp(T(basis.alpha) * (T(basis.lower) - d));
        for (int64_t j = 0; j < k; ++j) {
            const T shifted = e - means[j];
            const T g = std::exp(-betas[j] * shifted * shifted);
            values[j] = envelope * g;
            if (slopes) slopes[j] = envelope_slope * g + envelope * g * 2 * T(basis.alpha) * betas[j] * shifted * e;
        }
    }
};

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; ++j) sum += a[j] * b[j];
    return sum;
}

// The edge tensors Id, [u]_x and u u^T - |u|^2 Id / 3 are the I, A and S parts of their sum, so the components of
// that one matrix (basis.h) are the 9 edge components; u = 0 (a self-loop) gives Id only.
template <typename T>
inline void edge_of(const T* u, T* edge) {
    const T x = u[0], y = u[1], z = u[2];
    const T diagonal = T(1) - (x * x + y * y + z * z) / T(3);
    const T m[9] = {diagonal + x * x, x * y - z, x * z + y,
                    x * y + z, diagonal + y * y, y * z - x,
                    x * z - y, y * z + x, diagonal + z * z};
    matrix_to_components(m, edge);
}

// d edge / d u contracted with the edge gradient g[9] (the derivative of edge_of's components for a unit u).
template <typename T>
inline void edge_backward(const T* u, const T* g, T* gu) {
    const T s2 = 2 * InvSqrt<T>::r2, i6 = InvSqrt<T>::r6;  // sqrt(2), 1 / sqrt(6)
    const T x = u[0], y = u[1], z = u[2];
    gu[0] = s2 * (g[1] + y * g[4] + z * g[5] + x * g[7]) + 2 * x * i6 * g[8];
    gu[1] = s2 * (g[2] + x * g[4] + z * g[6] - y * g[7]) + 2 * y * i6 * g[8];
    gu[2] = s2 * (g[3] + x * g[5] + y * g[6]) - 4 * z * i6 * g[8];
}

// {rbf, cutoff, edge, d rbf / d d, d cutoff / d d}
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& vectors_in, const at::Tensor& distances_in, const at::Tensor& means_in,
    const at::Tensor& betas_in, const Basis& basis) {
    const auto vectors = vectors_in.contiguous(), distances = distances_in.contiguous();
    const auto means = means_in.contiguous(), betas = betas_in.contiguous();
    const int64_t p = vectors.size(0), k = means.size(0);
    auto rbf = at::empty({p, k}, vectors.options());
    auto cutoff = at::empty({p}, vectors.options());
    auto edge = at::empty({p, 9}, vectors.options());
    auto rbf_slope = at::empty({p, k}, vectors.options());
    auto cutoff_slope = at::empty({p}, vectors.options());
    AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "pair_geometry_cpu", [&] {
        const PairKernel<scalar_t> kernel{basis, means.data_ptr<scalar_t>(), betas.data_ptr<scalar_t>(), k};
        const scalar_t *v = vectors.data_ptr<scalar_t>(), *d = distances.data_ptr<scalar_t>();
        scalar_t *r = rbf.data_ptr<scalar_t>(), *c = cutoff.data_ptr<scalar_t>(), *e = edge.data_ptr<scalar_t>();
        scalar_t *rs = rbf_slope.data_ptr<scalar_t>(), *cs = cutoff_slope.data_ptr<scalar_t>();
        at::parallel_for(0, p, 256, [&](int64_t begin, int64_t end) {
            for (int64_t q = begin; q < end; ++q) {
                scalar_t u[3];
                kernel.cutoff(d[q], c[q], cs[q]);
                kernel.radial(d[q], r + q * k, rs + q * k);
                const scalar_t length = d[q] > 0 ? d[q] : scalar_t(1);
                for (int a = 0; a < 3; ++a) u[a] = v[q * 3 + a] / length;
                edge_of(u, e + q * 9);
            }
        });
    });
    return {rbf, cutoff, edge, rbf_slope, cutoff_slope};
}

// Gradients {vectors, distances} from the output gradients (undefined: zero) and the forward's slopes.
std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_rbf_in, const at::Tensor& grad_cutoff_in,
                                                const at::Tensor& grad_edge_in, const at::Tensor& vectors_in,
                                                const at::Tensor& distances_in, const at::Tensor& rbf_slope_in,
                                                const at::Tensor& cutoff_slope_in) {
    const int64_t p = vectors_in.size(0);
    TORCH_CHECK(vectors_in.dim() == 2 && vectors_in.size(1) == 3 && distances_in.sizes() == at::IntArrayRef({p}) &&
                    rbf_slope_in.dim() == 2 && rbf_slope_in.size(0) == p &&
                    cutoff_slope_in.sizes() == distances_in.sizes(),
                "pair_geometry_backward: expected vectors [P, 3], distances [P], rbf_slope [P, K] and cutoff_slope [P] "
                "as pair_geometry returns them; got ", vectors_in.sizes(), ", ", distances_in.sizes(), ", ",
                rbf_slope_in.sizes(), ", ", cutoff_slope_in.sizes());
    const int64_t k = rbf_slope_in.size(1);
    for (const auto* g : {&grad_rbf_in, &grad_cutoff_in, &grad_edge_in})
        TORCH_CHECK(!g->defined() || g->size(0) == p, "pair_geometry_backward: every gradient must have P = ", p,
                    " rows; got ", g->sizes());
    TORCH_CHECK(!grad_rbf_in.defined() || grad_rbf_in.sizes() == rbf_slope_in.sizes(),
                "pair_geometry_backward: grad_rbf must have shape ", rbf_slope_in.sizes(), "; got ",
                grad_rbf_in.sizes());
    TORCH_CHECK(!grad_edge_in.defined() || grad_edge_in.sizes() == at::IntArrayRef({p, 9}),
                "pair_geometry_backward: grad_edge must have shape [", p, ", 9]; got ", grad_edge_in.sizes());
    const auto vectors = vectors_in.contiguous(), distances = distances_in.contiguous();
    const auto rbf_slope = rbf_slope_in.contiguous(), cutoff_slope = cutoff_slope_in.contiguous();
    const bool has_rbf = grad_rbf_in.defined(), has_cutoff = grad_cutoff_in.defined();
    const bool has_edge = grad_edge_in.defined();
    const auto grad_rbf = has_rbf ? grad_rbf_in.contiguous() : grad_rbf_in;
    const auto grad_cutoff = has_cutoff ? grad_cutoff_in.contiguous() : grad_cutoff_in;
    const auto grad_edge = has_edge ? grad_edge_in.contiguous() : grad_edge_in;
    auto grad_vectors = at::empty_like(vectors);
    auto grad_distances = at::empty_like(distances);
    AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "pair_geometry_backward_cpu", [&] {
        const scalar_t *v = vectors.data_ptr<scalar_t>(), *d = distances.data_ptr<scalar_t>();
        const scalar_t *rs = rbf_slope.data_ptr<scalar_t>(), *cs = cutoff_slope.data_ptr<scalar_t>();
        const scalar_t* gr = has_rbf ? grad_rbf.data_ptr<scalar_t>() : nullptr;
        const scalar_t* gc = has_cutoff ? grad_cutoff.data_ptr<scalar_t>() : nullptr;
        const scalar_t* ge = has_edge ? grad_edge.data_ptr<scalar_t>() : nullptr;
        scalar_t *gv = grad_vectors.data_ptr<scalar_t>(), *gd = grad_distances.data_ptr<scalar_t>();
        at::parallel_for(0, p, 256, [&](int64_t begin, int64_t end) {
            for (int64_t q = begin; q < end; ++q) {
                scalar_t total = gc ? gc[q] * cs[q] : scalar_t(0);
                if (gr) total += dot(gr + q * k, rs + q * k, k);
                const bool positive = d[q] > 0;
                const scalar_t length = positive ? d[q] : scalar_t(1);
                scalar_t u[3], gu[3] = {0, 0, 0};
                for (int a = 0; a < 3; ++a) u[a] = v[q * 3 + a] / length;
                if (ge) edge_backward(u, ge + q * 9, gu);
                scalar_t along = 0;
                for (int a = 0; a < 3; ++a) {
                    gv[q * 3 + a] = gu[a] / length;
                    along += gu[a] * u[a];
                }
                gd[q] = positive ? total - along / length : total;  // u = v / d: du / dd = -u / d
            }
        });
    });
    return {grad_vectors, grad_distances};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> pair_geometry_cpu(
    const at::Tensor& vectors, const at::Tensor& distances, const at::Tensor& means, const at::Tensor& betas,
    double lower, double upper, c10::string_view rbf_type) {
    const Basis basis = make_basis(std::string(rbf_type), lower, upper);
    check_arguments(vectors, distances, means, betas, basis.gauss);
    return forward_cpu(vectors, distances, means, betas, basis);
}

std::tuple<at::Tensor, at::Tensor> pair_geometry_backward_cpu(const std::optional<at::Tensor>& grad_rbf,
                                                              const std::optional<at::Tensor>& grad_cutoff,
                                                              const std::optional<at::Tensor>& grad_edge,
                                                              const at::Tensor& vectors, const at::Tensor& distances,
                                                              const at::Tensor& rbf_slope,
                                                              const at::Tensor& cutoff_slope) {
    return backward_cpu(grad_rbf.value_or(at::Tensor()), grad_cutoff.value_or(at::Tensor()),
                        grad_edge.value_or(at::Tensor()), vectors, distances, rbf_slope, cutoff_slope);
}

class PairGeometry : public torch::autograd::Function<PairGeometry> {
   public:
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& vectors,
                                                  const at::Tensor& distances, const at::Tensor& means,
                                                  const at::Tensor& betas, double lower, double upper,
                                                  const std::string& rbf_type) {
        at::AutoDispatchBelowADInplaceOrView guard;
        TORCH_CHECK(!means.requires_grad() && !betas.requires_grad(),
                    "pair_geometry: the radial basis parameters require gradients, which this inference op does not "
                    "provide; use the pure-torch path (model.train()) or freeze them (requires_grad_(False)).");
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::pair_geometry", "")
                             .typed<decltype(pair_geometry_cpu)>();
        auto [rbf, cutoff, edge, rbf_slope, cutoff_slope] =
            op.call(vectors, distances, means, betas, lower, upper, rbf_type);
        ctx->save_for_backward({vectors, distances, rbf_slope, cutoff_slope});
        ctx->mark_non_differentiable({rbf_slope, cutoff_slope});
        return {rbf, cutoff, edge, rbf_slope, cutoff_slope};
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "pair_geometry: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto s = ctx->get_saved_variables();
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::pair_geometry_backward", "")
                             .typed<decltype(pair_geometry_backward_cpu)>();
        auto [grad_vectors, grad_distances] = op.call(grads[0], grads[1], grads[2], s[0], s[1], s[2], s[3]);
        return {grad_vectors, grad_distances, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> pair_geometry_autograd(
    const at::Tensor& vectors, const at::Tensor& distances, const at::Tensor& means, const at::Tensor& betas,
    double lower, double upper, c10::string_view rbf_type) {
    auto o = PairGeometry::apply(vectors, distances, means, betas, lower, upper, std::string(rbf_type));
    return {o[0], o[1], o[2], o[3], o[4]};
}


// pair_vectors(positions [N, 3], indices [2, P], shifts [P, 3] int32, box [3, 3]?) -> (vectors [P, 3], distances [P])
//
// vectors = positions[i] - positions[j] - shifts @ box for every pair (i, j) of ``indices``; padding rows (index -1)
// give a zero vector and distance. The same as openmm_tensornet.ops.neighbors.vectors_from_shifts and the norm (the
// twins); first derivatives with respect to positions only (the box must not require gradients).
std::tuple<at::Tensor, at::Tensor> pair_vectors_cpu(const at::Tensor& positions_in, const at::Tensor& indices_in,
                                                    const at::Tensor& shifts_in,
                                                    const std::optional<at::Tensor>& box_in) {
    TORCH_CHECK(positions_in.dim() == 2 && positions_in.size(1) == 3,
                "pair_vectors: positions must have shape [N, 3]; got ", positions_in.sizes());
    TORCH_CHECK(indices_in.dim() == 2 && indices_in.size(0) == 2 && indices_in.scalar_type() == at::kLong,
                "pair_vectors: indices must be int64 with shape [2, P]; got ", indices_in.sizes());
    const int64_t n = positions_in.size(0), p = indices_in.size(1);
    TORCH_CHECK(shifts_in.dim() == 2 && shifts_in.size(0) == p && shifts_in.size(1) == 3,
                "pair_vectors: shifts must have shape [P, 3] = [", p, ", 3]; got ", shifts_in.sizes());
    const bool periodic = box_in.has_value() && box_in->defined();
    if (periodic)
        TORCH_CHECK(box_in->sizes() == at::IntArrayRef({3, 3}) && box_in->scalar_type() == positions_in.scalar_type(),
                    "pair_vectors: box must be [3, 3] with the dtype of positions");
    const auto positions = positions_in.contiguous(), indices = indices_in.contiguous();
    const auto shifts = shifts_in.to(at::kInt).contiguous();
    const auto box = periodic ? box_in->contiguous() : at::Tensor();
    auto vectors = at::empty({p, 3}, positions.options());
    auto distances = at::empty({p}, positions.options());
    AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "pair_vectors_cpu", [&] {
        const scalar_t* x = positions.data_ptr<scalar_t>();
        const scalar_t* b = periodic ? box.data_ptr<scalar_t>() : nullptr;
        const int64_t* first = indices.data_ptr<int64_t>();
        const int64_t* second = first + p;
        const int32_t* s = shifts.data_ptr<int32_t>();
        scalar_t *v = vectors.data_ptr<scalar_t>(), *d = distances.data_ptr<scalar_t>();
        at::parallel_for(0, p, 1024, [&](int64_t begin, int64_t end) {
            for (int64_t q = begin; q < end; ++q) {
                const int64_t i = first[q], j = second[q];
                if (i < 0 || j < 0) {
                    v[3 * q] = v[3 * q + 1] = v[3 * q + 2] = d[q] = 0;
                    continue;
                }
                TORCH_CHECK(i < n && j < n, "pair_vectors: pair ", q, " indexes beyond the ", n, " atoms");
                scalar_t sum = 0;
                for (int a = 0; a < 3; ++a) {
                    scalar_t value = x[3 * i + a] - x[3 * j + a];
                    if (b) value -= s[3 * q] * b[a] + s[3 * q + 1] * b[3 + a] + s[3 * q + 2] * b[6 + a];
                    v[3 * q + a] = value;
                    sum += value * value;
                }
                d[q] = std::sqrt(sum);
            }
        });
    });
    return {vectors, distances};
}

// d/dpositions: every pair adds g = grad_vector + grad_distance * v / d to atom i and subtracts it from atom j.
at::Tensor pair_vectors_backward_cpu(const std::optional<at::Tensor>& grad_vectors_in,
                                     const std::optional<at::Tensor>& grad_distances_in, const at::Tensor& vectors_in,
                                     const at::Tensor& distances_in, const at::Tensor& indices_in, int64_t num_atoms) {
    const auto vectors = vectors_in.contiguous(), distances = distances_in.contiguous();
    const auto indices = indices_in.contiguous();
    const bool has_v = grad_vectors_in.has_value() && grad_vectors_in->defined();
    const bool has_d = grad_distances_in.has_value() && grad_distances_in->defined();
    TORCH_CHECK(indices.dim() == 2 && indices.size(0) == 2 && indices.scalar_type() == at::kLong &&
                    vectors.sizes() == at::IntArrayRef({indices.size(1), 3}) &&
                    distances.sizes() == at::IntArrayRef({indices.size(1)}) && num_atoms >= 0,
                "pair_vectors_backward: expected indices int64 [2, P], vectors [P, 3], distances [P] and num_atoms >= "
                "0; got ", indices.sizes(), ", ", vectors.sizes(), ", ", distances.sizes(), ", ", num_atoms);
    TORCH_CHECK((!has_v || grad_vectors_in->sizes() == vectors.sizes()) &&
                    (!has_d || grad_distances_in->sizes() == distances.sizes()),
                "pair_vectors_backward: the gradients must have the shapes of vectors and distances");
    const auto grad_vectors = has_v ? grad_vectors_in->contiguous() : at::Tensor();
    const auto grad_distances = has_d ? grad_distances_in->contiguous() : at::Tensor();
    const int64_t p = indices.size(1);
    auto grad = at::zeros({num_atoms, 3}, vectors.options());
    AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "pair_vectors_backward_cpu", [&] {
        const scalar_t *v = vectors.data_ptr<scalar_t>(), *d = distances.data_ptr<scalar_t>();
        const scalar_t* gv = has_v ? grad_vectors.data_ptr<scalar_t>() : nullptr;
        const scalar_t* gd = has_d ? grad_distances.data_ptr<scalar_t>() : nullptr;
        const int64_t* first = indices.data_ptr<int64_t>();
        const int64_t* second = first + p;
        scalar_t* g = grad.data_ptr<scalar_t>();
        for (int64_t q = 0; q < p; ++q) {  // serial: pairs share atoms
            const int64_t i = first[q], j = second[q];
            if (i < 0 || j < 0) continue;
            TORCH_CHECK(i < num_atoms && j < num_atoms, "pair_vectors_backward: pair ", q, " indexes beyond the ",
                        num_atoms, " atoms");
            const scalar_t radial = (gd && d[q] > 0) ? gd[q] / d[q] : scalar_t(0);
            for (int a = 0; a < 3; ++a) {
                const scalar_t value = (gv ? gv[3 * q + a] : scalar_t(0)) + radial * v[3 * q + a];
                g[3 * i + a] += value;
                g[3 * j + a] -= value;
            }
        }
    });
    return grad;
}

class PairVectors : public torch::autograd::Function<PairVectors> {
   public:
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& positions,
                                                  const at::Tensor& indices, const at::Tensor& shifts,
                                                  const std::optional<at::Tensor>& box) {
        at::AutoDispatchBelowADInplaceOrView guard;
        TORCH_CHECK(!(box.has_value() && box->defined() && box->requires_grad()),
                    "pair_vectors: the box requires gradients, which this op does not provide; use "
                    "openmm_tensornet.ops.neighbors.vectors_from_shifts");
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::pair_vectors", "")
                             .typed<decltype(pair_vectors_cpu)>();
        auto [vectors, distances] = op.call(positions, indices, shifts, box);
        ctx->save_for_backward({vectors, distances, indices});
        ctx->saved_data["num_atoms"] = positions.size(0);
        return {vectors, distances};
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "pair_vectors: the compiled op has no second derivative (create_graph=True). Train with "
                    "model.train(), which uses the pure-torch path, or evaluate forces without create_graph.");
        const auto s = ctx->get_saved_variables();
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("openmm_tensornet::pair_vectors_backward", "")
                             .typed<decltype(pair_vectors_backward_cpu)>();
        at::Tensor grad = op.call(grads[0], grads[1], s[0], s[1], s[2], ctx->saved_data["num_atoms"].toInt());
        return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

std::tuple<at::Tensor, at::Tensor> pair_vectors_autograd(const at::Tensor& positions, const at::Tensor& indices,
                                                         const at::Tensor& shifts,
                                                         const std::optional<at::Tensor>& box) {
    auto outputs = PairVectors::apply(positions, indices, shifts, box);
    return {outputs[0], outputs[1]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(openmm_tensornet, m) {
    m.def("pair_geometry(Tensor vectors, Tensor distances, Tensor means, Tensor betas, float lower, float upper, "
          "str rbf_type) -> (Tensor rbf, Tensor cutoff, Tensor edge, Tensor rbf_slope, Tensor cutoff_slope)");
    m.def("pair_geometry_backward(Tensor? grad_rbf, Tensor? grad_cutoff, Tensor? grad_edge, Tensor vectors, "
          "Tensor distances, Tensor rbf_slope, Tensor cutoff_slope) -> (Tensor grad_vectors, Tensor grad_distances)");
    m.def("pair_vectors(Tensor positions, Tensor indices, Tensor shifts, Tensor? box) "
          "-> (Tensor vectors, Tensor distances)");
    m.def("pair_vectors_backward(Tensor? grad_vectors, Tensor? grad_distances, Tensor vectors, Tensor distances, "
          "Tensor indices, int num_atoms) -> Tensor");
}

TORCH_LIBRARY_IMPL(openmm_tensornet, CPU, m) {
    m.impl("pair_geometry", &pair_geometry_cpu);
    m.impl("pair_geometry_backward", &pair_geometry_backward_cpu);
    m.impl("pair_vectors", &pair_vectors_cpu);
    m.impl("pair_vectors_backward", &pair_vectors_backward_cpu);
}

TORCH_LIBRARY_IMPL(openmm_tensornet, Autograd, m) {
    m.impl("pair_geometry", &pair_geometry_autograd);
    m.impl("pair_vectors", &pair_vectors_autograd);
}

}  // namespace openmm_tensornet
