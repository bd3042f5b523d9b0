#!/bin/bash
# Builds the ws4-C harness (benches/micro/wo_ws4_c.cu) into $1 (default /tmp/wo_ws4_c). Run from the repo root.
# NVCC: the nvcc to use; LDFLAGS: e.g. -L<cuda>/lib where nvcc does not find cudart_static. Then: $1/wo_ws4_c check | bench.
set -e
O=${1:-/tmp/wo_ws4_c}; mkdir -p $O
NVCC=${NVCC:-nvcc}
NV="$NVCC -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Ikernels/include"
$NV -c kernels/weight_only/ws.cu -o $O/ws.o &
$NV -c kernels/weight_only/ws4_c.cu -o $O/ws4c_lib.o -Xptxas -v 2> $O/ptxas_lib.txt &
for p in 1 2 3 4 5 6 7 9 10 11 12 13 14 15; do
  $NV -c -DLOWBIT_WS4_C_PART=$p -DLOWBIT_WS4_C_FN=lowbit_wo_ws4_c_int4_p$p kernels/weight_only/ws4_c.cu -o $O/ws4c_p$p.o -Xptxas -v 2> $O/ptxas_p$p.txt &
done
$NV -c -Ibenches/micro benches/micro/wo_ws4_c.cu -o $O/main.o &
wait
$NV ${LDFLAGS:-} $O/ws.o $O/ws4c_*.o $O/main.o -o $O/wo_ws4_c -ldl -lpthread
cat $O/ptxas_*.txt | grep -c "0 bytes spill stores, 0 bytes spill loads"
cat $O/ptxas_*.txt | grep "spill" | grep -v " 0 bytes spill stores, 0 bytes spill loads" || echo "no spills"
