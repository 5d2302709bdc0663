// The autograd node of hsx's portable linear layer (src/model/gemm.rs): y = x · wᵀ, forward and backward
// computed by one matrix multiply hsx owns (the `matrixmultiply` crate, called back into Rust), so that a
// T5 layer gives the same bits on every x86-64 CPU with AVX2 and FMA in training as in inference.
//
// tch binds no custom autograd function, so the node lives here. Its three products, for x [m, k] and
// w [n, k], all float32 on the CPU:
//   forward   y  = x · wᵀ    [m, n]
//   backward  dx = dy · w    [m, k]   (only when x needs a gradient)
//             dw = dyᵀ · x   [n, k]   (only when w needs a gradient: not for a frozen base weight)
// Operands are passed with their strides (a transpose is a stride swap, never a copy); the multiply packs
// them itself, so the layout of an operand does not change a result's bits.
#include <torch/csrc/autograd/custom_function.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cstdio>
#include <exception>

extern "C" {
// c[m, n] = a[m, k] · b[k, n]; element (i, j) of a is a[i * rsa + j * csa], likewise b; c is row-major.
typedef void (*hsx_sgemm_fn)(int64_t m, int64_t k, int64_t n, const float* a, int64_t rsa, int64_t csa,
                             const float* b, int64_t rsb, int64_t csb, float* c);
// One block of a job split by the caller: f(ctx, i) for block i.
typedef void (*hsx_block_fn)(const void* ctx, int64_t i);
}

namespace {

hsx_sgemm_fn g_sgemm = nullptr;

// a [m, k] · b [k, n] with the registered multiply; any 2-d strides.
at::Tensor portable_mm(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(g_sgemm != nullptr, "hsx: the portable matrix multiply was not registered");
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "hsx portable_mm: shapes ", a.sizes(),
              " and ", b.sizes(), " do not multiply");
  TORCH_CHECK(a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && a.device().is_cpu() &&
                  b.device().is_cpu(),
              "hsx portable_mm: float32 CPU tensors only");
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  auto c = at::empty({m, n}, a.options());
  if (m == 0 || n == 0) return c;
  if (k == 0) return c.zero_();
  g_sgemm(m, k, n, a.data_ptr<float>(), a.stride(0), a.stride(1), b.data_ptr<float>(), b.stride(0), b.stride(1),
          c.data_ptr<float>());
  return c;
}

struct PortableLinear : public torch::autograd::Function<PortableLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    return portable_mm(x, w.t());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor& dy = grads[0];
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = portable_mm(dy, w);
    if (ctx->needs_input_grad(1)) dw = portable_mm(dy.t(), x);
    return {dx, dw};
  }
};

}  // namespace

extern "C" {

void hsx_register_sgemm(hsx_sgemm_fn f) { g_sgemm = f; }

// Runs f(ctx, 0) ... f(ctx, n - 1) on libtorch's own intra-op thread team (at::parallel_for), so the
// portable multiply's blocks run on the threads libtorch already has instead of competing with them (an
// idle OpenMP worker spins for a while before it sleeps: on 2 cores, extra threads of hsx's own lost most
// of their time to it). Which thread runs a block does not change its bits. at::parallel_for's OpenMP
// pragma is compiled in this file, which is why build.rs compiles the shim with -fopenmp. Returns 0, or -1
// on failure.
int hsx_parallel_blocks(int64_t n, hsx_block_fn f, const void* ctx) {
  try {
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) f(ctx, i);
    });
    return 0;
  } catch (...) {
    return -1;
  }
}

// *out = x · wᵀ for x [m, k] and w [n, k] (tch tensors), recorded for autograd when either needs a
// gradient. Returns 0, or -1 with libtorch's message in err.
int hsx_portable_linear(at::Tensor* x, at::Tensor* w, at::Tensor** out, char* err, size_t len) {
  try {
    *out = new at::Tensor(PortableLinear::apply(*x, *w));
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, len, "%s", e.what());
    return -1;
  }
}

}  // extern "C"
