#!/usr/bin/env bash
# Builds benches/micro/i8_stream.cu with the int8 core's sources for sm_90a (translation units in parallel) on the
# GPU machine and runs it: modes `check`, `bench`, `sweep`, comma-separated (default check,bench); with I8S_PROBE=1
# also `probe` and `one <w8|w4|w4g128|bip2> M N K` (the ncu target). Needs nvcc
# (NVCC=...) and libcublasLt.so.13 / libcublas.so.13 (found under site-packages, as bipolar.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-nvcc}
OUT=${I8S_BUILD:-/tmp/i8_stream_micro}
mkdir -p "$OUT"
FLAGS=(-O3 -std=c++17 --expt-relaxed-constexpr -Xptxas=--warn-on-spills -gencode=arch=compute_90a,code=sm_90a -Ikernels/include)
# I8S_PROBE=1: the timing probes of stream.cu and the harness's `probe` / `one` modes (NOTES v13); not for the bench.
[ "${I8S_PROBE:-0}" = 1 ] && FLAGS+=(-DLOWBIT_STREAM_PROBE)
SRCS=(kernels/int8/i8_launch.cu kernels/int8/stream.cu kernels/int8/inst_w8.cu kernels/int8/inst_w4.cu
      kernels/int8/ws_gemm.cu kernels/int8/ws_pdl.cu benches/micro/i8_stream.cu)
pids=()
for s in "${SRCS[@]}"; do
  "$NVCC" "${FLAGS[@]}" -c "$s" -o "$OUT/$(basename "$s" .cu).o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$NVCC" -gencode=arch=compute_90a,code=sm_90a "$OUT"/*.o -o "$OUT/i8_stream" -ldl
for d in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
  for sub in nvidia/cu13/lib nvidia/cublas/lib torch/lib; do
    [ -e "$d/$sub/libcublasLt.so.13" ] && export LD_LIBRARY_PATH="$d/$sub:${LD_LIBRARY_PATH:-}"
  done
done
"$OUT/i8_stream" "${1:-check,bench}"
