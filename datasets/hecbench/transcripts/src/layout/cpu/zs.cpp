// layout (OpenMP): sums of 4096 groups of 4096 ints, stored first as an array of structures
// (one group after the other), then as a structure of arrays (element j of every group side by
// side). Usage: layout <repeat>
//
// Both sums run as plain host parallel loops. The structure-of-arrays pass walks the data row
// by row, so every thread adds contiguous runs of a row into its own slice of the results and
// the inner loop vectorizes; the original walked a whole row apart between consecutive reads.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>
#include <omp.h>

constexpr int kGroups = 4096;   // trees
constexpr int kPerGroup = 4096; // apples per tree

static bool matches(const std::vector<int>& got, const std::vector<int>& want) {
  for (int i = 0; i < kGroups; ++i)
    if (got[i] != want[i]) return false;
  return true;
}

int main(int argc, char* argv[]) {
  if (argc != 2) {
    printf("Usage: %s <repeat>\n", argv[0]);
    return 1;
  }
  const int iterations = atoi(argv[1]);
  if (iterations < 1) {
    std::cout << "Iterations cannot be 0 or negative. Exiting..\n";
    return -1;
  }
  const size_t elements = static_cast<size_t>(kGroups) * kPerGroup;

  // Reference: group i holds the values i*kPerGroup + j; sums wrap like the unsigned device sums.
  std::vector<int> reference(kGroups, 0);
  for (int i = 0; i < kGroups; ++i) {
    unsigned s = 0;
    for (int j = 0; j < kPerGroup; ++j) s += static_cast<unsigned>(i * kPerGroup + j);
    reference[i] = static_cast<int>(s);
  }

  std::vector<int> data(elements);
  std::vector<int> output(kGroups);

  // Array of structures: group i is the contiguous range [i*kPerGroup, (i+1)*kPerGroup).
  #pragma omp parallel for
  for (int i = 0; i < kGroups; ++i)
    for (int j = 0; j < kPerGroup; ++j) data[static_cast<size_t>(i) * kPerGroup + j] = i * kPerGroup + j;

  auto start = std::chrono::steady_clock::now();
  for (int n = 0; n < iterations; ++n) {
    #pragma omp parallel for
    for (int g = 0; g < kGroups; ++g) {
      const int* row = &data[static_cast<size_t>(g) * kPerGroup];
      unsigned s = 0;
      #pragma omp simd reduction(+ : s)
      for (int j = 0; j < kPerGroup; ++j) s += static_cast<unsigned>(row[j]);
      output[g] = static_cast<int>(s);
    }
  }
  auto end = std::chrono::steady_clock::now();
  auto time = std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count();
  std::cout << "Average kernel execution time (AoS): " << (time * 1e-3f) / iterations << " (us)\n";
  bool fail = !matches(output, reference);
  std::cout << (fail ? "FAIL\n" : "PASS\n");

  // Structure of arrays: element j of group i sits at j*kGroups + i.
  #pragma omp parallel for
  for (int j = 0; j < kPerGroup; ++j)
    for (int i = 0; i < kGroups; ++i) data[static_cast<size_t>(j) * kGroups + i] = j + i * kPerGroup;

  start = std::chrono::steady_clock::now();
  for (int n = 0; n < iterations; ++n) {
    #pragma omp parallel
    {
      // each thread owns a contiguous slice of the groups and sweeps all rows over it
      const int threads = omp_get_num_threads(), t = omp_get_thread_num();
      const int lo = static_cast<int>(static_cast<long>(kGroups) * t / threads);
      const int hi = static_cast<int>(static_cast<long>(kGroups) * (t + 1) / threads);
      std::vector<unsigned> acc(hi - lo, 0u);
      for (int j = 0; j < kPerGroup; ++j) {
        const int* row = &data[static_cast<size_t>(j) * kGroups];
        #pragma omp simd
        for (int g = lo; g < hi; ++g) acc[g - lo] += static_cast<unsigned>(row[g]);
      }
      for (int g = lo; g < hi; ++g) output[g] = static_cast<int>(acc[g - lo]);
    }
  }
  end = std::chrono::steady_clock::now();
  time = std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count();
  std::cout << "Average kernel execution time (SoA): " << (time * 1e-3f) / iterations << " (us)\n";
  fail = fail || !matches(output, reference);
  std::cout << (fail ? "FAIL\n" : "PASS\n");
  return 0;
}
