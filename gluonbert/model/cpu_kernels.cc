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
// gluonbert_self_attention(qkv, bias, train; heads, p) -> (context, weights, keep)
//   Scaled dot-product attention of every head, from the fused projection qkv (T, B, 3C) in
//   the layout of MXNet's interleaved_matmul_selfatt_* operators: weights (B*H, T, T) =
//   softmax(Q K^T / sqrt(d) + bias), then dropout, context (T, B, C) = dropped weights x V.
//   One pass per (sequence, head) pair with its queries, keys and values in cache, where
//   MXNet runs two batched products, a softmax, a dropout and their backward passes, each
//   over the whole (B*H, T, T) tensor.
//
// train is a (1,) tensor, non-zero in training mode: library operators are not told MXNet's
// is_train flag, so the Python blocks derive it from MXNet's own Dropout (see dropout.py).
// Dropout masks come from a counter-based hash of the element index and a 64-bit key drawn
// from MXNet's seeded CPU generator: reproducible under mx.random.seed, independent of the
// number of threads, and about 10x faster than MXNet's per-element std::mt19937 draws.
//
// MXNet passes no OpReqType to library operators: outputs are always overwritten. Gradients of
// gamma and beta therefore reach the parameters through an identity in the Python blocks, so
// that grad_req='add' keeps working.
#include <algorithm>
#include <cmath>
#include <cstdint>
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

// Per-thread buffers of one (batch, head) pair: scaled queries (T, d), keys transposed (d, T),
// values (T, d), values transposed (d, T), a score row (T) and a gradient row (T).
struct HeadBuffers {
  std::vector<float> q, kt, v, vt, row, grad_row;
  explicit HeadBuffers(const Heads& s)
      : q(s.t * s.d), kt(s.d * s.t), v(s.t * s.d), vt(s.d * s.t), row(s.t), grad_row(s.t) {}
  void load(const Heads& s, const float* qkv, int64_t batch, int64_t head) {
    const float scale = 1.f / std::sqrt(static_cast<float>(s.d));
    for (int64_t i = 0; i < s.t; ++i) {
      const float* qi = qkv + s.at(i, batch, head, 0);
      const float* ki = qkv + s.at(i, batch, head, 1);
      const float* vi = qkv + s.at(i, batch, head, 2);
      for (int64_t e = 0; e < s.d; ++e) {
        q[i * s.d + e] = qi[e] * scale;
        kt[e * s.t + i] = ki[e];
        v[i * s.d + e] = vi[e];
        vt[e * s.t + i] = vi[e];
      }
    }
  }
};

// in: qkv (T, B, 3C), bias (B*H, T, T), train (1,)
// out: context (T, B, C), weights (B*H, T, T) softmax before dropout, keep (B*H, T, T) uint8
MXReturnValue att_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                          std::vector<MXTensor>* out, const OpResource& res) {
  const Heads s = heads_of(attrs, (*in)[0]);
  const float *qkv = in_f(in, 0), *bias = in_f(in, 1);
  const MaskKey key = mask_key(attrs, in_f(in, 2), res);
  float *context = out_f(out, 0), *weights = out_f(out, 1);
  uint8_t* keep = (*out)[2].data<uint8_t>();
  const int64_t t = s.t, d = s.d;
#pragma omp parallel
  {
    HeadBuffers buf(s);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < s.b * s.h; ++bh) {
      const int64_t batch = bh / s.h, head = bh % s.h;
      buf.load(s, qkv, batch, head);
      for (int64_t i = 0; i < t; ++i) {
        float* p = weights + (bh * t + i) * t;
        uint8_t* ki = keep + (bh * t + i) * t;
        const float* bi = bias + (bh * t + i) * t;
#pragma omp simd
        for (int64_t j = 0; j < t; ++j) p[j] = bi[j];
        for (int64_t e = 0; e < d; ++e) {
          const float qe = buf.q[i * d + e];
          const float* kte = buf.kt.data() + e * t;
#pragma omp simd
          for (int64_t j = 0; j < t; ++j) p[j] += qe * kte[j];
        }
        float top = p[0];
        for (int64_t j = 1; j < t; ++j) top = std::max(top, p[j]);
        float sum = 0.f;
        for (int64_t j = 0; j < t; ++j) {
          p[j] = std::exp(p[j] - top);
          sum += p[j];
        }
        const float inv = 1.f / sum;
#pragma omp simd
        for (int64_t j = 0; j < t; ++j) p[j] *= inv;
        float* dropped = buf.row.data();
        if (key.active) {
          fill_mask(key, (bh * t + i) * t, t, ki);
#pragma omp simd
          for (int64_t j = 0; j < t; ++j) dropped[j] = p[j] * (key.scale * ki[j]);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < t; ++j) {
            ki[j] = 1;
            dropped[j] = p[j];
          }
        }
        float* oi = context + (i * s.b + batch) * s.c + head * d;
        for (int64_t e = 0; e < d; ++e) oi[e] = 0.f;
        for (int64_t j = 0; j < t; ++j) {
          const float pj = dropped[j];
          const float* vj = buf.v.data() + j * d;
#pragma omp simd
          for (int64_t e = 0; e < d; ++e) oi[e] += pj * vj[e];
        }
      }
    }
  }
  return MX_SUCCESS;
}

// in: d_context, d_weights, d_keep, qkv, bias, train, context, weights, keep
// out: d_qkv, d_bias, d_train
MXReturnValue att_backward(const Attrs& attrs, std::vector<MXTensor>* in,
                           std::vector<MXTensor>* out, const OpResource& res) {
  const Heads s = heads_of(attrs, (*in)[3]);
  const double p_drop = std::stod(attrs.at("p"));
  const bool train = in_f(in, 5)[0] != 0.f && p_drop > 0.0;
  const float scale = train ? static_cast<float>(1.0 / (1.0 - p_drop)) : 1.f;
  const float *d_context = in_f(in, 0), *d_weights = in_f(in, 1), *qkv = in_f(in, 3);
  const float* weights = in_f(in, 7);
  const uint8_t* keep = static_cast<const uint8_t*>((*in)[8].data_ptr);
  float *d_qkv = out_f(out, 0), *d_bias = out_f(out, 1);
  out_f(out, 2)[0] = 0.f;
  const int64_t t = s.t, d = s.d;
  const float q_scale = 1.f / std::sqrt(static_cast<float>(d));
#pragma omp parallel
  {
    HeadBuffers buf(s);
    std::vector<float> dq(t * d), dk(t * d), dv(t * d), dout(t * d);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < s.b * s.h; ++bh) {
      const int64_t batch = bh / s.h, head = bh % s.h;
      buf.load(s, qkv, batch, head);
      std::fill(dk.begin(), dk.end(), 0.f);
      std::fill(dv.begin(), dv.end(), 0.f);
      for (int64_t i = 0; i < t; ++i) {
        const float* gi = d_context + (i * s.b + batch) * s.c + head * d;
        for (int64_t e = 0; e < d; ++e) dout[i * d + e] = gi[e];
      }
      for (int64_t i = 0; i < t; ++i) {
        const float* p = weights + (bh * t + i) * t;
        const float* gw = d_weights + (bh * t + i) * t;
        const uint8_t* ki = keep + (bh * t + i) * t;
        const float* doi = dout.data() + i * d;
        float* dp = buf.grad_row.data();
        // d(dropped weights) = dO_i V^T, then through the dropout mask; plus d_weights.
#pragma omp simd
        for (int64_t j = 0; j < t; ++j) dp[j] = 0.f;
        for (int64_t e = 0; e < d; ++e) {
          const float ge = doi[e];
          const float* vte = buf.vt.data() + e * t;
#pragma omp simd
          for (int64_t j = 0; j < t; ++j) dp[j] += ge * vte[j];
        }
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < t; ++j) {
          dp[j] = dp[j] * (scale * ki[j]) + gw[j];
          dot += dp[j] * p[j];
        }
        float* ds = d_bias + (bh * t + i) * t;     // the score gradient, also bias's gradient
#pragma omp simd
        for (int64_t j = 0; j < t; ++j) ds[j] = p[j] * (dp[j] - dot);
        // dV_j += dropped_ij dO_i;  dQ_i = sum_j dS_ij K_j / sqrt(d);  dK_j += dS_ij Q_i / sqrt(d)
        float* dqi = dq.data() + i * d;
        for (int64_t e = 0; e < d; ++e) dqi[e] = 0.f;
        const float* qi = buf.q.data() + i * d;
        for (int64_t j = 0; j < t; ++j) {
          const float pij = p[j] * (scale * ki[j]), sij = ds[j];
          float* dvj = dv.data() + j * d;
          float* dkj = dk.data() + j * d;
#pragma omp simd
          for (int64_t e = 0; e < d; ++e) {
            dvj[e] += pij * doi[e];
            dqi[e] += sij * buf.kt[e * t + j];
            dkj[e] += sij * qi[e];
          }
        }
      }
      for (int64_t i = 0; i < t; ++i) {
        float* gq = d_qkv + s.at(i, batch, head, 0);
        float* gk = d_qkv + s.at(i, batch, head, 1);
        float* gv = d_qkv + s.at(i, batch, head, 2);
        for (int64_t e = 0; e < d; ++e) {
          gq[e] = dq[i * d + e] * q_scale;
          gk[e] = dk[i * d + e];
          gv[e] = dv[i * d + e];
        }
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
  const std::vector<unsigned int> scores{b * heads, t, t};
  if ((*in)[1] != scores) {
    MX_ERROR_MSG << op << ": bias must be (B*H, T, T) = (" << b * heads << ", " << t << ", "
                 << t << ")";
    return MX_FAIL;
  }
  (*out)[0] = {t, b, c};
  (*out)[1] = (*out)[2] = scores;
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
