// This machine's memory as Linux reports it (/proc/meminfo), for `dsv4 info` to say whether a
// model fits; and how the process keeps what it frees.
#pragma once

namespace dsv4 {

struct MachineMemory {
  double total = 0, available = 0;  // bytes; 0 when unknown
};
MachineMemory machine_memory();

// Freed memory stays with the process for the next allocation instead of going back to the
// kernel: blocks up to 32 MB come from the heap, whose free top is not trimmed. For training,
// whose every step allocates and frees the same buffers: handing them back made the kernel
// fault in and zero their pages again, step after step (a tenth of a training step). glibc
// only; elsewhere a no-op.
void keep_freed_memory();

}  // namespace dsv4
