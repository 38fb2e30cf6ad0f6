// y = x W^T for few rows of x: the matrix-vector products of incremental decoding.
//
// At batch 1 (and 2 with CFG) a decode step multiplies every weight matrix by one or two
// vectors, so its time is the time to stream the weights from memory once. MKL's sgemv reads
// at about 14 GB/s on one core of the recipe machines whatever the thread count, while two
// cores stream ~45 GB/s; this kernel splits the output rows over torch's intra-op threads
// (at::parallel_for) and reads each weight row once for all R input rows, accumulating in
// kLanes independent lanes per row so that the compiler emits vector FMAs without reassociating
// a serial sum (no -ffast-math needed).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace {

constexpr int64_t kLanes = 32;     // two AVX-512 (four AVX2) vectors of partial sums per input row
constexpr int64_t kGrain = 64;     // output rows per parallel task: 64 x 4 KB of weights at in = 1024
constexpr int64_t kMaxRows = 8;

// rows [o0, o1) of y [R, out] = x [R, in] * w [out, in]^T
template <int R>
void gemv_rows(const float* __restrict w, const float* __restrict x, float* __restrict y,
               int64_t in, int64_t out, int64_t o0, int64_t o1) {
  const int64_t in_vec = in / kLanes * kLanes;
  for (int64_t o = o0; o < o1; ++o) {
    const float* __restrict wr = w + o * in;
    float acc[R][kLanes] = {};
    for (int64_t i = 0; i < in_vec; i += kLanes) {
      for (int r = 0; r < R; ++r) {
        const float* __restrict xr = x + r * in + i;
        for (int64_t l = 0; l < kLanes; ++l) acc[r][l] += wr[i + l] * xr[l];
      }
    }
    for (int r = 0; r < R; ++r) {
      float s = 0.f;
      for (int64_t l = 0; l < kLanes; ++l) s += acc[r][l];
      for (int64_t i = in_vec; i < in; ++i) s += wr[i] * x[r * in + i];
      y[r * out + o] = s;
    }
  }
}

template <int R>
void gemv(const float* w, const float* x, float* y, int64_t in, int64_t out) {
  at::parallel_for(0, out, kGrain, [&](int64_t o0, int64_t o1) { gemv_rows<R>(w, x, y, in, out, o0, o1); });
}

}  // namespace

// x [R, in] float32 (R <= 8), w [out, in] float32, both contiguous on the CPU -> y [R, out]
at::Tensor few_row_gemv(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2, "few_row_gemv: x [R, in] and w [out, in] expected, got ",
              x.sizes(), " and ", w.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat,
              "few_row_gemv: float32 only, got ", x.scalar_type(), " and ", w.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "few_row_gemv: CPU tensors only");
  TORCH_CHECK(x.size(1) == w.size(1), "few_row_gemv: x has ", x.size(1), " features, w ", w.size(1));
  const int64_t rows = x.size(0), in = w.size(1), out = w.size(0);
  TORCH_CHECK(rows >= 1 && rows <= kMaxRows, "few_row_gemv: 1..", kMaxRows, " rows, got ", rows);
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  at::Tensor y = at::empty({rows, out}, x.options());
  const float *wp = wc.data_ptr<float>(), *xp = xc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  switch (rows) {
    case 1: gemv<1>(wp, xp, yp, in, out); break;
    case 2: gemv<2>(wp, xp, yp, in, out); break;
    case 3: gemv<3>(wp, xp, yp, in, out); break;
    case 4: gemv<4>(wp, xp, yp, in, out); break;
    case 5: gemv<5>(wp, xp, yp, in, out); break;
    case 6: gemv<6>(wp, xp, yp, in, out); break;
    case 7: gemv<7>(wp, xp, yp, in, out); break;
    default: gemv<8>(wp, xp, yp, in, out); break;
  }
  return y;
}

// an operator of torch's dispatcher (torch.ops.ualm_tk.few_row_gemv): the profiler lists it by name
TORCH_LIBRARY(ualm_tk, m) {
  m.def("few_row_gemv(Tensor x, Tensor w) -> Tensor");
}

TORCH_LIBRARY_IMPL(ualm_tk, CPU, m) {
  m.impl("few_row_gemv", &few_row_gemv);
}
