// CPU inference kernels of the DGC models (float32, NCHW), built on first use by dgc/kernels/cpu.py
// and called through ctypes on the data of contiguous torch tensors. Forward only: no autograd.
//
// dgc_fused_1x1: the DGC 1x1 convolution. For each sample b and head i, with the kept input
//   channels idx[b,i,:] (K of them) and their saliencies scale[b,i,:]:
//     out[b, j*H + i, p] = sum_k W[i, j, idx[b,i,k]] * scale[b,i,k] * x[b, idx[b,i,k], p]
//   The kept rows of x are read in place (no gathered copy), the head's weights are gathered and
//   scaled once per (sample, head) into a K x Co panel, and a register tile of 4 output channels x
//   16-24 positions accumulates over k: K / C_in of the dense 1x1 conv's work.
// dgc_layer: a whole DGC layer at inference (pre-activation, pooling, saliency generators, selection
//   and the conv, 1x1 or k x k through an im2col of the kept channels) in one call: at batch 1 the
//   layer's dozen small PyTorch ops and their dispatch cost more than its arithmetic.
// dgc_bnrelu_group_conv: BatchNorm (inference affine) -> ReLU -> grouped k x k convolution with
//   stride 1 and zero padding, optionally channel-shuffled output. For each (sample, group) the
//   group's input channels are activated once into a zero-padded buffer, then a direct convolution
//   with register tiles of output channels x positions along a row: it runs at the grouped work,
//   where oneDNN's grouped conv with few channels per group does not (docs/design.md, CPU kernels).
//
// Vectors are GCC/Clang vector extensions (8 floats): AVX2 where the compiler targets it, pairs of
// 128-bit registers elsewhere. Threads: OpenMP (torch's own runtime when the library is loaded into
// a process that already holds it), `nthreads` as torch.get_num_threads(). Every function returns
// 0, or a negative code for bad arguments (nothing written then).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));

inline v8 load8(const float* p) { return *reinterpret_cast<const v8u*>(p); }
inline void store8(float* p, v8 v) { *reinterpret_cast<v8u*>(p) = v; }
inline v8 splat(float a) { return v8{a, a, a, a, a, a, a, a}; }

// ---- fused 1x1: gather in GEMM ---------------------------------------------------------------
// JT output channels x NV*8 positions from p0; panel[k*co + j] = scaled weight, rows[k] = x row.
template <int JT, int NV>
inline void gemm_tile(const float* __restrict panel, int64_t K, int64_t co, int64_t j0,
                      const float* const* __restrict rows, int64_t p0, float* __restrict out,
                      int64_t row_stride) {
  v8 acc[JT][NV];
  for (int j = 0; j < JT; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = splat(0.f);
  for (int64_t k = 0; k < K; ++k) {
    const float* xr = rows[k] + p0;
    v8 xv[NV];
    for (int v = 0; v < NV; ++v) xv[v] = load8(xr + 8 * v);
    const float* wr = panel + k * co + j0;
    for (int j = 0; j < JT; ++j) {
      const v8 wv = splat(wr[j]);
      for (int v = 0; v < NV; ++v) acc[j][v] += wv * xv[v];
    }
  }
  for (int j = 0; j < JT; ++j)
    for (int v = 0; v < NV; ++v) store8(out + (j0 + j) * row_stride + p0 + 8 * v, acc[j][v]);
}

inline void gemm_scalar(const float* panel, int64_t K, int64_t co, int64_t j0, int64_t j1,
                        const float* const* rows, int64_t p0, int64_t p1, float* out,
                        int64_t row_stride) {
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t p = p0; p < p1; ++p) {
      float a = 0.f;
      for (int64_t k = 0; k < K; ++k) a += panel[k * co + j] * rows[k][p];
      out[j * row_stride + p] = a;
    }
}

// Every position of one (sample, head) unit: out[j*rs + p] = sum_k panel[k*co + j] * rows[k][p].
// Tiles of 24, 16 and 8 positions (and scalars at the end): each output element is summed over k
// in the same order whatever its tile, so the result does not depend on P's split.
inline void gemm_panel(const float* panel, int64_t K, int64_t co, const float* const* rows, int64_t P,
                       float* o, int64_t rs) {
  if (K == 0) {
    for (int64_t j = 0; j < co; ++j) std::fill(o + j * rs, o + j * rs + P, 0.f);
    return;
  }
  int64_t p0 = 0;
  for (; p0 + 24 <= P; p0 += 24) {  // positions outer: the K x 24 slice of x stays in L1
    int64_t j0 = 0;
    for (; j0 + 4 <= co; j0 += 4) gemm_tile<4, 3>(panel, K, co, j0, rows, p0, o, rs);
    gemm_scalar(panel, K, co, j0, co, rows, p0, p0 + 24, o, rs);
  }
  for (; p0 + 16 <= P; p0 += 16) {
    int64_t j0 = 0;
    for (; j0 + 6 <= co; j0 += 6) gemm_tile<6, 2>(panel, K, co, j0, rows, p0, o, rs);
    for (; j0 + 2 <= co; j0 += 2) gemm_tile<2, 2>(panel, K, co, j0, rows, p0, o, rs);
    gemm_scalar(panel, K, co, j0, co, rows, p0, p0 + 16, o, rs);
  }
  for (; p0 + 8 <= P; p0 += 8) {
    int64_t j0 = 0;
    for (; j0 + 8 <= co; j0 += 8) gemm_tile<8, 1>(panel, K, co, j0, rows, p0, o, rs);
    for (; j0 + 4 <= co; j0 += 4) gemm_tile<4, 1>(panel, K, co, j0, rows, p0, o, rs);
    gemm_scalar(panel, K, co, j0, co, rows, p0, p0 + 8, o, rs);
  }
  gemm_scalar(panel, K, co, 0, co, rows, p0, P, o, rs);
}

// DGC's selection of one row: the K channels of largest (saliency, index) keys (a NaN ranks as
// +inf; ties at the cut-off keep the higher index), in no particular order; keys: C scratch.
inline void select_row(const float* s, int64_t C, int64_t K, int shift, int64_t* keys, int64_t* idx) {
  for (int64_t c = 0; c < C; ++c) {
    float v = s[c];
    if (v != v) v = __builtin_inff();
    v = v + 0.0f;  // -0.0 as 0.0
    int32_t bits;
    __builtin_memcpy(&bits, &v, sizeof(bits));
    bits ^= (bits >> 31) & 0x7FFFFFFF;  // negative floats: larger magnitude, smaller int
    keys[c] = static_cast<int64_t>(static_cast<uint64_t>(static_cast<int64_t>(bits)) << shift) | c;
  }
  if (K < C) std::nth_element(keys, keys + K, keys + C, std::greater<int64_t>());
  const int64_t mask = (int64_t{1} << shift) - 1;
  for (int64_t k = 0; k < K; ++k) idx[k] = keys[k] & mask;
}

inline int key_shift(int64_t C) {
  int shift = 1;
  while ((int64_t{1} << shift) < C) ++shift;  // max(1, bit_length(C - 1))
  return shift;
}

// ---- grouped direct convolution -------------------------------------------------------------
// JT output channels (weights wg[j], each cin x kh x kw) x NR output rows from y x NV*8 positions
// from x0 (orow[j] = output row y of channel j; rows of one channel are wo apart).
template <int JT, int NR, int NV>
inline void conv_tile(const float* __restrict buf, int64_t cin, int64_t hp, int64_t wp,
                      const float* const* __restrict wg, int64_t kh, int64_t kw, int64_t y,
                      int64_t x0, float* const* __restrict orow, int64_t wo) {
  v8 acc[JT][NR][NV];
  for (int j = 0; j < JT; ++j)
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < NV; ++v) acc[j][r][v] = splat(0.f);
  const int64_t kk = kh * kw;
  for (int64_t c = 0; c < cin; ++c)
    for (int64_t dy = 0; dy < kh; ++dy) {
      const float* row = buf + (c * hp + y + dy) * wp + x0;
      for (int64_t dx = 0; dx < kw; ++dx) {
        v8 xv[NR][NV];
        for (int r = 0; r < NR; ++r)
          for (int v = 0; v < NV; ++v) xv[r][v] = load8(row + r * wp + dx + 8 * v);
        const int64_t t = c * kk + dy * kw + dx;
        for (int j = 0; j < JT; ++j) {
          const v8 wv = splat(wg[j][t]);
          for (int r = 0; r < NR; ++r)
            for (int v = 0; v < NV; ++v) acc[j][r][v] += wv * xv[r][v];
        }
      }
    }
  for (int j = 0; j < JT; ++j)
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < NV; ++v) store8(orow[j] + r * wo + x0 + 8 * v, acc[j][r][v]);
}

inline void conv_scalar(const float* buf, int64_t cin, int64_t hp, int64_t wp,
                        const float* const* wg, int jt, int64_t kh, int64_t kw, int64_t y,
                        int64_t x0, int64_t x1, float* const* orow) {
  const int64_t kk = kh * kw;
  for (int j = 0; j < jt; ++j)
    for (int64_t x = x0; x < x1; ++x) {
      float a = 0.f;
      for (int64_t c = 0; c < cin; ++c)
        for (int64_t dy = 0; dy < kh; ++dy)
          for (int64_t dx = 0; dx < kw; ++dx)
            a += wg[j][c * kk + dy * kw + dx] * buf[(c * hp + y + dy) * wp + x + dx];
      orow[j][x] = a;
    }
}

// Output rows y .. y+NR-1 for JT channels: wide tiles, then single vectors, then scalars.
template <int JT, int NR, int NV>
inline void conv_rows(const float* buf, int64_t cin, int64_t hp, int64_t wp, const float* const* wg,
                      int64_t kh, int64_t kw, int64_t y, int64_t wo, float* const* orow) {
  int64_t x0 = 0;
  for (; x0 + 8 * NV <= wo; x0 += 8 * NV)
    conv_tile<JT, NR, NV>(buf, cin, hp, wp, wg, kh, kw, y, x0, orow, wo);
  for (; x0 + 8 <= wo; x0 += 8) conv_tile<JT, NR, 1>(buf, cin, hp, wp, wg, kh, kw, y, x0, orow, wo);
  if (x0 < wo) {
    float* rows[4];
    for (int r = 0; r < NR; ++r) {
      for (int j = 0; j < JT; ++j) rows[j] = orow[j] + r * wo;
      conv_scalar(buf, cin, hp, wp, wg, JT, kh, kw, y + r, x0, wo, rows);
    }
  }
}

// All output rows of JT channels: pairs of rows on narrow maps (one vector per row: the weights
// are then shared by two rows), single rows on wide ones.
template <int JT, int NV>
inline void conv_channels(const float* buf, int64_t cin, int64_t hp, int64_t wp,
                          const float* const* wg, int64_t kh, int64_t kw, int64_t ho, int64_t wo,
                          float* const* orow0) {
  float* orow[4];
  int64_t y = 0;
  if (wo < 8 * NV)
    for (; y + 2 <= ho; y += 2) {
      for (int j = 0; j < JT; ++j) orow[j] = orow0[j] + y * wo;
      conv_rows<JT, 2, 1>(buf, cin, hp, wp, wg, kh, kw, y, wo, orow);
    }
  for (; y < ho; ++y) {
    for (int j = 0; j < JT; ++j) orow[j] = orow0[j] + y * wo;
    conv_rows<JT, 1, NV>(buf, cin, hp, wp, wg, kh, kw, y, wo, orow);
  }
}

// How many threads a call's parallel region gets: one below kSerialWork multiply-adds (or element
// passes), where starting and joining the threads (microseconds; on a machine whose cores are
// busy with other processes, a wait for a descheduled thread: up to a scheduler tick) costs more
// than the second thread saves; `nthreads` above. Each output is computed by one thread in the
// same order either way: the result does not depend on it. At batch 1 most layers of the DGC
// models stay below it (docs/speed.md).
constexpr int64_t kSerialWork = int64_t{1} << 20;
inline int threads_for(int64_t work, int nthreads) { return work < kSerialWork ? 1 : nthreads; }

}  // namespace

extern "C" {

int dgc_cpu_kernels_version() { return 3; }

// x (B, C, P), w (H, Co, C), idx/scale (B, H, K) int64/float, out (B, H*Co, P); all contiguous.
int dgc_fused_1x1(const float* x, const float* w, const int64_t* idx, const float* scale,
                  float* out, int64_t B, int64_t C, int64_t P, int64_t H, int64_t Co, int64_t K,
                  int nthreads) {
  if (B < 0 || C < 1 || P < 0 || H < 1 || Co < 0 || K < 0 || K > C) return -1;
  for (int64_t n = 0; n < B * H * K; ++n)
    if (idx[n] < 0 || idx[n] >= C) return -2;
  const int64_t units = B * H;
#pragma omp parallel num_threads(threads_for(B * H * Co * K * P, nthreads))
  {
    std::vector<float> panel(K * Co);
    std::vector<const float*> rows(K);
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t b = u / H, i = u % H;
      const int64_t* id = idx + u * K;
      const float* sc = scale + u * K;
      for (int64_t k = 0; k < K; ++k) {
        rows[k] = x + (b * C + id[k]) * P;
        for (int64_t j = 0; j < Co; ++j) panel[k * Co + j] = w[(i * Co + j) * C + id[k]] * sc[k];
      }
      // head i's channel j is output channel j*H + i: its rows are H*P apart
      gemm_panel(panel.data(), K, Co, rows.data(), P, out + (b * H * Co + i) * P, H * P);
    }
  }
  return 0;
}

// DGC's selection: per row of `saliency` (rows x C), the K channels of largest (saliency, index)
// keys (a NaN ranks as +inf; ties at the cut-off keep the higher index), exactly the set of
// dgc.layers.dgc_conv.rank_keys + topk; idx (rows x K) in no particular order, values = saliency[idx].
int dgc_select_topk(const float* saliency, int64_t rows, int64_t C, int64_t K, int64_t* idx,
                    float* values, int nthreads) {
  if (rows < 0 || C < 1 || K < 0 || K > C) return -1;
  const int shift = key_shift(C);
#pragma omp parallel num_threads(threads_for(rows * C * 8, nthreads))
  {
    std::vector<int64_t> keys(C);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = saliency + r * C;
      select_row(s, C, K, shift, keys.data(), idx + r * K);
      for (int64_t k = 0; k < K; ++k) values[r * K + k] = s[idx[r * K + k]];
    }
  }
  return 0;
}

// x (R, H, W) -> out (R, H/2, W/2): 2x2 average pooling, stride 2 (odd edges dropped, as PyTorch).
int dgc_avg_pool2(const float* x, float* out, int64_t R, int64_t H, int64_t W, int nthreads) {
  if (R < 0 || H < 2 || W < 2) return -1;
  const int64_t ho = H / 2, wo = W / 2;
#pragma omp parallel for schedule(static) num_threads(threads_for(R * H * W, nthreads))
  for (int64_t r = 0; r < R * ho; ++r) {
    const int64_t plane = r / ho, i = r % ho;
    const float* a = x + (plane * H + 2 * i) * W;
    const float* b = a + W;
    float* o = out + r * wo;
    for (int64_t j = 0; j < wo; ++j) o[j] = 0.25f * ((a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]));
  }
  return 0;
}

// x (B, C, P) with samples `x_batch_stride` floats apart (>= C*P: a channel slice of a larger
// batch, as a DenseNet block's feature buffer), y (B, C, P) contiguous; y = relu(x * bn_scale[c] +
// bn_shift[c]) (a NaN stays NaN), means (B, C) = the mean of y over P: the DGC layer's
// pre-activation and its saliency generators' pooling in one pass.
int dgc_bnrelu_mean(const float* x, const float* bn_scale, const float* bn_shift, float* y,
                    float* means, int64_t B, int64_t C, int64_t P, int64_t x_batch_stride,
                    int nthreads) {
  if (B < 0 || C < 1 || P < 1 || x_batch_stride < C * P) return -1;
#pragma omp parallel for schedule(static) num_threads(threads_for(B * C * P, nthreads))
  for (int64_t u = 0; u < B * C; ++u) {
    const int64_t c = u % C;
    const float a = bn_scale[c], s = bn_shift[c];
    const float* src = x + (u / C) * x_batch_stride + c * P;
    float* dst = y + u * P;
    v8 acc = splat(0.f);
    const v8 av = splat(a), sv = splat(s), zero = splat(0.f);
    int64_t p = 0;
    for (; p + 8 <= P; p += 8) {
      v8 v = av * load8(src + p) + sv;
      v = (v > zero) | (v != v) ? v : zero;
      store8(dst + p, v);
      acc += v;
    }
    float total = 0.f;
    for (; p < P; ++p) {
      const float v = a * src[p] + s;
      dst[p] = v > 0.f ? v : (v == v ? 0.f : v);
      total += dst[p];
    }
    for (int l = 0; l < 8; ++l) total += acc[l];
    means[u] = total / static_cast<float>(P);
  }
  return 0;
}

// x (B, C, Hi, Wi), samples x_batch_stride floats apart (>= C*Hi*Wi); bn_scale/bn_shift (C) or
// null (no pre-activation); w (Cout, C/G, KH, KW);
// out (B, Cout, Ho, Wo), Ho = Hi + 2 PH - KH + 1 (stride 1, dilation 1). shuffle: group g's
// channel j goes to output channel j*G + g instead of g*(Cout/G) + j.
int dgc_bnrelu_group_conv(const float* x, const float* bn_scale, const float* bn_shift,
                          const float* w, float* out, int64_t B, int64_t C, int64_t Hi, int64_t Wi,
                          int64_t Cout, int64_t G, int64_t KH, int64_t KW, int64_t PH, int64_t PW,
                          int shuffle, int64_t x_batch_stride, int nthreads) {
  if (B < 0 || C < 1 || G < 1 || C % G || Cout % G || KH < 1 || KW < 1 || PH < 0 || PW < 0)
    return -1;
  if (x_batch_stride < C * Hi * Wi) return -1;
  if ((bn_scale == nullptr) != (bn_shift == nullptr)) return -1;
  const int64_t ho = Hi + 2 * PH - KH + 1, wo = Wi + 2 * PW - KW + 1;
  if (ho < 1 || wo < 1) return -1;
  const int64_t cin = C / G, cout = Cout / G, hp = Hi + 2 * PH, wp = Wi + 2 * PW;
  const int64_t units = B * G, kk = KH * KW;
#pragma omp parallel num_threads(threads_for(B * Cout * (C / G) * KH * KW * ho * wo, nthreads))
  {
    std::vector<float> buf(cin * hp * wp);
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t b = u / G, g = u % G;
      // activated, zero-padded input of this group (padding is zero after the activation)
      std::fill(buf.begin(), buf.end(), 0.f);
      for (int64_t c = 0; c < cin; ++c) {
        const int64_t ch = g * cin + c;
        const float* src = x + b * x_batch_stride + ch * Hi * Wi;
        float* dst = buf.data() + (c * hp + PH) * wp + PW;
        if (bn_scale) {
          const float a = bn_scale[ch], s = bn_shift[ch];
          for (int64_t r = 0; r < Hi; ++r)
            for (int64_t q = 0; q < Wi; ++q) {
              const float v = a * src[r * Wi + q] + s;
              dst[r * wp + q] = v > 0.f ? v : (v == v ? 0.f : v);  // ReLU, NaN kept
            }
        } else {
          for (int64_t r = 0; r < Hi; ++r) std::copy(src + r * Wi, src + r * Wi + Wi, dst + r * wp);
        }
      }
      int64_t j0 = 0;
      while (j0 < cout) {
        const int jt = cout - j0 >= 4 ? 4 : (cout - j0 >= 2 ? 2 : 1);
        const float* wg[4];
        float* orow[4];
        for (int j = 0; j < jt; ++j) wg[j] = w + (g * cout + j0 + j) * cin * kk;
        for (int j = 0; j < jt; ++j) {
          const int64_t oc = shuffle ? (j0 + j) * G + g : g * cout + j0 + j;
          orow[j] = out + (b * Cout + oc) * ho * wo;
        }
        if (jt == 4) conv_channels<4, 2>(buf.data(), cin, hp, wp, wg, KH, KW, ho, wo, orow);
        else if (jt == 2) conv_channels<2, 4>(buf.data(), cin, hp, wp, wg, KH, KW, ho, wo, orow);
        else conv_channels<1, 4>(buf.data(), cin, hp, wp, wg, KH, KW, ho, wo, orow);
        j0 += jt;
      }
    }
  }
  return 0;
}

// One whole DGC layer at inference, head-wise selection with a fixed n_in (K = C - n_in kept):
//   y = relu(x * bn_scale + bn_shift) per channel (bn_scale null: y = x, no pre-activation);
//   pooled = mean of y over positions; per head i: hidden = relu(w1[i] pooled), saliency =
//   relu(w2[i] hidden + b2[i]); the K channels of largest (saliency, index) kept (as select_topk);
//   out[b, j*H + i] = conv(y[b, kept], W[i, j, kept] * saliency[kept]) with stride and zero
//   padding: for 1x1 at stride 1 the kept rows of y are read in place, otherwise an im2col of the
//   kept channels; then the register-tiled GEMM of fused_1x1. The pre-activation is one parallel
//   pass over (sample, channel); everything else one pass over (sample, head) units.
// x (B, C, Hi, Wi) samples x_batch_stride floats apart; y (B, C, Hi*Wi) scratch (written when
// bn_scale is given); w1 (H, S, C); w2 (H, C, S); b2 (H, C); wt (H, C, KH, KW, Co): the heads'
// conv weights with the output channel last (each kept channel's panel rows are one contiguous copy);
// out (B, H*Co, Ho, Wo); saliency (B, H, C); idx (B, H, K).
int dgc_layer(const float* x, const float* bn_scale, const float* bn_shift, const float* w1,
              const float* w2, const float* b2, const float* wt, float* y, float* out,
              float* saliency, int64_t* idx, int64_t B, int64_t C, int64_t Hi, int64_t Wi,
              int64_t x_batch_stride, int64_t H, int64_t S, int64_t Co, int64_t KH, int64_t KW,
              int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t K, int nthreads) {
  if (B < 0 || C < 1 || Hi < 1 || Wi < 1 || H < 1 || S < 1 || Co < 0 || KH < 1 || KW < 1 || SH < 1 ||
      SW < 1 || PH < 0 || PW < 0 || K < 0 || K > C || x_batch_stride < C * Hi * Wi)
    return -1;
  if ((bn_scale == nullptr) != (bn_shift == nullptr)) return -1;
  const int64_t ho = (Hi + 2 * PH - KH) / SH + 1, wo = (Wi + 2 * PW - KW) / SW + 1;
  if (Hi + 2 * PH < KH || Wi + 2 * PW < KW) return -1;
  const int64_t P = Hi * Wi, Po = ho * wo, KK = KH * KW;
  const bool direct = KK == 1 && SH == 1 && SW == 1 && PH == 0 && PW == 0;  // rows of y in place
  const float* src = bn_scale ? y : x;
  const int64_t src_stride = bn_scale ? C * P : x_batch_stride;
  std::vector<float> pooled(B * C);
  const int shift = key_shift(C);
#pragma omp parallel num_threads(threads_for(B * H * Co * K * KK * Po + B * C * P, nthreads))
  {
#pragma omp for schedule(static)
    for (int64_t u = 0; u < B * C; ++u) {  // pre-activation and pooling
      const int64_t c = u % C;
      const float* xs = x + (u / C) * x_batch_stride + c * P;
      v8 acc = splat(0.f);
      float total = 0.f;
      int64_t p = 0;
      if (bn_scale) {
        const float a = bn_scale[c], s = bn_shift[c];
        const v8 av = splat(a), sv = splat(s), zero = splat(0.f);
        float* dst = y + u * P;
        for (; p + 8 <= P; p += 8) {
          v8 v = av * load8(xs + p) + sv;
          v = (v > zero) | (v != v) ? v : zero;
          store8(dst + p, v);
          acc += v;
        }
        for (; p < P; ++p) {
          const float v = a * xs[p] + s;
          dst[p] = v > 0.f ? v : (v == v ? 0.f : v);
          total += dst[p];
        }
      } else {
        for (; p + 8 <= P; p += 8) acc += load8(xs + p);
        for (; p < P; ++p) total += xs[p];
      }
      for (int l = 0; l < 8; ++l) total += acc[l];
      pooled[u] = total / static_cast<float>(P);
    }
    std::vector<float> hidden(S);
    std::vector<int64_t> keys(C);
    std::vector<float> panel(K * KK * Co);
    std::vector<const float*> rows(K * KK);
    std::vector<float> col(direct ? 0 : K * KK * Po);
#pragma omp for schedule(static)
    for (int64_t u = 0; u < B * H; ++u) {  // per (sample, head): saliency, selection, conv
      const int64_t b = u / H, i = u % H;
      const float* pb = pooled.data() + b * C;
      for (int64_t s = 0; s < S; ++s) {
        const float* wr = w1 + (i * S + s) * C;
        float a = 0.f;
        for (int64_t c = 0; c < C; ++c) a += wr[c] * pb[c];
        hidden[s] = a > 0.f ? a : (a == a ? 0.f : a);
      }
      float* sal = saliency + u * C;
      for (int64_t c = 0; c < C; ++c) {
        const float* wr = w2 + (i * C + c) * S;
        float a = b2[i * C + c];
        for (int64_t s = 0; s < S; ++s) a += wr[s] * hidden[s];
        sal[c] = a > 0.f ? a : (a == a ? 0.f : a);
      }
      int64_t* id = idx + u * K;
      select_row(sal, C, K, shift, keys.data(), id);
      const float* yb = src + b * src_stride;
      for (int64_t k = 0; k < K; ++k) {  // panel[(k*KK + t)*Co + j] = W[i, j, id[k], t] * saliency
        const float sc = sal[id[k]];
        const float* wk = wt + (i * C + id[k]) * KK * Co;  // contiguous (KK, Co)
        float* pk = panel.data() + k * KK * Co;
        for (int64_t n = 0; n < KK * Co; ++n) pk[n] = wk[n] * sc;
      }
      if (direct) {
        for (int64_t k = 0; k < K; ++k) rows[k] = yb + id[k] * P;
      } else {
        for (int64_t k = 0; k < K; ++k) {
          const float* plane = yb + id[k] * P;
          for (int64_t dy = 0; dy < KH; ++dy)
            for (int64_t dx = 0; dx < KW; ++dx) {
              float* r = col.data() + (k * KK + dy * KW + dx) * Po;
              rows[k * KK + dy * KW + dx] = r;
              for (int64_t oy = 0; oy < ho; ++oy) {
                const int64_t iy = oy * SH - PH + dy;
                float* ro = r + oy * wo;
                if (iy < 0 || iy >= Hi) {
                  std::fill(ro, ro + wo, 0.f);
                  continue;
                }
                const float* line = plane + iy * Wi;
                for (int64_t ox = 0; ox < wo; ++ox) {
                  const int64_t ix = ox * SW - PW + dx;
                  ro[ox] = (ix >= 0 && ix < Wi) ? line[ix] : 0.f;
                }
              }
            }
        }
      }
      // head i's channel j is output channel j*H + i: its rows are H*Po apart
      gemm_panel(panel.data(), K * KK, Co, rows.data(), Po, out + (b * H * Co + i) * Po, H * Po);
    }
  }
  return 0;
}

}  // extern "C"
