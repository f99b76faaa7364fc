// CPU twin of stream_update.cu for dry runs of scripts/bench_energy.py on machines without a GPU.
//
//   stream_update <iterations> [mebibytes_per_array]
//
// Same update (y <- y * 0.999 + 0.5 * x) with OpenMP threads; same output line.
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <iterations> [mebibytes_per_array]\n", argv[0]);
    return 1;
  }
  long iterations = std::atol(argv[1]);
  long mib = argc > 2 ? std::atol(argv[2]) : 16;
  if (iterations < 0 || mib <= 0) {
    std::fprintf(stderr, "iterations must be >= 0 and size > 0\n");
    return 1;
  }
  const long n = mib * (1L << 20) / (long)sizeof(float);
  std::vector<float> x(n, 1.0f), y(n, 0.0f);
  for (long it = 0; it < iterations; ++it) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; ++i) y[i] = y[i] * 0.999f + 0.5f * x[i];
  }
  std::printf("iterations=%ld mib=%ld checksum=%.6f\n", iterations, mib, (double)y[0] + y[n - 1]);
  return 0;
}
