#!/usr/bin/env bash
# Build and run the bundled example apps (datasets/examples/*), variant by variant.
#
#   bash scripts/check_examples.sh          # CPU: build + run with test_args; CUDA/HIP: build only
#   bash scripts/check_examples.sh --gpu    # also run the CUDA variants (test and measurement
#                                           # args) and print wall times, to calibrate `args`
#
# Environment: ARCH (nvcc -arch, default sm_90, or native with --gpu), HIP_ARCH (default gfx908),
# CXX (default g++), NVCC (default nvcc), HIPCC (default hipcc), PYTHON (default python3, >= 3.11).
# Exit status: 0 when every step that could run passed, 1 otherwise. Tools that are missing are
# reported as skipped, never as failures.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLES="$ROOT/datasets/examples"
GPU=0
for a in "$@"; do
  case "$a" in
    --gpu) GPU=1 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown option: $a (use --gpu)" >&2; exit 2 ;;
  esac
done

CXX="${CXX:-g++}"
NVCC="${NVCC:-nvcc}"
HIPCC="${HIPCC:-hipcc}"
PYTHON="${PYTHON:-python3}"
HIP_ARCH="${HIP_ARCH:-gfx908}"
HAVE_GPU=0
if [ "$GPU" = 1 ]; then
  if nvidia-smi -L >/dev/null 2>&1; then
    HAVE_GPU=1
  else
    echo "note: --gpu given but nvidia-smi finds no GPU; CUDA programs will only be built"
  fi
fi
if [ "$HAVE_GPU" = 1 ]; then ARCH="${ARCH:-native}"; else ARCH="${ARCH:-sm_90}"; fi

BUILD="$(mktemp -d "${TMPDIR:-/tmp}/check_examples.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT
FAILURES=0
SUMMARY=()

note() { SUMMARY+=("$(printf '%-14s %-5s %-28s %s' "$1" "$2" "$3" "$4")"); }
fail() { FAILURES=$((FAILURES + 1)); note "$1" "$2" "$3" "FAIL $4"; }

# Prints the app's run arguments ("args" or "test_args") from its app.toml, space separated.
toml_args() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    run = tomllib.load(fh).get("run", {})
vals = run.get(sys.argv[2], run.get("args", []))  # test_args defaults to args, as in config.py
print(" ".join(str(v) for v in vals))
EOF
}

# Runs a built program; checks exit status 0, a PASS line, a checksum line and a work line.
# Prints the wall time in seconds.
run_and_check() {  # app variant exe label args...
  local app="$1" variant="$2" exe="$3" label="$4"; shift 4
  local out="$BUILD/$app.$variant.$label.out" t0 t1 rc wall
  t0=$(date +%s.%N)
  "$exe" "$@" >"$out" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  if [ $rc -ne 0 ] || ! grep -qx 'PASS' "$out" || ! grep -q '^checksum = ' "$out" || ! grep -q '^work: steps=' "$out"; then
    fail "$app" "$variant" "run $label ($*)" "(exit $rc, ${wall} s)"
    sed 's/^/    | /' "$out" | tail -n 15
  else
    note "$app" "$variant" "run $label ($*)" "ok ${wall} s  $(grep '^checksum = ' "$out")"
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }

if ! "$PYTHON" -c 'import tomllib' 2>/dev/null; then
  echo "error: $PYTHON lacks tomllib (needs Python >= 3.11); set PYTHON=" >&2
  exit 2
fi

for dir in "$EXAMPLES"/*/; do
  app="$(basename "$dir")"
  [ -f "$dir/app.toml" ] || continue
  test_args="$(toml_args "$dir/app.toml" test_args)"
  args="$(toml_args "$dir/app.toml" args)"
  echo "== $app (test args: $test_args; measurement args: $args)"

  # OpenMP, CPU: must build without warnings and pass with the test arguments.
  if [ -f "$dir/main.cpp" ]; then
    if have "$CXX"; then
      exe="$BUILD/$app.cpu"
      if "$CXX" -std=c++17 -O3 -Wall -Wextra -Werror -fopenmp -o "$exe" "$dir/main.cpp" 2>"$exe.log"; then
        note "$app" "cpu" "build ($CXX)" "ok"
        # shellcheck disable=SC2086
        run_and_check "$app" "cpu" "$exe" "test" $test_args
      else
        fail "$app" "cpu" "build ($CXX)" ""
        sed 's/^/    | /' "$exe.log" | head -n 20
      fi
    else
      note "$app" "cpu" "build" "skipped ($CXX not found)"
    fi
  fi

  # CUDA: build; with --gpu on a GPU machine also run both argument sets.
  if [ -f "$dir/main.cu" ]; then
    if have "$NVCC"; then
      exe="$BUILD/$app.cuda"
      if "$NVCC" -std=c++17 -O3 -Xcompiler -Wall -arch="$ARCH" -o "$exe" "$dir/main.cu" 2>"$exe.log"; then
        note "$app" "cuda" "build (-arch=$ARCH)" "ok"
        if [ "$HAVE_GPU" = 1 ]; then
          # shellcheck disable=SC2086
          run_and_check "$app" "cuda" "$exe" "test" $test_args
          # shellcheck disable=SC2086
          run_and_check "$app" "cuda" "$exe" "measure" $args
        fi
      else
        fail "$app" "cuda" "build (-arch=$ARCH)" ""
        sed 's/^/    | /' "$exe.log" | head -n 20
      fi
    else
      note "$app" "cuda" "build" "skipped ($NVCC not found)"
    fi
  fi

  # HIP: build only (no AMD GPU expected here). Debian's hipcc needs HIP_PLATFORM=amd.
  if [ -f "$dir/main.hip.cpp" ]; then
    if have "$HIPCC"; then
      exe="$BUILD/$app.hip"
      if HIP_PLATFORM="${HIP_PLATFORM:-amd}" "$HIPCC" -std=c++17 -Wall -O3 --offload-arch="$HIP_ARCH" -o "$exe" "$dir/main.hip.cpp" 2>"$exe.log"; then
        note "$app" "hip" "build ($HIP_ARCH)" "ok"
      else
        fail "$app" "hip" "build ($HIP_ARCH)" ""
        sed 's/^/    | /' "$exe.log" | head -n 20
      fi
    else
      note "$app" "hip" "build" "skipped ($HIPCC not found)"
    fi
  fi
done

echo
printf '%-14s %-5s %-28s %s\n' "app" "kind" "step" "result"
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILURES" -gt 0 ]; then
  echo "$FAILURES step(s) failed"
  exit 1
fi
echo "all steps passed"
