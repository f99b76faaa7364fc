// murmurhash3 (OpenMP): 128-bit MurmurHash3 (x64 variant) of many keys of pseudo-random length.
// Usage: murmurhash3 <number of keys> <repeat>
//
// Keys are packed into one contiguous buffer with an offset table, so that the parallel loop
// reads memory in order; the loop over keys is scheduled dynamically because key lengths vary
// from 0 to 9999 bytes and a static split leaves threads idle at the end of every repeat.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <omp.h>

static inline uint64_t rotate_left(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int b = 0; b < 8; ++b) v |= static_cast<uint64_t>(p[b]) << (8 * b);
  return v;
}

static inline uint64_t avalanche(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

static void murmur3_x64_128(const uint8_t* data, uint32_t len, uint32_t seed, uint64_t* out) {
  const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
  uint64_t h1 = seed, h2 = seed;
  const uint32_t blocks = len / 16;
  for (uint32_t b = 0; b < blocks; ++b) {
    uint64_t k1 = load_le64(data + 16 * b), k2 = load_le64(data + 16 * b + 8);
    k1 *= c1; k1 = rotate_left(k1, 31); k1 *= c2; h1 ^= k1;
    h1 = rotate_left(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
    k2 *= c2; k2 = rotate_left(k2, 33); k2 *= c1; h2 ^= k2;
    h2 = rotate_left(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
  }
  const uint8_t* tail = data + 16 * blocks;
  const uint32_t rest = len & 15;
  uint64_t k1 = 0, k2 = 0;
  for (uint32_t t = rest; t > 8; --t) k2 ^= static_cast<uint64_t>(tail[t - 1]) << (8 * (t - 9));
  if (rest > 8) { k2 *= c2; k2 = rotate_left(k2, 33); k2 *= c1; h2 ^= k2; }
  for (uint32_t t = rest < 8 ? rest : 8; t > 0; --t) k1 ^= static_cast<uint64_t>(tail[t - 1]) << (8 * (t - 1));
  if (rest > 0) { k1 *= c1; k1 = rotate_left(k1, 31); k1 *= c2; h1 ^= k1; }
  h1 ^= len; h2 ^= len;
  h1 += h2; h2 += h1;
  h1 = avalanche(h1); h2 = avalanche(h2);
  h1 += h2; h2 += h1;
  out[0] = h1;
  out[1] = h2;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    printf("Usage: %s <number of keys> <repeat>\n", argv[0]);
    return 1;
  }
  const uint32_t num_keys = atoi(argv[1]);
  const uint32_t repeat = atoi(argv[2]);

  // Same keys as before: lengths from rand() seeded with 3, byte c of every key is c % 256.
  srand(3);
  std::vector<uint32_t> length(num_keys);
  std::vector<uint64_t> offset(num_keys + 1, 0);
  for (uint32_t i = 0; i < num_keys; ++i) {
    length[i] = rand() % 10000;
    offset[i + 1] = offset[i] + length[i];
  }
  std::vector<uint8_t> keys(offset[num_keys]);
  for (uint32_t i = 0; i < num_keys; ++i)
    for (uint32_t c = 0; c < length[i]; ++c) keys[offset[i] + c] = c % 256;

  // Host reference, one key after the other.
  std::vector<uint64_t> reference(2 * static_cast<size_t>(num_keys));
  for (uint32_t i = 0; i < num_keys; ++i) murmur3_x64_128(&keys[offset[i]], length[i], i, &reference[2 * i]);

  std::vector<uint64_t> hashes(2 * static_cast<size_t>(num_keys));
  auto start = std::chrono::steady_clock::now();
  for (uint32_t n = 0; n < repeat; ++n) {
    #pragma omp parallel for schedule(dynamic, 64)
    for (uint32_t i = 0; i < num_keys; ++i) murmur3_x64_128(&keys[offset[i]], length[i], i, &hashes[2 * i]);
  }
  auto end = std::chrono::steady_clock::now();
  auto time = std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count();
  printf("Average kernel execution time %f (s)\n", (time * 1e-9f) / repeat);

  bool error = false;
  for (size_t i = 0; i < hashes.size(); ++i)
    if (hashes[i] != reference[i]) { error = true; break; }
  printf(error ? "FAIL\n" : "SUCCESS\n");
  return 0;
}
