#!/usr/bin/env bash
# The GPU campaign in one or two calls: sensor facts, the energy-measurement bench, the sandbox on
# a GPU, the CUDA demo with screening and confirmation, node sharing under the GPU lock, and
# third-party (HeCBench) profiles. Results land under $OUT (tables as .md/.json, raw files in
# campaign.tar.gz) and go into docs/benchmarks.md with the device, driver and date.
#
#   scripts/gpu_campaign.sh [SECTION ...]     sections: isolation probe energy sandbox demo sharing hecbench
#                                             paper (default: all, in that order)
#
# hecbench profiles the apps of datasets/hecbench.toml (paper sizes, 3 repeats); paper profiles
# the HeCBench apps of the LASSI-EE study (datasets/lassi-ee-paper.toml: its compiler line, its
# sizes, 1 repeat as the paper measured) that $HECBENCH holds. profile exits 2 when an app's
# check lines match nothing its CUDA output prints; those lines are collected in
# $OUT/hecbench-check-errors.txt (empty: every check line matched).
#
# Environment: OUT (output folder, default ./gpu-campaign-out); HECBENCH (a HeCBench checkout, for
# the hecbench and paper sections; default ./.gpu/hecbench); HECBENCH_APPS / PAPER_APPS (the apps
# to profile, to split the sections over calls); PAPER_TEST_SIZE=1 (the paper section at
# test_args); CAMPAIGN_BUDGET_S (stop starting sections after this many seconds, default 560, so
# that one call stays inside a 10-minute limit).
# Python packages the machine lacks may sit as wheels in ./.whl (pyseccomp among them: the sandbox's
# filter needs it, and libseccomp.so.2 on the machine) and a bubblewrap .deb in ./.gpu: both are
# installed into /tmp, never into the system.
# The campaign never changes the GPU's clocks, power limit or modes.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-campaign-out}
mkdir -p "$OUT/raw"
BUDGET=${CAMPAIGN_BUDGET_S:-560}
START=$(date +%s)
export PYTHONUNBUFFERED=1

log() { echo "[campaign $(( $(date +%s) - START ))s] $*" | tee -a "$OUT/campaign.log"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# ---- setup: wheels, bubblewrap, the package itself on PYTHONPATH
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH} || log "wheel install failed"
else
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
if ! command -v bwrap >/dev/null 2>&1 && ls .gpu/bubblewrap_*.deb >/dev/null 2>&1; then
  dpkg -x .gpu/bubblewrap_*.deb /tmp/bwrap-root && export PATH=/tmp/bwrap-root/usr/bin:$PATH
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' && ls .gpu/libseccomp2_*.deb >/dev/null 2>&1; then
  dpkg -x .gpu/libseccomp2_*.deb /tmp/seccomp-root \
    && export LD_LIBRARY_PATH=/tmp/seccomp-root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
mkdir -p /tmp/bin
printf '#!/bin/sh\nexec python3 -m lassi_batch "$@"\n' > /tmp/bin/lassi-batch && chmod +x /tmp/bin/lassi-batch
export PATH=/tmp/bin:$PATH
{
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,temperature.gpu,clocks.sm --format=csv,noheader
  nvcc --version | tail -2
  python3 --version; command -v bwrap && bwrap --version
  python3 -c "from lassi_batch.sandbox import syscall_filter as f; print('seccomp filter:', f.problem() or f.build().library)"
  git rev-parse --short HEAD 2>/dev/null || true
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(isolation probe energy sandbox demo sharing hecbench paper)

run_section() {
  local name=$1; shift
  local budget; budget=$(left)
  if [ "$budget" -lt 30 ]; then log "SKIP $name: campaign budget spent"; return; fi
  log "START $name (budget ${budget}s)"
  timeout --signal=TERM --kill-after=15 "$budget" "$@" > "$OUT/raw/$name.log" 2>&1
  local rc=$?
  log "END $name rc=$rc"
}

for s in "${sections[@]}"; do
  case $s in
    isolation)
      run_section isolation python3 scripts/check_isolation.py --out "$OUT/raw/isolation"
      cp "$OUT/raw/isolation/check_isolation.md" "$OUT/" 2>/dev/null ;;
    probe)
      run_section probe python3 scripts/probe_sensors.py --out "$OUT/raw/probe"
      cp "$OUT/raw/probe/probe_sensors.md" "$OUT/" 2>/dev/null ;;
    energy)
      run_section energy python3 scripts/bench_energy.py --platform cuda --out "$OUT/raw/energy" --budget-s 240
      cp "$OUT/raw/energy/bench_energy.md" "$OUT/" 2>/dev/null ;;
    sandbox)
      # Every build and run here goes through bubblewrap and its seccomp filter: the bench builds
      # with nvcc and starts the CUDA runtime (cudaFree) under it, the doctor builds and runs a
      # kernel under it. Either fails closed (and says why) where the filter cannot be loaded.
      if [ -f scripts/bench_sandbox.py ]; then
        run_section sandbox python3 scripts/bench_sandbox.py --platform cuda --out "$OUT/raw/sandbox"
        cp "$OUT/raw/sandbox/"*.md "$OUT/" 2>/dev/null
      else log "SKIP sandbox: scripts/bench_sandbox.py missing"; fi
      run_section sandbox-doctor env COLUMNS=200 lassi-batch doctor --platform cuda
      cp "$OUT/raw/sandbox-doctor.log" "$OUT/sandbox-doctor.txt" 2>/dev/null ;;
    demo)
      if bwrap --unshare-all --die-with-parent --ro-bind / / true 2>"$OUT/bwrap-check.txt"; then
        # shellcheck disable=SC2086
        run_section demo lassi-batch demo --platform cuda ${DEMO_FRESH---fresh} ${DEMO_ARGS:-} --out "${DEMO_OUT:-$OUT/raw/demo}"
      else
        # No usable bubblewrap on this machine: the demo would (rightly) refuse to run generated
        # code. Run the same study with the isolation explicitly waived, labelled as such.
        log "bubblewrap unusable here ($(head -c 200 "$OUT/bwrap-check.txt")): demo study with sandbox = \"none\""
        sed "s|^replay_path = \"transcripts\"|replay_path = \"$ROOT/datasets/examples/transcripts\"|; s|^path = \"|path = \"$ROOT/datasets/examples/|" \
          datasets/examples/demo-gpu.toml > /tmp/demo-gpu-nosandbox.toml
        printf '\n[container]\nsandbox = "none"\n' >> /tmp/demo-gpu-nosandbox.toml
        run_section demo lassi-batch run --study /tmp/demo-gpu-nosandbox.toml --platform cuda --out "$OUT/raw/demo"
      fi ;;
    sharing)
      if [ -f scripts/bench_batch.py ]; then
        run_section sharing python3 scripts/bench_batch.py throughput --platform cuda --trials "${SHARING_TRIALS:-2}" --delay "${SHARING_DELAY_S:-2}" --out "$OUT/raw/sharing"
        cp "$OUT/raw/sharing/"*.md "$OUT/" 2>/dev/null
      else log "SKIP sharing: scripts/bench_batch.py missing"; fi ;;
    hecbench)
      export HECBENCH=${HECBENCH:-$ROOT/.gpu/hecbench}
      if [ -f datasets/hecbench.toml ] && [ -d "$HECBENCH" ]; then
        for app in ${HECBENCH_APPS:-layout murmurhash3 pathfinder randomAccess floydwarshall chacha20 dense-embedding entropy extrema keogh}; do
          run_section "hecbench-$app" lassi-batch profile --study datasets/hecbench.toml --apps "$app" \
            --platform cuda --repeat 3 --out "$OUT/raw/hecbench-$app.h5"
        done
        grep -h "^error:" "$OUT"/raw/hecbench-*.log >> "$OUT/hecbench-check-errors.txt" 2>/dev/null || true
      else log "SKIP hecbench: datasets/hecbench.toml or \$HECBENCH missing"; fi ;;
    paper)
      export HECBENCH=${HECBENCH:-$ROOT/.gpu/hecbench}
      if [ -d "$HECBENCH/src" ]; then
        for app in ${PAPER_APPS:-randomAccess all-pairs-distance marchingCubes chacha20 entropy murmurhash3 floydwarshall layout dense-embedding jaccard keogh extrema pathfinder lid-driven-cavity}; do
          if [ ! -d "$HECBENCH/src/$app-cuda" ]; then log "SKIP paper-$app: not in \$HECBENCH"; continue; fi
          run_section "paper-$app" lassi-batch profile --study datasets/lassi-ee-paper.toml --apps "$app" \
            --repeat 1 ${PAPER_TEST_SIZE:+--test-size} --out "$OUT/raw/paper-$app.h5"
        done
        grep -h "^error:" "$OUT"/raw/paper-*.log >> "$OUT/hecbench-check-errors.txt" 2>/dev/null || true
      else log "SKIP paper: \$HECBENCH/src missing"; fi ;;
    *) log "unknown section $s" ;;
  esac
done

tar -C "$OUT" -czf "$OUT/campaign.tar.gz" raw campaign.log 2>/dev/null && rm -rf "$OUT/raw"
log "done"
