// nbody-forces (CUDA): direct-summation gravitational N-body integration.
//
// n bodies with softened Newtonian gravity (G = 1) start in a uniform sphere and are advanced
// with the kick-drift-kick leapfrog scheme. The total energy is monitored every step; its
// largest relative drift, the final energies and the moment of inertia are reported.
//
// Usage: nbody-forces <bodies> <steps>
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

constexpr double kDt = 5e-4;         // time step
constexpr double kSoftening = 0.05;  // Plummer softening length
constexpr int kThreads = 128;

// Work actually done, counted where it happens so that removed work shows up in the output.
struct Counters {
  long long steps = 0;
  long long launches = 0;
  long long bytes_copied = 0;
};

struct Bodies {
  std::vector<double> x, y, z, vx, vy, vz, m;
  explicit Bodies(int n) : x(n), y(n), z(n), vx(n), vy(n), vz(n), m(n) {}
  int size() const { return static_cast<int>(m.size()); }
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

// splitmix64: small, portable and identical in every variant of the program.
struct Rng {
  uint64_t s;
  double uniform() {  // [0, 1)
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
  }
};

// Uniform sphere of radius 1, total mass 1 (masses vary by +-50%), small random velocities,
// centre-of-mass velocity removed.
Bodies initial_bodies(int n) {
  Bodies b(n);
  Rng rng{20240611ull};
  double mass_sum = 0.0;
  for (int i = 0; i < n; ++i) {
    double px, py, pz;
    do {
      px = 2.0 * rng.uniform() - 1.0;
      py = 2.0 * rng.uniform() - 1.0;
      pz = 2.0 * rng.uniform() - 1.0;
    } while (px * px + py * py + pz * pz > 1.0);
    b.x[i] = px;
    b.y[i] = py;
    b.z[i] = pz;
    b.vx[i] = 0.8 * rng.uniform() - 0.4;
    b.vy[i] = 0.8 * rng.uniform() - 0.4;
    b.vz[i] = 0.8 * rng.uniform() - 0.4;
    b.m[i] = 0.5 + rng.uniform();
    mass_sum += b.m[i];
  }
  double px = 0.0, py = 0.0, pz = 0.0;
  for (int i = 0; i < n; ++i) {
    b.m[i] /= mass_sum;
    px += b.m[i] * b.vx[i];
    py += b.m[i] * b.vy[i];
    pz += b.m[i] * b.vz[i];
  }
  for (int i = 0; i < n; ++i) {
    b.vx[i] -= px;
    b.vy[i] -= py;
    b.vz[i] -= pz;
  }
  return b;
}

double kinetic_energy(const Bodies& b) {
  double k = 0.0;
  for (int i = 0; i < b.size(); ++i) k += 0.5 * b.m[i] * (b.vx[i] * b.vx[i] + b.vy[i] * b.vy[i] + b.vz[i] * b.vz[i]);
  return k;
}

// Sum of m |r|^2: sensitive to every step of the trajectory.
double moment_of_inertia(const Bodies& b) {
  double s = 0.0;
  for (int i = 0; i < b.size(); ++i) s += b.m[i] * (b.x[i] * b.x[i] + b.y[i] * b.y[i] + b.z[i] * b.z[i]);
  return s;
}

// Bodies per shared-memory tile: large tiles mean fewer block-wide barriers per pass.
constexpr int kTile = 2048;
constexpr size_t kTileBytes = 4 * static_cast<size_t>(kTile) * sizeof(double);

// Acceleration and potential energy of every body in one pass: each thread sums the pull of all
// other bodies and, from the same distances, its share of the potential energy. The bodies are
// processed in tiles of kTile: the block loads the positions and masses of a tile into shared
// memory once, and all its threads read them from there, in the same order as before.
__global__ void accelerations(const double* x, const double* y, const double* z, const double* m, double* ax,
                              double* ay, double* az, double* pe, int n, double softening) {
  extern __shared__ double tile[];  // x | y | z | m, kTile values each
  double* tx = tile;
  double* ty = tx + kTile;
  double* tz = ty + kTile;
  double* tm = tz + kTile;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const bool active = i < n;  // threads past the end still help to load the tiles
  const double soft2 = softening * softening;
  const double xi = active ? x[i] : 0.0, yi = active ? y[i] : 0.0, zi = active ? z[i] : 0.0;
  double sx = 0.0, sy = 0.0, sz = 0.0, p = 0.0;
  for (int base = 0; base < n; base += kTile) {
    for (int k = threadIdx.x; k < kTile; k += blockDim.x) {
      const int j = base + k;
      tx[k] = j < n ? x[j] : 0.0;
      ty[k] = j < n ? y[j] : 0.0;
      tz[k] = j < n ? z[j] : 0.0;
      tm[k] = j < n ? m[j] : 0.0;
    }
    __syncthreads();
    const int count = min(kTile, n - base);
    for (int k = 0; k < count; ++k) {
      if (base + k == i) continue;
      const double dx = tx[k] - xi;
      const double dy = ty[k] - yi;
      const double dz = tz[k] - zi;
      const double inv_r = rsqrt(dx * dx + dy * dy + dz * dz + soft2);
      const double mj_inv_r = tm[k] * inv_r;
      const double s = mj_inv_r * inv_r * inv_r;
      sx += s * dx;
      sy += s * dy;
      sz += s * dz;
      p -= mj_inv_r;
    }
    __syncthreads();
  }
  if (active) {
    ax[i] = sx;
    ay[i] = sy;
    az[i] = sz;
    pe[i] = 0.5 * m[i] * p;
  }
}

__global__ void kick(double* vx, double* vy, double* vz, const double* ax, const double* ay, const double* az, int n,
                     double h) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  vx[i] += h * ax[i];
  vy[i] += h * ay[i];
  vz[i] += h * az[i];
}

__global__ void drift(double* x, double* y, double* z, const double* vx, const double* vy, const double* vz, int n,
                      double h) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  x[i] += h * vx[i];
  y[i] += h * vy[i];
  z[i] += h * vz[i];
}

// Serial acceleration of one body, in the same form as the kernel, for the self-check.
void reference_acceleration(const Bodies& b, int i, double a[3]) {
  a[0] = a[1] = a[2] = 0.0;
  for (int j = 0; j < b.size(); ++j) {
    if (j == i) continue;
    const double dx = b.x[j] - b.x[i], dy = b.y[j] - b.y[i], dz = b.z[j] - b.z[i];
    const double r = std::sqrt(dx * dx + dy * dy + dz * dz + kSoftening * kSoftening);
    const double s = b.m[j] / (r * r * r);
    a[0] += s * dx;
    a[1] += s * dy;
    a[2] += s * dz;
  }
}

struct DeviceBodies {
  double *x, *y, *z, *vx, *vy, *vz, *m, *ax, *ay, *az, *pe;
};

void copy_to_host(std::vector<double>& dst, const double* src, Counters& work) {
  const size_t bytes = dst.size() * sizeof(double);
  CUDA_CHECK(cudaMemcpy(dst.data(), src, bytes, cudaMemcpyDeviceToHost));
  work.bytes_copied += bytes;
}

void copy_to_device(double* dst, const std::vector<double>& src, Counters& work) {
  const size_t bytes = src.size() * sizeof(double);
  CUDA_CHECK(cudaMemcpy(dst, src.data(), bytes, cudaMemcpyHostToDevice));
  work.bytes_copied += bytes;
}

double sum(const std::vector<double>& v) {
  double s = 0.0;
  for (double e : v) s += e;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <bodies> <steps>\n", argv[0]);
    return 2;
  }
  const int n = static_cast<int>(parse_positive(argv[1], "bodies"));
  const int steps = static_cast<int>(parse_positive(argv[2], "steps"));
  if (n < 2) {
    std::fprintf(stderr, "error: need at least 2 bodies\n");
    return 2;
  }
  std::printf("nbody-forces: bodies %d, steps %d, dt %.3e, softening %.3e\n", n, steps, kDt, kSoftening);

  Bodies b = initial_bodies(n);
  const Bodies start = b;
  Counters work;

  DeviceBodies d{};
  double** fields[] = {&d.x, &d.y, &d.z, &d.vx, &d.vy, &d.vz, &d.m, &d.ax, &d.ay, &d.az, &d.pe};
  for (double** f : fields) CUDA_CHECK(cudaMalloc(f, n * sizeof(double)));
  copy_to_device(d.x, b.x, work);
  copy_to_device(d.y, b.y, work);
  copy_to_device(d.z, b.z, work);
  copy_to_device(d.vx, b.vx, work);
  copy_to_device(d.vy, b.vy, work);
  copy_to_device(d.vz, b.vz, work);
  copy_to_device(d.m, b.m, work);

  const int blocks = (n + kThreads - 1) / kThreads;
  const auto t0 = std::chrono::steady_clock::now();

  accelerations<<<blocks, kThreads, kTileBytes>>>(d.x, d.y, d.z, d.m, d.ax, d.ay, d.az, d.pe, n, kSoftening);
  CUDA_CHECK(cudaGetLastError());
  ++work.launches;

  // Self-check input: initial accelerations of a sample of bodies.
  std::vector<double> ax0(n), ay0(n), az0(n), pe(n);
  copy_to_host(ax0, d.ax, work);
  copy_to_host(ay0, d.ay, work);
  copy_to_host(az0, d.az, work);
  copy_to_host(pe, d.pe, work);
  const double energy0 = kinetic_energy(b) + sum(pe);

  double drift_max = 0.0;
  for (int s = 0; s < steps; ++s) {
    kick<<<blocks, kThreads>>>(d.vx, d.vy, d.vz, d.ax, d.ay, d.az, n, 0.5 * kDt);
    CUDA_CHECK(cudaGetLastError());
    ++work.launches;
    drift<<<blocks, kThreads>>>(d.x, d.y, d.z, d.vx, d.vy, d.vz, n, kDt);
    CUDA_CHECK(cudaGetLastError());
    ++work.launches;
    accelerations<<<blocks, kThreads, kTileBytes>>>(d.x, d.y, d.z, d.m, d.ax, d.ay, d.az, d.pe, n, kSoftening);
    CUDA_CHECK(cudaGetLastError());
    ++work.launches;
    kick<<<blocks, kThreads>>>(d.vx, d.vy, d.vz, d.ax, d.ay, d.az, n, 0.5 * kDt);
    CUDA_CHECK(cudaGetLastError());
    ++work.launches;

    // Energy monitor: the potentials came with the forces (positions have not moved since);
    // velocities and potentials back to the host.
    copy_to_host(b.vx, d.vx, work);
    copy_to_host(b.vy, d.vy, work);
    copy_to_host(b.vz, d.vz, work);
    copy_to_host(pe, d.pe, work);
    const double energy = kinetic_energy(b) + sum(pe);
    drift_max = std::max(drift_max, std::fabs((energy - energy0) / energy0));
    ++work.steps;
  }
  copy_to_host(b.x, d.x, work);
  copy_to_host(b.y, d.y, work);
  copy_to_host(b.z, d.z, work);
  copy_to_host(b.vx, d.vx, work);
  copy_to_host(b.vy, d.vy, work);
  copy_to_host(b.vz, d.vz, work);
  copy_to_host(pe, d.pe, work);
  CUDA_CHECK(cudaDeviceSynchronize());
  const double loop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (double** f : fields) CUDA_CHECK(cudaFree(*f));

  const double kinetic = kinetic_energy(b), potential = sum(pe);
  std::printf("energy_initial = %.10e\n", energy0);
  std::printf("kinetic_final = %.10e\n", kinetic);
  std::printf("potential_final = %.10e\n", potential);
  std::printf("energy_drift_max = %.10e\n", drift_max);
  std::printf("checksum = %.10e\n", moment_of_inertia(b));
  std::printf("loop time: %.3f s\n", loop_s);
  std::printf("work: steps=%lld launches=%lld bytes_copied=%lld\n", work.steps, work.launches, work.bytes_copied);

  // Self-check: sampled initial accelerations match a serial reference, momentum stays zero,
  // and the leapfrog scheme keeps the energy within 0.1%.
  bool ok = work.steps == steps && drift_max < 1e-3;
  const int samples = std::min(n, 16);
  for (int k = 0; k < samples; ++k) {
    const int i = static_cast<int>((static_cast<long long>(k) * n) / samples);
    double a[3];
    reference_acceleration(start, i, a);
    const double err = std::sqrt((ax0[i] - a[0]) * (ax0[i] - a[0]) + (ay0[i] - a[1]) * (ay0[i] - a[1]) +
                                 (az0[i] - a[2]) * (az0[i] - a[2]));
    const double mag = std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
    if (!(err <= 1e-9 * mag + 1e-300)) ok = false;
  }
  double px = 0.0, py = 0.0, pz = 0.0, scale = 0.0;
  for (int i = 0; i < n; ++i) {
    px += b.m[i] * b.vx[i];
    py += b.m[i] * b.vy[i];
    pz += b.m[i] * b.vz[i];
    scale += b.m[i] * std::sqrt(b.vx[i] * b.vx[i] + b.vy[i] * b.vy[i] + b.vz[i] * b.vz[i]);
  }
  if (!(std::sqrt(px * px + py * py + pz * pz) <= 1e-9 * scale + 1e-15)) ok = false;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
