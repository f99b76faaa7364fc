// rowstats (CUDA): per-channel mean and standard deviation of a block of multichannel samples.
//
// The block is a rows x cols matrix of floats in row-major order: one row per sensor channel,
// one column per time sample. Each repeat re-analyses the block (as a monitoring loop does for
// every frame): it computes the mean and the standard deviation of every channel and counts
// the quiet channels whose standard deviation is below a threshold.
//
// Usage: rowstats <rows> <cols> <repeats>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

// Aborts with the failing call and line: a GPU error must never look like a result.
#define CUDA_CHECK(call) gpu_check((call), #call, __LINE__)

static void gpu_check(cudaError_t err, const char* what, int line) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "CUDA error: %s at line %d: %s\n", what, line, cudaGetErrorString(err));
    std::exit(1);
  }
}

namespace {

constexpr double kQuietStd = 0.1;  // channels below this standard deviation count as quiet
constexpr int kThreads = 128;

// Work actually done, counted where it happens so that removed work shows up in the output.
struct Counters {
  long long steps = 0;  // repeats executed
  long long launches = 0;
  long long bytes_copied = 0;
};

long parse_positive(const char* text, const char* what) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "error: %s must be a positive integer, got '%s'\n", what, text);
    std::exit(2);
  }
  return v;
}

// Deterministic value in [0, 1) for (a, b): a small integer hash shared by every variant.
double noise(uint64_t a, uint64_t b) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);
}

// Channel r has a DC offset in [-8, 8] and a noise amplitude in [0.05, 1.05).
std::vector<float> make_samples(int rows, int cols) {
  std::vector<float> a(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    const double offset = static_cast<double>(r % 17) - 8.0;
    const double amp = 0.05 + noise(static_cast<uint64_t>(r), ~0ull);
    for (int c = 0; c < cols; ++c)
      a[static_cast<size_t>(r) * cols + c] = static_cast<float>(offset + amp * noise(static_cast<uint64_t>(r), static_cast<uint64_t>(c)));
  }
  return a;
}

// Sum over the 32 lanes of a warp (butterfly), so every lane ends up with the total.
__device__ double warp_sum(double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// One warp per channel: lane l reads samples l, l + 32, ..., so each load of the warp is a
// contiguous, coalesced 128-byte segment; the lanes' partial sums are then combined.
__global__ void row_means(const float* a, double* mean, int rows, int cols) {
  const int r = (blockIdx.x * blockDim.x + threadIdx.x) / 32;  // the same for all lanes of a warp
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // whole warps only
  const float* row = a + static_cast<size_t>(r) * cols;
  double s = 0.0;
  for (int c = lane; c < cols; c += 32) s += row[c];
  s = warp_sum(s);
  if (lane == 0) mean[r] = s / cols;
}

// Second pass over the data: population standard deviation about the mean.
__global__ void row_stddevs(const float* a, const double* mean, double* sd, int rows, int cols) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const double mu = mean[r];
  double s = 0.0;
  for (int c = 0; c < cols; ++c) {
    const double d = a[static_cast<size_t>(r) * cols + c] - mu;
    s += d * d;
  }
  sd[r] = sqrt(s / cols);
}

// Serial two-pass statistics of one row, for the self-check.
void reference_row(const std::vector<float>& a, int r, int cols, double& mean, double& sd) {
  double s = 0.0;
  for (int c = 0; c < cols; ++c) s += a[static_cast<size_t>(r) * cols + c];
  mean = s / cols;
  double q = 0.0;
  for (int c = 0; c < cols; ++c) {
    const double d = a[static_cast<size_t>(r) * cols + c] - mean;
    q += d * d;
  }
  sd = std::sqrt(q / cols);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <rows> <cols> <repeats>\n", argv[0]);
    return 2;
  }
  const int rows = static_cast<int>(parse_positive(argv[1], "rows"));
  const int cols = static_cast<int>(parse_positive(argv[2], "cols"));
  const int repeats = static_cast<int>(parse_positive(argv[3], "repeats"));
  std::printf("rowstats: channels %d, samples %d, repeats %d\n", rows, cols, repeats);

  const std::vector<float> samples = make_samples(rows, cols);
  Counters work;
  const size_t data_bytes = samples.size() * sizeof(float), stat_bytes = static_cast<size_t>(rows) * sizeof(double);
  float* d_a = nullptr;
  double *d_mean = nullptr, *d_sd = nullptr;
  CUDA_CHECK(cudaMalloc(&d_a, data_bytes));
  CUDA_CHECK(cudaMalloc(&d_mean, stat_bytes));
  CUDA_CHECK(cudaMalloc(&d_sd, stat_bytes));
  CUDA_CHECK(cudaMemcpy(d_a, samples.data(), data_bytes, cudaMemcpyHostToDevice));
  work.bytes_copied += data_bytes;

  std::vector<double> mean(rows), sd(rows);
  const int blocks = (rows + kThreads - 1) / kThreads;
  const int warp_blocks = (rows + kThreads / 32 - 1) / (kThreads / 32);  // one warp per row
  int quiet = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < repeats; ++rep) {
    row_means<<<warp_blocks, kThreads>>>(d_a, d_mean, rows, cols);
    CUDA_CHECK(cudaGetLastError());
    ++work.launches;
    row_stddevs<<<blocks, kThreads>>>(d_a, d_mean, d_sd, rows, cols);
    CUDA_CHECK(cudaGetLastError());
    ++work.launches;

    // Per-frame report: statistics back to the host, quiet channels counted there.
    CUDA_CHECK(cudaMemcpy(mean.data(), d_mean, stat_bytes, cudaMemcpyDeviceToHost));
    work.bytes_copied += stat_bytes;
    CUDA_CHECK(cudaMemcpy(sd.data(), d_sd, stat_bytes, cudaMemcpyDeviceToHost));
    work.bytes_copied += stat_bytes;
    quiet = 0;
    for (int r = 0; r < rows; ++r) quiet += sd[r] < kQuietStd ? 1 : 0;
    ++work.steps;
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  const double loop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CUDA_CHECK(cudaFree(d_a));
  CUDA_CHECK(cudaFree(d_mean));
  CUDA_CHECK(cudaFree(d_sd));

  double mean_total = 0.0, sd_total = 0.0, checksum = 0.0;
  for (int r = 0; r < rows; ++r) {
    mean_total += mean[r];
    sd_total += sd[r];
    checksum += (r % 7 + 1) * (mean[r] + sd[r]);
  }
  std::printf("mean_total = %.10e\n", mean_total);
  std::printf("stddev_total = %.10e\n", sd_total);
  std::printf("quiet_channels = %d\n", quiet);
  std::printf("checksum = %.10e\n", checksum);
  std::printf("loop time: %.3f s\n", loop_s);
  std::printf("work: steps=%lld launches=%lld bytes_copied=%lld\n", work.steps, work.launches, work.bytes_copied);

  // Self-check: a sample of channels against a serial two-pass reference.
  bool ok = work.steps == repeats;
  const int samples_checked = std::min(rows, 16);
  for (int k = 0; k < samples_checked; ++k) {
    const int r = static_cast<int>((static_cast<long long>(k) * rows) / samples_checked);
    double m = 0.0, s = 0.0;
    reference_row(samples, r, cols, m, s);
    if (!(std::fabs(mean[r] - m) <= 1e-9 * (std::fabs(m) + 1.0) && std::fabs(sd[r] - s) <= 1e-9 * s + 1e-12)) ok = false;
  }
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
