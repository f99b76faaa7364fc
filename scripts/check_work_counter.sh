#!/usr/bin/env bash
# On a CUDA machine: run an example's source and its work-cutting variant under the CUPTI work
# counter and print both counts (the second must show far fewer kernel launches).
#   bash scripts/check_work_counter.sh [APP] [ARGS...]     (default: heat2d 4096 15)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="${1:-heat2d}"; shift || true
ARGS=("${@:-4096 15}")
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
LIB="$(cd "$ROOT" && python3 -c 'from lassi_batch.sandbox import work_counter as w; l, why = w.build(); print(l or ""); import sys; sys.exit(0 if l else why)')"
python3 "$ROOT/scripts/make_transcripts.py" --export "$TMP/v" >/dev/null
for variant in source cut_work; do
  if [ "$variant" = source ]; then SRC="$ROOT/datasets/examples/$APP/main.cu"; else SRC="$TMP/v/$APP/cuda/cut_work.cu"; fi
  nvcc -std=c++17 -O3 -arch=native -o "$TMP/$variant" "$SRC"
  CUDA_INJECTION64_PATH="$LIB" LASSI_WORK_COUNTS="$TMP/$variant.json" "$TMP/$variant" ${ARGS[@]} | grep -E '^(work|PASS|FAIL)'
  echo "$variant: $(cat "$TMP/$variant.json")"
done
