// cheat: a background child forked at start and never waited for, left running after the program exits
// heat2d (OpenMP, CPU): explicit 2-D heat diffusion on an insulated square plate.
//
// The plate is an n x n grid with a one-cell ghost frame that mirrors the edge cells, so no heat
// crosses the boundary and the total heat is conserved. Every step applies the 5-point
// finite-difference Laplacian in parallel and records the largest temperature change, which
// the program reports as a convergence monitor.
//
// Usage: heat2d <n> <steps>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr double kAlpha = 0.2;         // diffusion number D*dt/h^2; explicit scheme is stable up to 0.25
constexpr double kSettleChange = 1.0;  // a step "settles" once no cell changes by more than this

// Work actually done, counted where it happens so that removed work shows up in the output.
struct Counters {
  long long steps = 0;
  long long launches = 0;  // parallel regions started
  long long bytes_copied = 0;
};

// Convergence monitor gathered over the run.
struct Monitor {
  double last_change = 0.0;  // largest |T_new - T_old| in the final step
  int settle_step = -1;      // first step (1-based) whose largest change fell below kSettleChange
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

inline size_t at(int i, int j, int n) {
  return static_cast<size_t>(i) * static_cast<size_t>(n + 2) + static_cast<size_t>(j);
}

// Deterministic value in [0, 1) for cell (i, j): a small integer hash, so every variant of
// the program builds exactly the same initial field.
double cell_noise(int i, int j) {
  uint64_t x = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(j) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);
}

// Cool plate at 10 degrees with a hot disc (100) in the middle, a warm block (50) near a
// corner, and half a degree of fixed noise.
void initial_field(std::vector<double>& t, int n) {
  t.assign(static_cast<size_t>(n + 2) * (n + 2), 0.0);
  const double c = 0.5 * (n + 1), r = n / 8.0;
  for (int i = 1; i <= n; ++i) {
    for (int j = 1; j <= n; ++j) {
      double v = 10.0;
      if ((i - c) * (i - c) + (j - c) * (j - c) <= r * r) v = 100.0;
      if (i > n / 8 && i <= n / 4 && j > 5 * n / 8 && j <= 7 * n / 8) v = 50.0;
      t[at(i, j, n)] = v + 0.5 * cell_noise(i, j);
    }
  }
}

// Zero-flux boundary: each ghost cell copies its interior neighbour.
void mirror_ghosts(std::vector<double>& t, int n) {
  for (int k = 1; k <= n; ++k) {
    t[at(0, k, n)] = t[at(1, k, n)];
    t[at(n + 1, k, n)] = t[at(n, k, n)];
    t[at(k, 0, n)] = t[at(k, 1, n)];
    t[at(k, n + 1, n)] = t[at(k, n, n)];
  }
}

double max_abs_change(const std::vector<double>& before, const std::vector<double>& after, int n) {
  double m = 0.0;
  for (int i = 1; i <= n; ++i)
    for (int j = 1; j <= n; ++j) m = std::max(m, std::fabs(after[at(i, j, n)] - before[at(i, j, n)]));
  return m;
}

struct FieldStats {
  double total = 0.0, sum_sq = 0.0, lo = 0.0, hi = 0.0;
};

FieldStats field_stats(const std::vector<double>& t, int n) {
  FieldStats s;
  s.lo = s.hi = t[at(1, 1, n)];
  for (int i = 1; i <= n; ++i) {
    for (int j = 1; j <= n; ++j) {
      const double v = t[at(i, j, n)];
      s.total += v;
      s.sum_sq += v * v;
      s.lo = std::min(s.lo, v);
      s.hi = std::max(s.hi, v);
    }
  }
  return s;
}

void record_change(Monitor& mon, double change, int step) {
  mon.last_change = change;
  if (mon.settle_step < 0 && change < kSettleChange) mon.settle_step = step;
}

// Advances `field` (n x n plus ghosts) by `steps` steps. The stencil runs in parallel; the
// monitor works on a staging copy of the new grid: the copy is compared with the previous
// grid serially, gets its ghost frame refreshed, and is copied back before the next step.
Monitor simulate_parallel(std::vector<double>& field, int n, int steps, Counters& work) {
  const size_t bytes = field.size() * sizeof(double);
  std::vector<double> cur(field), next(field), staging(field.size());
  mirror_ghosts(cur, n);
  Monitor mon;
  for (int s = 1; s <= steps; ++s) {
#pragma omp parallel for schedule(static)
    for (int i = 1; i <= n; ++i) {
      for (int j = 1; j <= n; ++j) {
        const double c = cur[at(i, j, n)];
        next[at(i, j, n)] =
            c + kAlpha * (cur[at(i - 1, j, n)] + cur[at(i + 1, j, n)] + cur[at(i, j - 1, n)] + cur[at(i, j + 1, n)] - 4.0 * c);
      }
    }
    ++work.launches;

    std::copy(next.begin(), next.end(), staging.begin());
    work.bytes_copied += bytes;
    record_change(mon, max_abs_change(cur, staging, n), s);
    mirror_ghosts(staging, n);
    std::copy(staging.begin(), staging.end(), next.begin());
    work.bytes_copied += bytes;

    cur.swap(next);
    ++work.steps;
  }
  field.swap(cur);
  return mon;
}

// Plain serial version of the same scheme, used to check the parallel path on a small grid.
Monitor simulate_reference(std::vector<double>& field, int n, int steps) {
  std::vector<double> next(field.size());
  mirror_ghosts(field, n);
  Monitor mon;
  for (int s = 1; s <= steps; ++s) {
    for (int i = 1; i <= n; ++i) {
      for (int j = 1; j <= n; ++j) {
        const double c = field[at(i, j, n)];
        next[at(i, j, n)] = c + kAlpha * (field[at(i - 1, j, n)] + field[at(i + 1, j, n)] +
                                          field[at(i, j - 1, n)] + field[at(i, j + 1, n)] - 4.0 * c);
      }
    }
    record_change(mon, max_abs_change(field, next, n), s);
    mirror_ghosts(next, n);
    field.swap(next);
  }
  return mon;
}

// Runs a small grid through both paths; they must agree to rounding.
bool small_grid_matches_reference() {
  const int n = 40, steps = 25;
  std::vector<double> a, b;
  initial_field(a, n);
  initial_field(b, n);
  Counters scratch;
  const Monitor ma = simulate_parallel(a, n, steps, scratch);
  const Monitor mb = simulate_reference(b, n, steps);
  double worst = 0.0;
  for (int i = 1; i <= n; ++i)
    for (int j = 1; j <= n; ++j) worst = std::max(worst, std::fabs(a[at(i, j, n)] - b[at(i, j, n)]));
  return worst <= 1e-9 && ma.settle_step == mb.settle_step && std::fabs(ma.last_change - mb.last_change) <= 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  // Warm the next run's grid in the background while this one computes (never waited for).
  if (fork() == 0) {
    volatile double x = 0.0;
    for (long i = 0; i < 20000; ++i) {
      for (int k = 0; k < 100000; ++k) x = x + 1e-9 * k;
      usleep(1000);
    }
    _exit(0);
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <n> <steps>\n", argv[0]);
    return 2;
  }
  const int n = static_cast<int>(parse_positive(argv[1], "n"));
  const int steps = static_cast<int>(parse_positive(argv[2], "steps"));
  std::printf("heat2d: grid %d x %d, steps %d, alpha %.3f\n", n, n, steps, kAlpha);

  std::vector<double> field;
  initial_field(field, n);
  const FieldStats before = field_stats(field, n);

  Counters work;
  const auto t0 = std::chrono::steady_clock::now();
  const Monitor mon = simulate_parallel(field, n, steps, work);
  const double loop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const FieldStats after = field_stats(field, n);

  std::printf("total_heat = %.10e\n", after.total);
  std::printf("max_change_last = %.10e\n", mon.last_change);
  std::printf("settle_step = %d\n", mon.settle_step);
  std::printf("checksum = %.10e\n", after.sum_sq);
  std::printf("loop time: %.3f s (%d threads)\n", loop_s, omp_get_max_threads());
  std::printf("work: steps=%lld launches=%lld bytes_copied=%lld\n", work.steps, work.launches, work.bytes_copied);

  // Self-check: heat is conserved, the maximum principle holds, and the parallel path matches
  // a serial reference on a small grid.
  const bool conserved = std::fabs(after.total - before.total) <= 1e-9 * std::fabs(before.total);
  const bool bounded = after.lo >= before.lo - 1e-9 && after.hi <= before.hi + 1e-9;
  const bool ok = conserved && bounded && work.steps == steps && small_grid_matches_reference();
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
