// Memory-bound benchmark workload for the energy-measurement campaign (scripts/bench_energy.py).
//
//   stream_update <iterations> [mebibytes_per_array]
//
// Each iteration streams two arrays through the GPU: y <- y * 0.999 + 0.5 * x, i.e. two reads and
// one write per element. Energy should grow linearly with <iterations>; 0 iterations measures
// only the fixed cost (context creation, allocation, first touch). Prints a checksum so that a
// run which skipped work would be visible.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CHECK(call)                                                             \
  do {                                                                          \
    cudaError_t err_ = (call);                                                  \
    if (err_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(err_), \
                   __FILE__, __LINE__);                                         \
      return 2;                                                                 \
    }                                                                           \
  } while (0)

__global__ void fill(float* v, float value, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    v[i] = value;
}

__global__ void update(float* __restrict__ y, const float* __restrict__ x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = y[i] * 0.999f + 0.5f * x[i];
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <iterations> [mebibytes_per_array]\n", argv[0]);
    return 1;
  }
  long iterations = std::atol(argv[1]);
  long mib = argc > 2 ? std::atol(argv[2]) : 512;
  if (iterations < 0 || mib <= 0) {
    std::fprintf(stderr, "iterations must be >= 0 and size > 0\n");
    return 1;
  }
  size_t n = (size_t)mib * (1 << 20) / sizeof(float);
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  dim3 grid(sms * 8), block(256);
  float *x = nullptr, *y = nullptr;
  CHECK(cudaMalloc(&x, n * sizeof(float)));
  CHECK(cudaMalloc(&y, n * sizeof(float)));
  fill<<<grid, block>>>(x, 1.0f, n);
  fill<<<grid, block>>>(y, 0.0f, n);
  for (long it = 0; it < iterations; ++it) update<<<grid, block>>>(y, x, n);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  float probe[2] = {0.0f, 0.0f};
  CHECK(cudaMemcpy(&probe[0], y, sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(&probe[1], y + n - 1, sizeof(float), cudaMemcpyDeviceToHost));
  std::printf("iterations=%ld mib=%ld checksum=%.6f\n", iterations, mib, (double)probe[0] + probe[1]);
  CHECK(cudaFree(x));
  CHECK(cudaFree(y));
  return 0;
}
