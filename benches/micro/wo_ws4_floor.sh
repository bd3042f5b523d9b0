#!/bin/bash
# Builds the ws-W launch-floor probe (benches/micro/wo_ws4_floor.cu, weight-only NOTES.md "ws-floor") into $1 (default
# /tmp/wo_ws4_floor). Run from the repo root. NVCC: the nvcc to use; LDFLAGS: e.g. -L<cuda>/lib where nvcc does not find
# cudart_static. Then: $1/wo_ws4_floor check | ladder | stamps | carve (libcublas.so.13 on LD_LIBRARY_PATH).
set -e
O=${1:-/tmp/wo_ws4_floor}; mkdir -p $O
NVCC=${NVCC:-nvcc}
NV="$NVCC -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Ikernels/include"
$NV -c kernels/weight_only/ws.cu -o $O/ws.o &
$NV -c kernels/weight_only/ws4_c.cu -o $O/ws4c_lib.o &
for p in 1 6; do
  $NV -c -DFLOOR_PART=$p benches/micro/wo_ws4_floor.cu -o $O/floor_p$p.o -Xptxas -v 2> $O/ptxas_p$p.txt &
done
$NV -c -DFLOOR_PART=0 -Ibenches/micro benches/micro/wo_ws4_floor.cu -o $O/main.o &
wait
$NV ${LDFLAGS:-} $O/ws.o $O/ws4c_lib.o $O/floor_p*.o $O/main.o -o $O/wo_ws4_floor -ldl -lpthread
N=$(cat $O/ptxas_p*.txt | grep -c 'Compiling entry')
Z=$(cat $O/ptxas_p*.txt | grep -c ' 0 bytes spill stores, 0 bytes spill loads')
echo "probe instances: $N compiled, $Z without spills"
cat $O/ptxas_p*.txt | grep "spill" | grep -v " 0 bytes spill stores, 0 bytes spill loads" || echo "no spills"
