// This machine's memory as Linux reports it (/proc/meminfo), for `dsv4 info` to say whether a
// model fits.
#pragma once

namespace dsv4 {

struct MachineMemory {
  double total = 0, available = 0;  // bytes; 0 when unknown
};
MachineMemory machine_memory();

}  // namespace dsv4
