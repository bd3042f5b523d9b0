#!/usr/bin/env bash
# Builds benches/micro/wo_small_m.cu for sm_90a (nvcc: NVCC=..., default the one on PATH) and runs it on the GPU
# machine: modes `check`, `bench`, `sweep`, `once NxK M v11|v12` (see the .cu header), several comma-separated
# (default check,sweep). Finds libcublas.so.13 (dlopen'ed for the cuBLAS f16 baseline) under site-packages or /.
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-nvcc}
BIN=${WO_SMALL_BIN:-/tmp/wo_small_m}
if [ ! -x "$BIN" ]; then
  "$NVCC" -O3 -std=c++17 -arch=sm_90a --expt-relaxed-constexpr -Xptxas=--warn-on-spills -Ikernels/include \
    benches/micro/wo_small_m.cu -o "$BIN" -ldl -lpthread
fi
CUB=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null | tr ' ' '\n' |
      while read -r d; do ls "$d"/nvidia/cu13/lib/libcublas.so.13 "$d"/nvidia/cublas/lib/libcublas.so.13 2>/dev/null || true; done | head -1)
[ -n "$CUB" ] || CUB=$(find / -xdev -name 'libcublas.so.13' 2>/dev/null | head -1 || true)
export LD_LIBRARY_PATH=$(dirname "$CUB"):${LD_LIBRARY_PATH:-}
IFS=',' read -ra MODES <<< "${1:-check,sweep}"
for m in "${MODES[@]}"; do "$BIN" "$m" "${@:2}"; done
