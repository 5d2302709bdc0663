// The two libtorch controls tch 0.24 does not bind. Called from src/runtime.rs.
#include <ATen/Context.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <cstring>
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

// Makes CUDA autocast compute in bf16 (libtorch's default is fp16, which overflows in T5).
int hsx_set_cuda_autocast_bf16() {
  try {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    return 0;
  } catch (...) {
    return -1;
  }
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
}
