// The libtorch controls tch 0.24 does not bind, and MKL's conditional numerical reproducibility (CNR)
// controls, which the PyPI libtorch links statically and exports. Called from src/runtime.rs.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <string>

extern "C" {

// Turns deterministic algorithms on or off (torch.use_deterministic_algorithms); warn_only is false,
// so an op without a deterministic implementation raises instead of silently running.
int hsx_set_deterministic_algorithms(int on) {
  try {
    at::globalContext().setDeterministicAlgorithms(on != 0, false);
    at::globalContext().setDeterministicCuDNN(on != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

int hsx_deterministic_algorithms() {
  return at::globalContext().deterministicAlgorithms() ? 1 : 0;
}

int hsx_set_benchmark_cudnn(int on) {
  try {
    at::globalContext().setBenchmarkCuDNN(on != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

// bf16 autocast regions on CPU (cuda = 0) or CUDA (cuda = 1); libtorch's default autocast dtype on
// CUDA is fp16, which overflows in T5, so the dtype is set to bf16 on entry. Enter returns the previous
// enabled state (0/1) to hand back to exit, or -1 on failure.
int hsx_autocast_enter(int cuda) {
  try {
    const auto dt = cuda ? at::kCUDA : at::kCPU;
    const bool prev = at::autocast::is_autocast_enabled(dt);
    at::autocast::set_autocast_dtype(dt, at::kBFloat16);
    at::autocast::set_autocast_enabled(dt, true);
    at::autocast::increment_nesting();
    return prev ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int hsx_autocast_exit(int cuda, int prev) {
  try {
    const auto dt = cuda ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dt, prev == 1);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Whether autocast is on for the device type (0 = CPU, 1 = CUDA) and computes in bf16.
int hsx_autocast_bf16_active(int cuda) {
  try {
    const auto dt = cuda ? at::kCUDA : at::kCPU;
    return at::autocast::is_autocast_enabled(dt) && at::autocast::get_autocast_dtype(dt) == at::kBFloat16 ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Loads libtorch_cuda.so from the directory libtorch_cpu.so was loaded from, so that its static
// initialisers register libtorch's CUDA hooks (the linker drops the library from the binary's needs,
// since no symbol of it is referenced). Returns 1 when loaded (or already), 0 when that libtorch has no
// CUDA library (a CPU-only build), -1 on failure with dlerror's message in err.
int hsx_load_torch_cuda(char* err, size_t len) {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&at::globalContext), &info) || !info.dli_fname) {
    std::snprintf(err, len, "cannot find the directory of libtorch_cpu.so");
    return -1;
  }
  std::string dir(info.dli_fname);
  const auto slash = dir.rfind('/');
  dir = slash == std::string::npos ? std::string(".") : dir.substr(0, slash);
  const std::string path = dir + "/libtorch_cuda.so";
  if (access(path.c_str(), F_OK) != 0) return 0;
  if (!dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* e = dlerror();
    std::snprintf(err, len, "%s", e ? e : "dlopen failed");
    return -1;
  }
  return 1;
}

// Writes ATen's CPU capability ("AVX512", "AVX2", "DEFAULT", ...) into buf; returns its length or -1.
int hsx_cpu_capability(char* buf, size_t len) {
  try {
    std::string cap = at::get_cpu_capability();
    if (cap.size() + 1 > len) return -1;
    std::memcpy(buf, cap.c_str(), cap.size() + 1);
    return static_cast<int>(cap.size());
  } catch (...) {
    return -1;
  }
}

// MKL's CNR branch. libtorch links MKL statically; its exported service entry points are looked up at
// run time (dlsym), so a libtorch without MKL still loads hsx, and the calls then report -100.
typedef int (*hsx_cbwr_fn)(int);
typedef int (*hsx_void_int_fn)(void);

static void* hsx_mkl_symbol(const char* public_name, const char* service_name) {
  void* f = dlsym(RTLD_DEFAULT, public_name);
  if (!f) f = dlsym(RTLD_DEFAULT, service_name);
  return f;
}

// mkl_cbwr_get(option): option 1 = the branch, -1 (MKL_CBWR_ALL) = branch and STRICT bit.
int hsx_mkl_cbwr_get(int option) {
  void* f = hsx_mkl_symbol("mkl_cbwr_get", "mkl_serv_cbwr_get");
  if (!f) return -100;
  return reinterpret_cast<hsx_cbwr_fn>(f)(option);
}

// mkl_cbwr_set(settings): 0 on success, MKL's negative error code otherwise (-8: MKL already ran).
int hsx_mkl_cbwr_set(int settings) {
  void* f = hsx_mkl_symbol("mkl_cbwr_set", "mkl_serv_cbwr_set");
  if (!f) return -100;
  return reinterpret_cast<hsx_cbwr_fn>(f)(settings);
}

// The branch MKL would pick on this processor if nothing were pinned.
int hsx_mkl_cbwr_auto_branch() {
  void* f = hsx_mkl_symbol("mkl_cbwr_get_auto_branch", "mkl_serv_cbwr_get_auto_branch");
  if (!f) return -100;
  return reinterpret_cast<hsx_void_int_fn>(f)();
}

// Inter-op threads can be set once, before any inter-op work; 0 on success (or already n), -1 if refused.
int hsx_set_num_interop_threads(int n) {
  try {
    if (at::get_num_interop_threads() == n) return 0;
    at::set_num_interop_threads(n);
    return 0;
  } catch (...) {
    return -1;
  }
}

// torch.get_float32_matmul_precision: 0 highest, 1 high, 2 medium, -1 unknown.
int hsx_float32_matmul_precision() {
  try {
    switch (at::globalContext().float32MatmulPrecision()) {
      case at::Float32MatmulPrecision::HIGHEST: return 0;
      case at::Float32MatmulPrecision::HIGH: return 1;
      case at::Float32MatmulPrecision::MEDIUM: return 2;
    }
    return -1;
  } catch (...) {
    return -1;
  }
}

// glibc's version: its libm supplies exp/log/tanh wherever ATen or Rust compute them one scalar at a time.
const char* hsx_glibc_version() { return gnu_get_libc_version(); }
}
