// The libtorch controls tch 0.24 does not bind, and MKL's conditional numerical reproducibility (CNR)
// controls, which the PyPI libtorch links statically and exports. Called from src/runtime.rs.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <link.h>
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

// ---- CUDA facts (recorded in every CUDA entry; src/runtime/cuda.rs). Nothing here links a CUDA library:
// the libraries libtorch_cuda.so brought in are found among the loaded objects at run time, so a CPU-only
// build compiles and runs this file, and every call answers "unknown" (-1 / -100) where CUDA is absent.

// The handle of a loaded shared object whose file name contains `needle` (e.g. "libcublas.so"), or null.
struct hsx_find_ctx {
  const char* needle;
  std::string path;
};
static int hsx_find_cb(struct dl_phdr_info* info, size_t, void* data) {
  auto* ctx = static_cast<hsx_find_ctx*>(data);
  if (info->dlpi_name && std::strstr(info->dlpi_name, ctx->needle)) {
    ctx->path = info->dlpi_name;
    return 1;
  }
  return 0;
}
static void* hsx_loaded(const char* needle) {
  hsx_find_ctx ctx{needle, std::string()};
  dl_iterate_phdr(hsx_find_cb, &ctx);
  if (ctx.path.empty()) return nullptr;
  return dlopen(ctx.path.c_str(), RTLD_NOW | RTLD_NOLOAD);
}

// The CUDA driver API (libcuda.so.1): loaded by the CUDA runtime once CUDA is initialised.
static void* hsx_libcuda() {
  void* h = hsx_loaded("libcuda.so");
  if (!h) h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  return h;
}

// Device `ordinal`: its name (into name), compute capability and total memory in bytes. 0 on success,
// -100 without the driver library, another negative value when a call failed.
int hsx_cuda_device(int ordinal, char* name, size_t len, int* major, int* minor, unsigned long long* total) {
  void* h = hsx_libcuda();
  if (!h) return -100;
  typedef int (*init_fn)(unsigned int);
  typedef int (*get_fn)(int*, int);
  typedef int (*name_fn)(char*, int, int);
  typedef int (*mem_fn)(size_t*, int);
  typedef int (*attr_fn)(int*, int, int);
  auto cu_init = reinterpret_cast<init_fn>(dlsym(h, "cuInit"));
  auto cu_get = reinterpret_cast<get_fn>(dlsym(h, "cuDeviceGet"));
  auto cu_name = reinterpret_cast<name_fn>(dlsym(h, "cuDeviceGetName"));
  auto cu_mem = reinterpret_cast<mem_fn>(dlsym(h, "cuDeviceTotalMem_v2"));
  auto cu_attr = reinterpret_cast<attr_fn>(dlsym(h, "cuDeviceGetAttribute"));
  if (!cu_init || !cu_get || !cu_name || !cu_mem || !cu_attr) return -101;
  int dev = 0;
  size_t bytes = 0;
  if (cu_init(0) != 0 || cu_get(&dev, ordinal) != 0) return -102;
  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
  if (cu_name(name, static_cast<int>(len), dev) != 0 || cu_mem(&bytes, dev) != 0 ||
      cu_attr(major, 75, dev) != 0 || cu_attr(minor, 76, dev) != 0)
    return -103;
  *total = bytes;
  return 0;
}

// The CUDA version the driver supports (cuDriverGetVersion, e.g. 13000), or a negative value.
int hsx_cuda_driver_api_version() {
  void* h = hsx_libcuda();
  if (!h) return -100;
  typedef int (*ver_fn)(int*);
  auto f = reinterpret_cast<ver_fn>(dlsym(h, "cuDriverGetVersion"));
  int v = 0;
  return f && f(&v) == 0 ? v : -101;
}

// The NVIDIA driver's version string (NVML), e.g. "580.159.04"; 0 on success.
int hsx_nvidia_driver_version(char* buf, size_t len) {
  void* h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) return -100;
  typedef int (*init_fn)();
  typedef int (*ver_fn)(char*, unsigned int);
  auto init = reinterpret_cast<init_fn>(dlsym(h, "nvmlInit_v2"));
  auto ver = reinterpret_cast<ver_fn>(dlsym(h, "nvmlSystemGetDriverVersion"));
  auto shutdown = reinterpret_cast<init_fn>(dlsym(h, "nvmlShutdown"));
  if (!init || !ver || init() != 0) return -101;
  const int rc = ver(buf, static_cast<unsigned int>(len));
  if (shutdown) shutdown();
  return rc == 0 ? 0 : -102;
}

// The loaded CUDA runtime's version (cudaRuntimeGetVersion, e.g. 13000); failing that, the one libtorch
// was built with (its CUDA hooks); -1 if neither answers.
long hsx_cuda_runtime_version() {
  if (void* h = hsx_loaded("libcudart.so")) {
    typedef int (*ver_fn)(int*);
    auto f = reinterpret_cast<ver_fn>(dlsym(h, "cudaRuntimeGetVersion"));
    int v = 0;
    if (f && f(&v) == 0) return v;
  }
  try {
    return at::detail::getCUDAHooks().versionCUDART();
  } catch (...) {
    return -1;
  }
}

// The loaded cuDNN's version (cudnnGetVersion through libtorch's CUDA hooks), or -1.
long hsx_cudnn_version() {
  try {
    return at::detail::getCUDAHooks().versionRuntimeCuDNN();
  } catch (...) {
    return -1;
  }
}

// cuBLAS's version (cublasGetProperty: 0 major, 1 minor, 2 patch) of the loaded libcublas; -100 if none.
int hsx_cublas_version(int* major, int* minor, int* patch) {
  void* h = hsx_loaded("libcublas.so");
  if (!h) return -100;
  typedef int (*prop_fn)(int, int*);
  auto f = reinterpret_cast<prop_fn>(dlsym(h, "cublasGetProperty"));
  if (!f) return -101;
  return f(0, major) == 0 && f(1, minor) == 0 && f(2, patch) == 0 ? 0 : -102;
}

// libtorch's CUDA numerics settings, as bits: 1 deterministic cuDNN, 2 cuDNN benchmark, 4 cuDNN enabled,
// 8 TF32 in cuBLAS matmuls, 16 TF32 in cuDNN, 32 reduced-precision fp16 reductions in cuBLAS, 64 the same
// for bf16. -1 on failure.
int hsx_cuda_numerics() {
  try {
    auto& c = at::globalContext();
    int bits = 0;
    if (c.deterministicCuDNN()) bits |= 1;
    if (c.benchmarkCuDNN()) bits |= 2;
    if (c.userEnabledCuDNN()) bits |= 4;
    if (c.allowTF32CuBLAS()) bits |= 8;
    if (c.allowTF32CuDNN()) bits |= 16;
    if (c.allowFP16ReductionCuBLAS() == at::CuBLASReductionOption::AllowReducedPrecisionWithSplitK) bits |= 32;
    if (c.allowBF16ReductionCuBLAS() == at::CuBLASReductionOption::AllowReducedPrecisionWithSplitK) bits |= 64;
    return bits;
  } catch (...) {
    return -1;
  }
}

// glibc's version: its libm supplies exp/log/tanh wherever ATen or Rust compute them one scalar at a time.
const char* hsx_glibc_version() { return gnu_get_libc_version(); }
}
