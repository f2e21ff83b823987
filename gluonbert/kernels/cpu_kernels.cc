// CPU kernels that MXNet 1.9.1 lacks, loaded as an MXNet custom-operator library
// (include/mxnet/lib_api.h). Built on the user's machine by gluonbert/model/cpu_kernels.py with
// -O3 -march=native, so the loops are vectorised for the CPU they run on. float32 only.
//
// gluonbert_layer_norm(data, gamma, beta; eps) -> (out, mean, rstd)
//   Layer normalisation over the last axis of data (..., C).
//   out  (..., C): (data - mean) * rstd * gamma + beta
//   mean, rstd (N,): row means and 1 / sqrt(row variance + eps), N = data.size / C.
//   MXNet's own LayerNorm backward on CPU runs ten generic broadcast/reduce kernels; this one
//   is one pass over the rows plus a per-thread reduction for gamma and beta.
//
// gluonbert_add_dropout_layer_norm(data, residual, gamma, beta, train; eps, p)
//     -> (out, keep, mean, rstd)
//   out = LayerNorm(residual + Dropout_p(data)), the residual sub-layer ending of a Transformer
//   cell, in one pass. keep (..., C) uint8 is the dropout mask (1 byte per value where MXNet's
//   Dropout keeps a float32 mask), and the backward pass recomputes the sum from data and
//   residual instead of keeping it.
//
// gluonbert_dropout(data, train; p) -> (out, keep)
//   Inverted dropout: out = data * keep / (1 - p).
//
// gluonbert_self_attention(qkv, valid_length, train; heads, p) -> (context, weights, keep)
//   Scaled dot-product attention of every head, from the fused projection qkv (T, B, 3C) in
//   the layout of MXNet's interleaved_matmul_selfatt_* operators: weights (B*H, T, T) =
//   softmax(Q K^T / sqrt(d)) over the first valid_length[b*H+h] keys (the others get weight
//   exactly 0 and are not computed), then dropout, context (T, B, C) = dropped weights x V.
//   One pass per (sequence, head) pair with its queries, keys and values in cache, where
//   MXNet runs two batched products, a softmax, a dropout and their backward passes, each
//   over the whole (B*H, T, T) tensor.
//
// gluonbert_self_attention_inference(qkv, valid_length; heads, weights) -> (context, weights)
//   The same attention without dropout and without a backward pass, for inference: only the
//   first valid_length queries are computed (the context rows of padding queries are 0, which
//   the encoder never reads at real positions), and no dropout mask is written. weights=1
//   writes the (B*H, T, T) attention weights (0 in padding query rows); weights=0 gives a
//   (B*H, 1, 1) placeholder instead when nobody reads them. Its backward pass is an error.
//
// gluonbert_softmax_ce(scores, label) -> (ce, lse, top)
//   Cross-entropy of each row of scores (..., V) against its label (...) (float, clipped to
//   [0, V - 1] as MXNet's pick does): ce = lse - scores[label], lse = log sum exp(scores). The
//   backward pass recomputes the softmax from scores and lse, so no (..., V) log-probabilities
//   are kept (for the masked LM: batch x predictions x vocabulary floats). top is the index of
//   each row's first maximum (MXNet's argmax, as a float), found from the row maximum the
//   softmax needs anyway: the accuracy statistic then costs no second pass of MXNet's argmax
//   over the (..., V) scores. It has no gradient.
//
// train is a (1,) tensor, non-zero in training mode: library operators are not told MXNet's
// is_train flag, so the Python blocks derive it from MXNet's own Dropout (see dropout.py).
// Dropout masks come from a counter-based hash of the element index and a 64-bit key drawn
// from MXNet's seeded CPU generator: reproducible under mx.random.seed, independent of the
// number of threads, and much faster than MXNet's per-element std::mt19937 draws.
//
// MXNet passes no OpReqType to library operators: outputs are always overwritten. Gradients of
// gamma and beta therefore reach the parameters through an identity in the Python blocks, so
// that grad_req='add' keeps working.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <omp.h>

#include "mxnet/lib_api.h"

using mxnet::ext::CustomOp;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using Attrs = std::unordered_map<std::string, std::string>;

namespace {

using Shapes = std::vector<std::vector<unsigned int>>;

const float* in_f(std::vector<MXTensor>* t, int i) {
  return static_cast<const float*>((*t)[i].data_ptr);
}
float* out_f(std::vector<MXTensor>* t, int i) { return (*t)[i].data<float>(); }
int64_t rows_of(const MXTensor& t) { return t.size() / t.shape.back(); }

// Vector registers as GCC vector types, so that the accumulators of the blocked products below
// stay in registers (arrays of floats under "omp simd" are kept on the stack by GCC): 16 lanes
// with AVX-512, 8 otherwise. Loads and stores go through memcpy (any alignment).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int64_t kQueries = 4;  // queries per block: 4 x 4 score registers of AVX-512's 32
#else
constexpr int kLanes = 8;
constexpr int64_t kQueries = 2;  // 2 x 4 score registers of AVX2's 16
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load_vec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store_vec(float* p, Vec v) { std::memcpy(p, &v, sizeof(v)); }

// max(p[0..n)), n >= 1, kLanes at a time (GCC leaves "omp simd reduction(max)" scalar).
inline float row_max(const float* p, int64_t n) {
  float top = p[0];
  int64_t j = 0;
  if (n >= kLanes) {
    Vec m = load_vec(p);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      const Vec x = load_vec(p + j);
      m = m > x ? m : x;
    }
    for (int k = 0; k < kLanes; ++k) top = std::max(top, m[k]);
  }
  for (; j < n; ++j) top = std::max(top, p[j]);
  return top;
}

// Index of the first element equal to top (a value of p[0..n)), kLanes at a time.
inline int64_t first_index_of(const float* p, int64_t n, float top) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const Vec x = load_vec(p + j);
    const auto hit = x == top;
    bool any = false;
    for (int k = 0; k < kLanes; ++k) any |= hit[k] != 0;
    if (any) break;
  }
  for (; j < n; ++j)
    if (p[j] == top) return j;
  return n - 1;   // a row of NaNs: no element equals its maximum
}

// ---- dropout masks ---------------------------------------------------------------------------

inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct MaskKey {
  uint32_t k0, k1;   // key drawn once per call from MXNet's generator
  uint32_t threshold;  // keep when hash >= threshold, i.e. with probability 1 - p
  float scale;         // 1 / (1 - p)
  bool active;         // training mode and p > 0
};

MaskKey mask_key(const Attrs& attrs, const float* train, const OpResource& res) {
  MaskKey key{};
  const double p = std::stod(attrs.at("p"));
  key.active = train[0] != 0.f && p > 0.0;
  if (key.active) {
    mxnet::ext::mx_cpu_rand_t* gen = res.get_cpu_rand_states();
    key.k0 = static_cast<uint32_t>((*gen)());
    key.k1 = static_cast<uint32_t>((*gen)());
    key.threshold = static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0));
    key.scale = static_cast<float>(1.0 / (1.0 - p));
  }
  return key;
}

// keep[j] for the elements [begin, begin + len) of the flattened tensor.
inline void fill_mask(const MaskKey& key, int64_t begin, int64_t len, uint8_t* keep) {
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    const uint64_t i = static_cast<uint64_t>(begin + j);
    const uint32_t h = fmix32(fmix32(static_cast<uint32_t>(i) ^ key.k0) +
                              (static_cast<uint32_t>(i >> 32) ^ key.k1));
    keep[j] = h >= key.threshold;
  }
}

MXReturnValue parse_p(const Attrs& attrs) {
  const double p = attrs.count("p") ? std::stod(attrs.at("p")) : -1.0;
  if (!(p >= 0.0 && p < 1.0)) {
    MX_ERROR_MSG << "gluonbert dropout: attribute p must be in [0, 1)";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// ---- LayerNorm rows ----------------------------------------------------------------------------

// Normalises row s (length c) into y; returns mean and rstd.
inline void norm_row(const float* s, const float* gamma, const float* beta, int64_t c,
                     float eps, float* y, float* mean, float* rstd) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < c; ++j) sum += s[j];
  const float mu = sum / c;
  float sq = 0.f;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < c; ++j) sq += (s[j] - mu) * (s[j] - mu);
  const float r = 1.f / std::sqrt(sq / c + eps);
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) y[j] = (s[j] - mu) * r * gamma[j] + beta[j];
  *mean = mu;
  *rstd = r;
}

// Gradient of one normalised row: ds (length c) from dy, and the row's share of d_gamma/d_beta.
inline void norm_row_backward(const float* s, const float* dy, const float* gamma, int64_t c,
                              float mu, float r, float* ds, float* dgamma, float* dbeta) {
  float sum_g = 0.f, sum_gx = 0.f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t j = 0; j < c; ++j) {
    const float xhat = (s[j] - mu) * r;
    const float g = dy[j] * gamma[j];
    sum_g += g;
    sum_gx += g * xhat;
    dgamma[j] += dy[j] * xhat;
    dbeta[j] += dy[j];
  }
  const float a = sum_g / c, b = sum_gx / c;
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) ds[j] = r * (dy[j] * gamma[j] - a - (s[j] - mu) * r * b);
}

// Runs row_fn(i, s_buffer, dgamma_partial, dbeta_partial) over all rows on every thread, then
// sums the per-thread partial gradients of gamma and beta.
template <typename RowFn>
void backward_rows(int64_t n, int64_t c, const OpResource& res, float* dgamma, float* dbeta,
                   RowFn row_fn) {
  const int threads = omp_get_max_threads();
  float* partial = static_cast<float*>(
      res.alloc_cpu(static_cast<int>(sizeof(float) * threads * 3 * c)));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* pg = partial + t * 3 * c;
    float* pb = pg + c;
    float* buffer = pb + c;
    for (int64_t j = 0; j < c; ++j) pg[j] = pb[j] = 0.f;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) row_fn(i, buffer, pg, pb);
  }
  for (int64_t j = 0; j < c; ++j) {
    float g = 0.f, b = 0.f;
    for (int t = 0; t < threads; ++t) {
      g += partial[t * 3 * c + j];
      b += partial[t * 3 * c + c + j];
    }
    dgamma[j] = g;
    dbeta[j] = b;
  }
}

// ---- gluonbert_layer_norm ----------------------------------------------------------------------

MXReturnValue ln_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                         std::vector<MXTensor>* out, const OpResource& res) {
  const float eps = std::stof(attrs.at("eps"));
  const int64_t c = (*in)[0].shape.back(), n = rows_of((*in)[0]);
  const float *x = in_f(in, 0), *gamma = in_f(in, 1), *beta = in_f(in, 2);
  float *y = out_f(out, 0), *mean = out_f(out, 1), *rstd = out_f(out, 2);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    norm_row(x + i * c, gamma, beta, c, eps, y + i * c, mean + i, rstd + i);
  return MX_SUCCESS;
}

// in: d_out, d_mean, d_rstd, data, gamma, beta, out, mean, rstd
// out: d_data, d_gamma, d_beta
MXReturnValue ln_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                          std::vector<MXTensor>* out, const OpResource& res) {
  const int64_t c = (*in)[3].shape.back(), n = rows_of((*in)[3]);
  const float *dy = in_f(in, 0), *x = in_f(in, 3), *gamma = in_f(in, 4);
  const float *mean = in_f(in, 7), *rstd = in_f(in, 8);
  float* dx = out_f(out, 0);
  backward_rows(n, c, res, out_f(out, 1), out_f(out, 2),
                [=](int64_t i, float*, float* pg, float* pb) {
                  norm_row_backward(x + i * c, dy + i * c, gamma, c, mean[i], rstd[i],
                                    dx + i * c, pg, pb);
                });
  return MX_SUCCESS;
}

MXReturnValue ln_parse(const Attrs& attrs, int* num_in, int* num_out) {
  if (attrs.count("eps") == 0) {
    MX_ERROR_MSG << "gluonbert_layer_norm needs the attribute eps";
    return MX_FAIL;
  }
  *num_in = 3;
  *num_out = 3;
  return MX_SUCCESS;
}

MXReturnValue check_float32(const char* op, const std::vector<int>& types, size_t count) {
  for (size_t k = 0; k < count; ++k) {
    if (types[k] != mxnet::ext::kFloat32) {
      MX_ERROR_MSG << op << " supports float32 only; input " << k << " has dtype code "
                   << types[k];
      return MX_FAIL;
    }
  }
  return MX_SUCCESS;
}

MXReturnValue ln_infer_type(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  if (check_float32("gluonbert_layer_norm", *in, 3) != MX_SUCCESS) return MX_FAIL;
  for (auto& t : *out) t = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

// Checks that gamma and beta (inputs first, first + 1) are (C,) for data (..., C).
MXReturnValue check_affine(const char* op, const Shapes& in, int first) {
  const auto& data = in[0];
  if (data.empty()) {
    MX_ERROR_MSG << op << ": data must have at least one axis";
    return MX_FAIL;
  }
  for (int k = first; k < first + 2; ++k) {
    if (in[k].size() != 1 || in[k][0] != data.back()) {
      MX_ERROR_MSG << op << ": gamma and beta must have shape (" << data.back() << ",)";
      return MX_FAIL;
    }
  }
  return MX_SUCCESS;
}

std::vector<unsigned int> row_shape(const std::vector<unsigned int>& data) {
  unsigned int rows = 1;
  for (size_t k = 0; k + 1 < data.size(); ++k) rows *= data[k];
  return {rows};
}

MXReturnValue ln_infer_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  if (check_affine("gluonbert_layer_norm", *in, 1) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = (*in)[0];
  (*out)[1] = (*out)[2] = row_shape((*in)[0]);
  return MX_SUCCESS;
}

// ---- gluonbert_add_dropout_layer_norm ----------------------------------------------------------

MXReturnValue adln_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                           std::vector<MXTensor>* out, const OpResource& res) {
  const float eps = std::stof(attrs.at("eps"));
  const int64_t c = (*in)[0].shape.back(), n = rows_of((*in)[0]);
  const float *x = in_f(in, 0), *residual = in_f(in, 1), *gamma = in_f(in, 2);
  const float *beta = in_f(in, 3);
  const MaskKey key = mask_key(attrs, in_f(in, 4), res);
  float* y = out_f(out, 0);
  uint8_t* keep = (*out)[1].data<uint8_t>();
  float *mean = out_f(out, 2), *rstd = out_f(out, 3);
#pragma omp parallel
  {
    std::vector<float> s(c);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float *xi = x + i * c, *ri = residual + i * c;
      uint8_t* ki = keep + i * c;
      if (key.active) {
        fill_mask(key, i * c, c, ki);
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) s[j] = ri[j] + xi[j] * (key.scale * ki[j]);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          ki[j] = 1;
          s[j] = ri[j] + xi[j];
        }
      }
      norm_row(s.data(), gamma, beta, c, eps, y + i * c, mean + i, rstd + i);
    }
  }
  return MX_SUCCESS;
}

// in: d_out, d_keep, d_mean, d_rstd, data, residual, gamma, beta, train, out, keep, mean, rstd
// out: d_data, d_residual, d_gamma, d_beta, d_train
MXReturnValue adln_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                            std::vector<MXTensor>* out, const OpResource& res) {
  const int64_t c = (*in)[4].shape.back(), n = rows_of((*in)[4]);
  const double p = std::stod(attrs.at("p"));
  const float *dy = in_f(in, 0), *x = in_f(in, 4), *residual = in_f(in, 5);
  const float *gamma = in_f(in, 6), *mean = in_f(in, 11), *rstd = in_f(in, 12);
  const bool train = in_f(in, 8)[0] != 0.f && p > 0.0;
  const float scale = train ? static_cast<float>(1.0 / (1.0 - p)) : 1.f;
  const uint8_t* keep = static_cast<const uint8_t*>((*in)[10].data_ptr);
  float *dx = out_f(out, 0), *dres = out_f(out, 1);
  out_f(out, 4)[0] = 0.f;
  backward_rows(n, c, res, out_f(out, 2), out_f(out, 3),
                [=](int64_t i, float* s, float* pg, float* pb) {
                  const float *xi = x + i * c, *ri = residual + i * c;
                  const uint8_t* ki = keep + i * c;
                  float *dri = dres + i * c, *dxi = dx + i * c;
#pragma omp simd
                  for (int64_t j = 0; j < c; ++j) s[j] = ri[j] + xi[j] * (scale * ki[j]);
                  norm_row_backward(s, dy + i * c, gamma, c, mean[i], rstd[i], dri, pg, pb);
#pragma omp simd
                  for (int64_t j = 0; j < c; ++j) dxi[j] = dri[j] * (scale * ki[j]);
                });
  return MX_SUCCESS;
}

MXReturnValue adln_parse(const Attrs& attrs, int* num_in, int* num_out) {
  if (attrs.count("eps") == 0) {
    MX_ERROR_MSG << "gluonbert_add_dropout_layer_norm needs the attribute eps";
    return MX_FAIL;
  }
  if (parse_p(attrs) != MX_SUCCESS) return MX_FAIL;
  *num_in = 5;
  *num_out = 4;
  return MX_SUCCESS;
}

MXReturnValue adln_infer_type(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  if (check_float32("gluonbert_add_dropout_layer_norm", *in, 5) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = (*out)[2] = (*out)[3] = mxnet::ext::kFloat32;
  (*out)[1] = mxnet::ext::kUint8;
  return MX_SUCCESS;
}

MXReturnValue adln_infer_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const char* op = "gluonbert_add_dropout_layer_norm";
  if (check_affine(op, *in, 2) != MX_SUCCESS) return MX_FAIL;
  if ((*in)[1] != (*in)[0]) {
    MX_ERROR_MSG << op << ": data and residual must have the same shape";
    return MX_FAIL;
  }
  (*out)[0] = (*out)[1] = (*in)[0];
  (*out)[2] = (*out)[3] = row_shape((*in)[0]);
  return MX_SUCCESS;
}

// ---- gluonbert_dropout -------------------------------------------------------------------------

MXReturnValue dropout_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                              std::vector<MXTensor>* out, const OpResource& res) {
  const int64_t size = (*in)[0].size();
  const float* x = in_f(in, 0);
  const MaskKey key = mask_key(attrs, in_f(in, 1), res);
  float* y = out_f(out, 0);
  uint8_t* keep = (*out)[1].data<uint8_t>();
  const int64_t block = 4096;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < size; b += block) {
    const int64_t len = std::min(block, size - b);
    if (key.active) {
      fill_mask(key, b, len, keep + b);
#pragma omp simd
      for (int64_t j = b; j < b + len; ++j) y[j] = x[j] * (key.scale * keep[j]);
    } else {
#pragma omp simd
      for (int64_t j = b; j < b + len; ++j) {
        keep[j] = 1;
        y[j] = x[j];
      }
    }
  }
  return MX_SUCCESS;
}

// in: d_out, d_keep, data, train, out, keep
// out: d_data, d_train
MXReturnValue dropout_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                               std::vector<MXTensor>* out, const OpResource& res) {
  const int64_t size = (*in)[2].size();
  const double p = std::stod(attrs.at("p"));
  const bool train = in_f(in, 3)[0] != 0.f && p > 0.0;
  const float scale = train ? static_cast<float>(1.0 / (1.0 - p)) : 1.f;
  const float* dy = in_f(in, 0);
  const uint8_t* keep = static_cast<const uint8_t*>((*in)[5].data_ptr);
  float* dx = out_f(out, 0);
  out_f(out, 1)[0] = 0.f;
#pragma omp parallel for simd schedule(static)
  for (int64_t j = 0; j < size; ++j) dx[j] = dy[j] * (scale * keep[j]);
  return MX_SUCCESS;
}

MXReturnValue dropout_parse(const Attrs& attrs, int* num_in, int* num_out) {
  if (parse_p(attrs) != MX_SUCCESS) return MX_FAIL;
  *num_in = 2;
  *num_out = 2;
  return MX_SUCCESS;
}

MXReturnValue dropout_infer_type(const Attrs& attrs, std::vector<int>* in,
                                 std::vector<int>* out) {
  if (check_float32("gluonbert_dropout", *in, 2) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = mxnet::ext::kFloat32;
  (*out)[1] = mxnet::ext::kUint8;
  return MX_SUCCESS;
}

MXReturnValue dropout_infer_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  (*out)[0] = (*out)[1] = (*in)[0];
  return MX_SUCCESS;
}


// ---- gluonbert_self_attention ------------------------------------------------------------------

// The per-head views of qkv (T, B, 3C), whose features are interleaved head by head as
// [q_h, k_h, v_h] (the layout of MXNet's interleaved_matmul_selfatt_* operators).
struct Heads {
  int64_t t, b, h, d, c;
  int64_t at(int64_t step, int64_t batch, int64_t head, int64_t which) const {
    return (step * b + batch) * 3 * c + head * 3 * d + which * d;
  }
};

Heads heads_of(const Attrs& attrs, const MXTensor& qkv) {
  Heads v{};
  v.t = qkv.shape[0];
  v.b = qkv.shape[1];
  v.h = std::stoll(attrs.at("heads"));
  v.c = qkv.shape[2] / 3;
  v.d = v.c / v.h;
  return v;
}

constexpr int64_t kBlock = 64;  // keys per block of a score row (4 AVX-512 registers)
constexpr int64_t kMaxGenericHead = 256;  // widest head without a specialised kernel

// exp(x) for x <= 0 (softmax after subtracting the row maximum), vectorisable: 2^n * p(r) with
// r = x - n ln 2 in [-ln2/2, ln2/2] and p a degree-6 Taylor polynomial (relative error < 2e-7);
// exactly 0 below -87 (masked keys have scores near -1e18), where std::exp would take its slow
// underflow path.
#pragma omp declare simd notinbranch
inline float exp_nonpositive(float x) {
  const float clamped = std::max(x, -87.f);
  const float n = std::nearbyint(clamped * 1.44269504f);
  const float r = (clamped - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return x < -87.f ? 0.f : p * two_n;
}

// One (sequence, head) pair in cache: scaled queries q (T, d), keys k (T, d), values v (T, d),
// and keys and values transposed (d, Tp), Tp = T rounded up to kBlock with zero columns, so that
// every inner loop runs over contiguous memory in register-sized blocks.
struct Head {
  int64_t t, tp, d;
  std::vector<float> q, k, v, kt, vt;
  explicit Head(const Heads& s)
      : t(s.t), tp((s.t + kBlock - 1) / kBlock * kBlock), d(s.d), q(t * d), k(t * d), v(t * d),
        kt(d * tp, 0.f), vt(d * tp, 0.f) {}
  // The first n positions (all T by default); vt only when the backward pass needs it.
  void load(const Heads& s, const float* qkv, int64_t batch, int64_t head, int64_t n = -1,
            bool transpose_values = true) {
    const float scale = 1.f / std::sqrt(static_cast<float>(d));
    const int64_t rows = n < 0 ? t : n;
    float* __restrict qs = q.data();
    for (int64_t i = 0; i < rows; ++i) {
      const float* __restrict src = qkv + s.at(i, batch, head, 0);   // [q_h, k_h, v_h]
#pragma omp simd
      for (int64_t e = 0; e < d; ++e) qs[i * d + e] = src[e] * scale;
      std::memcpy(k.data() + i * d, src + d, d * sizeof(float));
      std::memcpy(v.data() + i * d, src + 2 * d, d * sizeof(float));
    }
    for (int64_t e = 0; e < d; ++e)
      for (int64_t i = 0; i < rows; ++i) kt[e * tp + i] = k[i * d + e];
    if (!transpose_values) return;
    for (int64_t e = 0; e < d; ++e)
      for (int64_t i = 0; i < rows; ++i) vt[e * tp + i] = v[i * d + e];
  }
};

// row[0..n) = a (1 x d) times bt (d x stride), computing the columns [0, np) (np: n rounded up
// to kBlock) in blocks of kBlock held in kBlock / 16 independent register accumulators (one
// would wait on each FMA's latency).
template <int D>
inline void row_times(const float* a, const float* bt, int64_t d_rt, int64_t n, int64_t np,
                      int64_t stride, float* row) {
  const int64_t d = D ? D : d_rt;
  for (int64_t jb = 0; jb < np; jb += kBlock) {
    float acc[kBlock];
#pragma omp simd
    for (int64_t jj = 0; jj < kBlock; ++jj) acc[jj] = 0.f;
    for (int64_t e = 0; e < d; ++e) {
      const float ae = a[e];
      const float* b = bt + e * stride + jb;
#pragma omp simd
      for (int64_t jj = 0; jj < kBlock; ++jj) acc[jj] += ae * b[jj];
    }
    const int64_t width = std::min(kBlock, n - jb);
    for (int64_t jj = 0; jj < width; ++jj) row[jb + jj] = acc[jj];
  }
}

// out[0..d) = scale * sum over r < n of w[r * stride] * m[r * d .. r * d + d), with four
// independent accumulators (rows r, r+1, r+2, r+3) to hide the FMA latency.
template <int D>
inline void weighted_rows(const float* w, int64_t stride, const float* m, int64_t n,
                          int64_t d_rt, float scale, float* out) {
  const int64_t d = D ? D : d_rt;
  float acc[4][D ? D : kMaxGenericHead];
  for (int u = 0; u < 4; ++u) {
#pragma omp simd
    for (int64_t e = 0; e < d; ++e) acc[u][e] = 0.f;
  }
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    for (int u = 0; u < 4; ++u) {
      const float wr = w[(r + u) * stride];
      const float* mr = m + (r + u) * d;
#pragma omp simd
      for (int64_t e = 0; e < d; ++e) acc[u][e] += wr * mr[e];
    }
  }
  for (; r < n; ++r) {
    const float wr = w[r * stride];
    const float* mr = m + r * d;
#pragma omp simd
    for (int64_t e = 0; e < d; ++e) acc[0][e] += wr * mr[e];
  }
#pragma omp simd
  for (int64_t e = 0; e < d; ++e) out[e] = (acc[0][e] + acc[1][e] + acc[2][e] + acc[3][e]) * scale;
}

// Keys this (sequence, head) pair attends to: the first valid_length, at least 1, at most T.
inline int64_t real_keys(const float* lengths, int64_t bh, int64_t t) {
  return std::min(t, std::max<int64_t>(1, static_cast<int64_t>(lengths[bh])));
}

// Softmax in place over p[0..n), then zeros in [n, t) when the row is kept (weights output).
inline void softmax_row(float* p, int64_t n, int64_t t, bool zero_tail) {
  const float top = row_max(p, n);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    p[j] = exp_nonpositive(p[j] - top);
    sum += p[j];
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) p[j] *= inv;
  if (zero_tail) std::fill(p + n, p + t, 0.f);
}

template <int D>
void att_forward_head(const Heads& s, Head& h, int64_t n, const MaskKey& key, int64_t batch,
                      int64_t head, float* weights, uint8_t* keep, float* dropped,
                      float* context) {
  const int64_t t = s.t, bh = batch * s.h + head;
  const int64_t np = (n + kBlock - 1) / kBlock * kBlock;
  for (int64_t i = 0; i < t; ++i) {
    const int64_t row = (bh * t + i) * t;
    float* p = weights + row;
    // Scores of the n real keys only; the padding keys get weight exactly 0.
    row_times<D>(h.q.data() + i * h.d, h.kt.data(), h.d, n, np, h.tp, p);
    softmax_row(p, n, t, true);
    uint8_t* ki = keep + row;
    if (key.active) fill_mask(key, row, t, ki);
    const float scale = key.active ? key.scale : 1.f;
#pragma omp simd
    for (int64_t j = 0; j < t; ++j) {
      if (!key.active) ki[j] = 1;
      dropped[j] = p[j] * (scale * ki[j]);
    }
    weighted_rows<D>(dropped, 1, h.v.data(), n, h.d, 1.f,
                     context + (i * s.b + batch) * s.c + head * h.d);
  }
}

// in: qkv (T, B, 3C), valid_length (B*H,), train (1,)
// out: context (T, B, C), weights (B*H, T, T) softmax before dropout, keep (B*H, T, T) uint8
MXReturnValue att_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                          std::vector<MXTensor>* out, const OpResource& res) {
  const Heads s = heads_of(attrs, (*in)[0]);
  const float *qkv = in_f(in, 0), *lengths = in_f(in, 1);
  const MaskKey key = mask_key(attrs, in_f(in, 2), res);
  float *context = out_f(out, 0), *weights = out_f(out, 1);
  uint8_t* keep = (*out)[2].data<uint8_t>();
#pragma omp parallel
  {
    Head h(s);
    std::vector<float> dropped(s.t);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < s.b * s.h; ++bh) {
      const int64_t batch = bh / s.h, head = bh % s.h;
      h.load(s, qkv, batch, head);
      const int64_t n = real_keys(lengths, bh, s.t);
      switch (s.d) {
        case 32: att_forward_head<32>(s, h, n, key, batch, head, weights, keep, dropped.data(),
                                      context); break;
        case 64: att_forward_head<64>(s, h, n, key, batch, head, weights, keep, dropped.data(),
                                      context); break;
        default: att_forward_head<0>(s, h, n, key, batch, head, weights, keep, dropped.data(),
                                     context);
      }
    }
  }
  return MX_SUCCESS;
}

constexpr int64_t kKeys = 4 * kLanes;  // keys per block of a score row: 4 registers
static_assert(kBlock % kKeys == 0, "score rows are padded to kBlock keys");

// rows[u][0..n) = a[u] (1 x D) times bt (D x stride) for the kQueries queries a[u] = a + u * D:
// every block of kKeys keys of bt is loaded once for all the queries.
template <int D>
inline void rows_times(const float* a, const float* bt, int64_t n, int64_t np, int64_t stride,
                       float* const* rows) {
  for (int64_t jb = 0; jb < np; jb += kKeys) {
    Vec acc[kQueries][4] = {};
    for (int64_t e = 0; e < D; ++e) {
      const float* b = bt + e * stride + jb;
      const Vec b0 = load_vec(b), b1 = load_vec(b + kLanes), b2 = load_vec(b + 2 * kLanes),
                b3 = load_vec(b + 3 * kLanes);
      for (int u = 0; u < kQueries; ++u) {
        const float ae = a[u * D + e];
        acc[u][0] += ae * b0;
        acc[u][1] += ae * b1;
        acc[u][2] += ae * b2;
        acc[u][3] += ae * b3;
      }
    }
    const int64_t width = std::min(kKeys, n - jb);
    for (int u = 0; u < kQueries; ++u) {
      if (width == kKeys) {
        for (int r = 0; r < 4; ++r) store_vec(rows[u] + jb + r * kLanes, acc[u][r]);
      } else {
        float tail[kKeys];
        for (int r = 0; r < 4; ++r) store_vec(tail + r * kLanes, acc[u][r]);
        std::copy_n(tail, width, rows[u] + jb);
      }
    }
  }
}

// out[u][0..D) = sum over r < n of w[u][r] * m[r * D .. r * D + D) for the kQueries weight rows
// w[u]: each row of m loaded once for all of them.
template <int D>
inline void rows_weighted(const float* const* w, const float* m, int64_t n, float* const* out) {
  constexpr int kParts = D / kLanes;
  static_assert(D % kLanes == 0, "head width must be a multiple of the vector width");
  Vec acc[kQueries][kParts] = {};
  for (int64_t r = 0; r < n; ++r) {
    Vec mr[kParts];
    for (int k = 0; k < kParts; ++k) mr[k] = load_vec(m + r * D + k * kLanes);
    for (int u = 0; u < kQueries; ++u) {
      const float wr = w[u][r];
      for (int k = 0; k < kParts; ++k) acc[u][k] += wr * mr[k];
    }
  }
  for (int u = 0; u < kQueries; ++u)
    for (int k = 0; k < kParts; ++k) store_vec(out[u] + k * kLanes, acc[u][k]);
}

// Inference: the real queries of one (sequence, head) pair, kQueries at a time where the head
// width has a specialised kernel (D > 0); padding query rows get zeros. scratch holds
// kQueries rows of tp floats.
template <int D>
void att_inference_head(const Heads& s, const Head& h, int64_t n, int64_t batch, int64_t head,
                        float* weights, float* scratch, float* context) {
  const int64_t t = s.t, bh = batch * s.h + head, d = h.d;
  const int64_t np = (n + kBlock - 1) / kBlock * kBlock;
  auto weight_row = [&](int64_t i, int u) {
    return weights ? weights + (bh * t + i) * t : scratch + u * h.tp;
  };
  auto context_row = [&](int64_t i) { return context + (i * s.b + batch) * s.c + head * d; };
  int64_t i = 0;
  if constexpr (D > 0) {
    for (; i + kQueries <= n; i += kQueries) {
      float *p[kQueries], *c[kQueries];
      for (int u = 0; u < kQueries; ++u) {
        p[u] = weight_row(i + u, u);
        c[u] = context_row(i + u);
      }
      rows_times<D>(h.q.data() + i * d, h.kt.data(), n, np, h.tp, p);
      for (int u = 0; u < kQueries; ++u) softmax_row(p[u], n, t, weights != nullptr);
      rows_weighted<D>(p, h.v.data(), n, c);
    }
  }
  for (; i < n; ++i) {
    float* p = weight_row(i, 0);
    row_times<D>(h.q.data() + i * d, h.kt.data(), d, n, np, h.tp, p);
    softmax_row(p, n, t, weights != nullptr);
    weighted_rows<D>(p, 1, h.v.data(), n, d, 1.f, context_row(i));
  }
  for (; i < t; ++i) {
    std::fill_n(context_row(i), d, 0.f);
    if (weights) std::fill_n(weight_row(i, 0), t, 0.f);
  }
}

// in: qkv (T, B, 3C), valid_length (B*H,)
// out: context (T, B, C), weights (B*H, T, T), or (B*H, 1, 1) untouched with weights=0
MXReturnValue att_inference(const Attrs& attrs, std::vector<MXTensor>* in,
                            std::vector<MXTensor>* out, const OpResource& res) {
  const Heads s = heads_of(attrs, (*in)[0]);
  const float *qkv = in_f(in, 0), *lengths = in_f(in, 1);
  float* context = out_f(out, 0);
  float* weights = std::stoi(attrs.at("weights")) ? out_f(out, 1) : nullptr;
#pragma omp parallel
  {
    Head h(s);
    std::vector<float> scratch(kQueries * h.tp);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < s.b * s.h; ++bh) {
      const int64_t batch = bh / s.h, head = bh % s.h;
      const int64_t n = real_keys(lengths, bh, s.t);
      h.load(s, qkv, batch, head, n, false);
      switch (s.d) {
        case 32: att_inference_head<32>(s, h, n, batch, head, weights, scratch.data(), context);
          break;
        case 64: att_inference_head<64>(s, h, n, batch, head, weights, scratch.data(), context);
          break;
        default: att_inference_head<0>(s, h, n, batch, head, weights, scratch.data(), context);
      }
    }
  }
  return MX_SUCCESS;
}

// Gradients of one (sequence, head) pair with n real keys. dropped and ds_all are (T, T)
// scratch, dout (T, d), grad (T).
template <int D>
void att_backward_head(const Heads& s, const Head& h, int64_t n, int64_t batch, int64_t head,
                       float scale, const float* d_context, const float* d_weights,
                       const float* weights, const uint8_t* keep, float* d_qkv, float* dout,
                       float* dropped, float* ds_all, float* grad) {
  const int64_t t = s.t, d = h.d, bh = batch * s.h + head;
  const int64_t np = (n + kBlock - 1) / kBlock * kBlock;
  const float q_scale = 1.f / std::sqrt(static_cast<float>(d));
  for (int64_t i = 0; i < t; ++i) {
    const float* gi = d_context + (i * s.b + batch) * s.c + head * d;
    for (int64_t e = 0; e < d; ++e) dout[i * d + e] = gi[e];
  }
  for (int64_t i = 0; i < t; ++i) {
    const int64_t row = (bh * t + i) * t;
    const float *p = weights + row, *gw = d_weights + row;
    const uint8_t* ki = keep + row;
    float* dp = grad;
    // d(dropped weights) = dO_i V^T, through the dropout mask, plus d(weights).
    row_times<D>(dout + i * d, h.vt.data(), d, n, np, h.tp, dp);
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < n; ++j) {
      dropped[i * t + j] = p[j] * (scale * ki[j]);
      dp[j] = dp[j] * (scale * ki[j]) + gw[j];
      dot += dp[j] * p[j];
    }
    float* ds = ds_all + i * t;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (dp[j] - dot);
    // dQ_i = sum_j dS_ij K_j / sqrt(d)
    weighted_rows<D>(ds, 1, h.k.data(), n, d, q_scale, d_qkv + s.at(i, batch, head, 0));
  }
  for (int64_t j = 0; j < n; ++j) {
    // dV_j = sum_i dropped_ij dO_i;  dK_j = sum_i dS_ij Q_i (queries already scaled)
    weighted_rows<D>(dropped + j, t, dout, t, d, 1.f, d_qkv + s.at(j, batch, head, 2));
    weighted_rows<D>(ds_all + j, t, h.q.data(), t, d, 1.f, d_qkv + s.at(j, batch, head, 1));
  }
  for (int64_t j = n; j < t; ++j) {   // padding keys: no weight, no gradient
    std::fill_n(d_qkv + s.at(j, batch, head, 1), d, 0.f);
    std::fill_n(d_qkv + s.at(j, batch, head, 2), d, 0.f);
  }
}

// in: d_context, d_weights, d_keep, qkv, valid_length, train, context, weights, keep
// out: d_qkv, d_valid_length (zeros), d_train (zero)
MXReturnValue att_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                           std::vector<MXTensor>* out, const OpResource& res) {
  const Heads s = heads_of(attrs, (*in)[3]);
  const double p_drop = std::stod(attrs.at("p"));
  const bool train = in_f(in, 5)[0] != 0.f && p_drop > 0.0;
  const float scale = train ? static_cast<float>(1.0 / (1.0 - p_drop)) : 1.f;
  const float *d_context = in_f(in, 0), *d_weights = in_f(in, 1), *qkv = in_f(in, 3);
  const float* weights = in_f(in, 7);
  const uint8_t* keep = static_cast<const uint8_t*>((*in)[8].data_ptr);
  const float* lengths = in_f(in, 4);
  float* d_qkv = out_f(out, 0);
  std::fill_n(out_f(out, 1), s.b * s.h, 0.f);
  out_f(out, 2)[0] = 0.f;
#pragma omp parallel
  {
    Head h(s);
    std::vector<float> dout(s.t * s.d), dropped(s.t * s.t), ds(s.t * s.t), grad(s.t);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < s.b * s.h; ++bh) {
      const int64_t batch = bh / s.h, head = bh % s.h;
      h.load(s, qkv, batch, head);
      const int64_t n = real_keys(lengths, bh, s.t);
      switch (s.d) {
        case 32: att_backward_head<32>(s, h, n, batch, head, scale, d_context, d_weights,
                                       weights, keep, d_qkv, dout.data(), dropped.data(),
                                       ds.data(), grad.data()); break;
        case 64: att_backward_head<64>(s, h, n, batch, head, scale, d_context, d_weights,
                                       weights, keep, d_qkv, dout.data(), dropped.data(),
                                       ds.data(), grad.data()); break;
        default: att_backward_head<0>(s, h, n, batch, head, scale, d_context, d_weights,
                                      weights, keep, d_qkv, dout.data(), dropped.data(),
                                      ds.data(), grad.data());
      }
    }
  }
  return MX_SUCCESS;
}

MXReturnValue att_parse(const Attrs& attrs, int* num_in, int* num_out) {
  if (attrs.count("heads") == 0 || std::stoll(attrs.at("heads")) < 1) {
    MX_ERROR_MSG << "gluonbert_self_attention needs the attribute heads >= 1";
    return MX_FAIL;
  }
  if (parse_p(attrs) != MX_SUCCESS) return MX_FAIL;
  *num_in = 3;
  *num_out = 3;
  return MX_SUCCESS;
}

MXReturnValue att_infer_type(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  if (check_float32("gluonbert_self_attention", *in, 3) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = (*out)[1] = mxnet::ext::kFloat32;
  (*out)[2] = mxnet::ext::kUint8;
  return MX_SUCCESS;
}

MXReturnValue att_infer_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const char* op = "gluonbert_self_attention";
  const auto& qkv = (*in)[0];
  const unsigned int heads = std::stoul(attrs.at("heads"));
  if (qkv.size() != 3 || qkv[2] % (3 * heads) != 0) {
    MX_ERROR_MSG << op << ": qkv must be (T, B, 3C) with C divisible by heads=" << heads;
    return MX_FAIL;
  }
  const unsigned int t = qkv[0], b = qkv[1], c = qkv[2] / 3;
  if (c / heads > kMaxGenericHead) {
    MX_ERROR_MSG << op << ": heads wider than " << kMaxGenericHead << " are not supported";
    return MX_FAIL;
  }
  const std::vector<unsigned int> scores{b * heads, t, t};
  if ((*in)[1] != std::vector<unsigned int>{b * heads}) {
    MX_ERROR_MSG << op << ": valid_length must be (B*H,) = (" << b * heads << ",)";
    return MX_FAIL;
  }
  (*out)[0] = {t, b, c};
  (*out)[1] = (*out)[2] = scores;
  return MX_SUCCESS;
}

// MXNet's cached graphs build a backward graph even for inference, so the operator needs one:
// this one only says why it cannot run.
MXReturnValue att_inference_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                                     std::vector<MXTensor>* out, const OpResource& res) {
  MX_ERROR_MSG << "gluonbert_self_attention_inference has no gradient: the model was built "
                  "for inference (inference=True); build it with inference=False to train it";
  return MX_FAIL;
}

MXReturnValue att_inference_parse(const Attrs& attrs, int* num_in, int* num_out) {
  if (attrs.count("heads") == 0 || std::stoll(attrs.at("heads")) < 1 ||
      attrs.count("weights") == 0) {
    MX_ERROR_MSG << "gluonbert_self_attention_inference needs the attributes heads >= 1 and "
                    "weights (0 or 1)";
    return MX_FAIL;
  }
  *num_in = 2;
  *num_out = 2;
  return MX_SUCCESS;
}

MXReturnValue att_inference_infer_type(const Attrs& attrs, std::vector<int>* in,
                                       std::vector<int>* out) {
  if (check_float32("gluonbert_self_attention_inference", *in, 2) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = (*out)[1] = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

MXReturnValue att_inference_infer_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  Shapes training_in = *in, training_out(3);
  training_in.push_back({1});
  if (att_infer_shape(attrs, &training_in, &training_out) != MX_SUCCESS) return MX_FAIL;
  const unsigned int bh = training_out[1][0];
  (*out)[0] = training_out[0];
  (*out)[1] = std::stoi(attrs.at("weights")) ? training_out[1]
                                             : std::vector<unsigned int>{bh, 1, 1};
  return MX_SUCCESS;
}

// ---- gluonbert_softmax_ce ----------------------------------------------------------------------

// in: scores (..., V), label (...) float; out: ce (...), lse (...), top (...)
MXReturnValue ce_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                         std::vector<MXTensor>* out, const OpResource& res) {
  const int64_t v = (*in)[0].shape.back(), n = rows_of((*in)[0]);
  const float *x = in_f(in, 0), *label = in_f(in, 1);
  float *ce = out_f(out, 0), *lse = out_f(out, 1), *top_index = out_f(out, 2);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * v;
    const float top = row_max(xr, v);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < v; ++j) sum += exp_nonpositive(xr[j] - top);
    const int64_t target = std::min(v - 1, std::max<int64_t>(0, static_cast<int64_t>(label[r])));
    lse[r] = top + std::log(sum);
    ce[r] = lse[r] - xr[target];
    top_index[r] = static_cast<float>(first_index_of(xr, v, top));
  }
  return MX_SUCCESS;
}

// in: d_ce, d_lse, d_top (ignored), scores, label, ce, lse, top; out: d_scores, d_label (zeros)
MXReturnValue ce_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                          std::vector<MXTensor>* out, const OpResource& res) {
  const int64_t v = (*in)[3].shape.back(), n = rows_of((*in)[3]);
  const float *d_ce = in_f(in, 0), *d_lse = in_f(in, 1), *x = in_f(in, 3);
  const float *label = in_f(in, 4), *lse = in_f(in, 6);
  float *dx = out_f(out, 0), *d_label = out_f(out, 1);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * v;
    float* dr = dx + r * v;
    const float g = d_ce[r] + d_lse[r], l = lse[r];
    // softmax_j = exp(x_j - lse) <= 1: the exponent is <= 0 up to rounding.
#pragma omp simd
    for (int64_t j = 0; j < v; ++j) dr[j] = g * exp_nonpositive(std::min(xr[j] - l, 0.f));
    const int64_t target = std::min(v - 1, std::max<int64_t>(0, static_cast<int64_t>(label[r])));
    dr[target] -= d_ce[r];
    d_label[r] = 0.f;
  }
  return MX_SUCCESS;
}

MXReturnValue ce_parse(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 3;
  return MX_SUCCESS;
}

MXReturnValue ce_infer_type(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  if (check_float32("gluonbert_softmax_ce", *in, 2) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = (*out)[1] = (*out)[2] = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

MXReturnValue ce_infer_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto& scores = (*in)[0];
  const std::vector<unsigned int> rows(scores.begin(), scores.end() - (scores.empty() ? 0 : 1));
  if (scores.size() < 2 || (*in)[1] != rows) {
    MX_ERROR_MSG << "gluonbert_softmax_ce: scores must be (..., V) and label (...)";
    return MX_FAIL;
  }
  (*out)[0] = (*out)[1] = (*out)[2] = rows;
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(gluonbert_layer_norm)
    .setParseAttrs(ln_parse)
    .setInferType(ln_infer_type)
    .setInferShape(ln_infer_shape)
    .setForward(ln_forward, "cpu")
    .setBackward(ln_backward, "cpu");

REGISTER_OP(gluonbert_add_dropout_layer_norm)
    .setParseAttrs(adln_parse)
    .setInferType(adln_infer_type)
    .setInferShape(adln_infer_shape)
    .setForward(adln_forward, "cpu")
    .setBackward(adln_backward, "cpu");

REGISTER_OP(gluonbert_self_attention)
    .setParseAttrs(att_parse)
    .setInferType(att_infer_type)
    .setInferShape(att_infer_shape)
    .setForward(att_forward, "cpu")
    .setBackward(att_backward, "cpu");

REGISTER_OP(gluonbert_self_attention_inference)
    .setParseAttrs(att_inference_parse)
    .setInferType(att_inference_infer_type)
    .setInferShape(att_inference_infer_shape)
    .setForward(att_inference, "cpu")
    .setBackward(att_inference_backward, "cpu");

REGISTER_OP(gluonbert_softmax_ce)
    .setParseAttrs(ce_parse)
    .setInferType(ce_infer_type)
    .setInferShape(ce_infer_shape)
    .setForward(ce_forward, "cpu")
    .setBackward(ce_backward, "cpu");

REGISTER_OP(gluonbert_dropout)
    .setParseAttrs(dropout_parse)
    .setInferType(dropout_infer_type)
    .setInferShape(dropout_infer_shape)
    .setForward(dropout_forward, "cpu")
    .setBackward(dropout_backward, "cpu");

MXReturnValue initialize(int version) {
  // Built against the lib_api.h of the installed MXNet; refuse anything older than 1.9.
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
