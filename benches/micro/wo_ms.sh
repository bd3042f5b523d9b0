#!/usr/bin/env bash
# Builds benches/micro/wo_ms.cu (v18): one object per format in parallel, then the driver; run from the repository root.
# NVCC (default: nvcc on PATH), ARCH (default sm_90a), OUT (default .): the binary lands in $OUT/wo_ms.
set -euo pipefail
NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90a}
OUT=${OUT:-.}
mkdir -p "$OUT/wo_ms_obj"
FLAGS=(-O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_${ARCH#sm_},code=$ARCH -Xptxas=--warn-on-spills -Ikernels/include)
pids=()
for f in 0 1 2 3 4 5 6; do
    "$NVCC" "${FLAGS[@]}" -DWO_MS_FMT=$f -c benches/micro/wo_ms.cu -o "$OUT/wo_ms_obj/f$f.o" &
    pids+=($!)
done
"$NVCC" "${FLAGS[@]}" -DWO_MS_MAIN -c benches/micro/wo_ms.cu -o "$OUT/wo_ms_obj/main.o" &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
"$NVCC" -gencode=arch=compute_${ARCH#sm_},code=$ARCH "$OUT"/wo_ms_obj/*.o -o "$OUT/wo_ms" -ldl
