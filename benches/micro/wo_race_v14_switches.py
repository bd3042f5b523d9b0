#!/usr/bin/env python3
"""Adds the -D switches of benches/micro/wo_race.cu's v14 bisection to a COPY of kernels/include/lowbit/wo_gemm.cuh.

Usage: python3 benches/micro/wo_race_v14_switches.py COPY/lowbit/wo_gemm.cuh   (never the library's own header)
  -DRC_FIRST=0   the prologue's weight / metadata loads as v13's ld.global.nc (ld_stream_u4 / _u2)
  -DRC_FIRST=2   ... as plain ld.global (no L1 qualifier);  -DRC_FIRST=3: ld.global.nc with a memory clobber
  -DRC_STAGE_DIV stage_x with v13's per-piece division (stage_x_div)
  -DRC_META_IDX  the metadata ring's refill indexed as in v13 (no running pointer)
  -DRC_NO_GDC    no griddepcontrol.launch_dependents / wait at all
Twelfth session (H100, compute-sanitizer 2025.3.1): racecheck 0 hazards with every switch and without
(kernels/weight_only/NOTES.md "Known issue").
"""
import sys

p = sys.argv[1]
s=open(p).read()
def rep(a,b,cnt=1):
    global s
    assert s.count(a)==cnt, (a, s.count(a))
    s=s.replace(a,b)
rep('''template <typename T, int ROWS, int NT = kThreads>
__device__ __forceinline__ void stage_x_div(''','''template <typename T, int ROWS, int NT>
__device__ __forceinline__ void stage_x_div(''')
rep('''__device__ __forceinline__ uint4 ld_first_u4(const void* p) {
    uint4 v;
    asm volatile("ld.global.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\\n"''','''#ifndef RC_FIRST
#define RC_FIRST 1
#endif
__device__ __forceinline__ uint4 ld_first_u4(const void* p) {
#if RC_FIRST == 0
    return ld_stream_u4(p);
#endif
    uint4 v;
#if RC_FIRST == 2
    asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];\\n"
#elif RC_FIRST == 3
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\\n"
#else
    asm volatile("ld.global.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\\n"
#endif''')
rep('''__device__ __forceinline__ uint2 ld_first_u2(const void* p) {
    uint2 v;''','''__device__ __forceinline__ uint2 ld_first_u2(const void* p) {
#if RC_FIRST == 0
    return ld_stream_u2(p);
#endif
    uint2 v;''')
rep('''__device__ __forceinline__ void stage_x(const Args& p, T* dst, int m0, int c0) {
    const T* x''','''__device__ __forceinline__ void stage_x_div(const Args& p, T* dst, int m0, int c0);
template <typename T, int ROWS, int NT = kThreads>
__device__ __forceinline__ void stage_x(const Args& p, T* dst, int m0, int c0) {
#ifdef RC_STAGE_DIV
    stage_x_div<T, ROWS, NT>(p, dst, m0, c0);
    return;
#endif
    const T* x''')
rep('''        nx3 = mleft > 0 ? __ldg(mnext) : make_uint2(0, 0);''','''#ifdef RC_META_IDX
        ++gi;
        nx3 = gi + 3 < p.groups ? __ldg(meta + size_t(gi + 3) * 8) : make_uint2(0, 0);
#else
        nx3 = mleft > 0 ? __ldg(mnext) : make_uint2(0, 0);
#endif''')
rep('''    asm volatile("griddepcontrol.launch_dependents;\\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\\n" ::: "memory");
#endif
    if constexpr (Fmt::kIsLut) {''','''#ifndef RC_NO_GDC
    asm volatile("griddepcontrol.launch_dependents;\\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\\n" ::: "memory");
#endif
#endif
    if constexpr (Fmt::kIsLut) {''')
open(p,'w').write(s)
