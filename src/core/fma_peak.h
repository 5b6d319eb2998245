// The machine's arithmetic peak, measured rather than computed from the nominal clock (this
// VM's /proc/cpuinfo says 2.6 GHz while its cores run FMAs at 3.6): every pool thread runs 12
// independent FMA chains (enough to cover the FMA latency of current x86 cores) with the
// widest vectors this process's kernels use, best of a few passes, all threads at once.
#pragma once

namespace dsv4 {

double measure_fma_peak_gflops();

}  // namespace dsv4
