#!/usr/bin/env bash
# Builds benches/micro/bipolar.cu with the library sources it needs (bipolar plane GEMM, activation kernel, int8
# core) for sm_90a on the GPU machine, compiling the translation units in parallel, then runs it: `check`, `bench`,
# `suite` (JSON lines for bipolar_report.py), `ws` (the warp-specialized kernel: checks + acceptance timings), `wsq`
# (ws checks + ws-only timings: TMA-store epilogue, direct stores, multicast), `wst` (those timings only), `wsc` (the
# ws checks only: one CTA per SM, multicast, split-X), `wsm` (ws timings: multicast vs one CTA per SM, split-X, the
# defaults), `wsx` (ws v4: the transposed split-X tile LOWBIT_BIP_WS_SPLIT=2 for W4A1, its checks and timings against
# split-X), `wspp` (ws v5: ping-pong consumers LOWBIT_BIP_WS_PINGPONG, checks + timings against the ws v3 kernel),
# `wsppt` (those timings only), `wsv6` / `wsv6c` / `wsv6t` (ws v6: the ping-pong K-loop / ring variants
# LOWBIT_BIP_WS_PP_KLOOP and the tile order, checks + timings with NVML clocks / checks only / timings only; the
# variants were removed after ws v7, so every LOWBIT_BIP_WS_PP_KLOOP value now runs ws v5's K loop), `wsv7c` / `wsv7t`
# (ws v7: ping-pong for the multi-plane pairs, checks / cool-card timings with NVML clocks), `ncu1` / `ncu2` / `ncupp` (one W1A1 8192^3 / W4A1 M = 4096 call with the defaults /
# with ping-pong forced, for ncu) or
# `all` = check + bench (default); several modes comma-separated.
# BIP_V3=1 also builds the v3 stage geometry and runs it with mode $2 (default bench); BIP_WS_SECTOR=1 the ws kernel
# with whole-sector f16 stores (LOWBIT_BIP_WS_SECTOR_STORES) and runs its `ws` mode. Needs nvcc and libcublasLt.so.13 / libcublas.so.13 (found under site-packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-nvcc}
OUT=${BIP_BUILD:-/tmp/bip_micro}
mkdir -p "$OUT"
FLAGS=(-O3 -std=c++17 --expt-relaxed-constexpr -Xptxas=--warn-on-spills -gencode=arch=compute_90a,code=sm_90a -Ikernels/include)
SRCS=(kernels/bipolar/inst_a.cu kernels/bipolar/inst_b.cu kernels/bipolar/inst_c.cu kernels/bipolar/inst_d.cu
      kernels/bipolar/bip_launch.cu kernels/bipolar/ws_planes.cu kernels/bipolar/bip_act_quant.cu kernels/int8/i8_launch.cu kernels/int8/inst_w8.cu
      kernels/int8/inst_w4.cu kernels/int8/stream.cu kernels/int8/ws_gemm.cu kernels/int8/ws_pdl.cu
      benches/micro/bipolar.cu)
pids=()
for s in "${SRCS[@]}"; do
  "$NVCC" "${FLAGS[@]}" -c "$s" -o "$OUT/$(basename "$s" .cu).o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$NVCC" -gencode=arch=compute_90a,code=sm_90a "$OUT"/*.o -o "$OUT/bipolar" -ldl -lpthread
if [ -n "${BIP_V3:-}" ]; then  # the same program with v3's stage geometry, for a same-run comparison
  mkdir -p "$OUT/v3"
  pids=()
  for s in kernels/bipolar/inst_a.cu kernels/bipolar/inst_b.cu kernels/bipolar/inst_c.cu kernels/bipolar/inst_d.cu; do
    "$NVCC" "${FLAGS[@]}" -DLOWBIT_BIP_GEOMETRY_V3 -c "$s" -o "$OUT/v3/$(basename "$s" .cu).o" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  objs=()
  for o in "$OUT"/*.o; do case "$(basename "$o")" in inst_[abcd].o) objs+=("$OUT/v3/$(basename "$o")");; *) objs+=("$o");; esac; done
  "$NVCC" -gencode=arch=compute_90a,code=sm_90a "${objs[@]}" -o "$OUT/bipolar_v3" -ldl
fi
if [ -n "${BIP_WS_SECTOR:-}" ]; then  # the ws kernel with whole-sector f16 stores (experiment), for a same-run comparison
  "$NVCC" "${FLAGS[@]}" -DLOWBIT_BIP_WS_SECTOR_STORES -c kernels/bipolar/ws_planes.cu -o "$OUT/ws_sector.o"
  objs=()
  for o in "$OUT"/*.o; do case "$(basename "$o")" in ws_planes.o|ws_sector.o) ;; *) objs+=("$o");; esac; done
  "$NVCC" -gencode=arch=compute_90a,code=sm_90a "${objs[@]}" "$OUT/ws_sector.o" -o "$OUT/bipolar_ws_sector" -ldl
fi
if [ -z "${BIP_NO_LIBS:-}" ]; then
  for d in $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    for sub in nvidia/cu13/lib nvidia/cublas/lib torch/lib; do
      [ -e "$d/$sub/libcublasLt.so.13" ] && export LD_LIBRARY_PATH="$d/$sub:${LD_LIBRARY_PATH:-}"
    done
  done
fi
MODES=${1:-all}
for mode in ${MODES//,/ }; do "$OUT/bipolar" "$mode"; done  # e.g. check,suite
if [ -n "${BIP_V3:-}" ]; then echo "=== v3 geometry (same run) ==="; "$OUT/bipolar_v3" "${2:-bench}"; fi
if [ -n "${BIP_WS_SECTOR:-}" ]; then echo "=== ws sector stores (same run) ==="; "$OUT/bipolar_ws_sector" ws; fi
