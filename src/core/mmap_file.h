// A read-only file in memory, one of two ways:
//   mapped: memory-mapped; the OS pages it in on first touch and can drop it again under
//           pressure (a model larger than RAM still runs, from the disk);
//   ram:    read into anonymous memory asked for in 2 MiB pages (transparent huge pages), then
//           made read-only. Decode streams GBs of weights per token: on 4 KiB pages that is a
//           TLB miss every 4 KiB, a page walk from memory on a VM (nested paging), and a
//           batched decode step on the flash-6l synth read its experts at a third of the
//           speed it does from huge pages (README "Batched serving").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv4 {

enum class Residency { mapped, ram };

class MmapFile {
 public:
  // Throws Error naming the path on failure (ram: also when the memory cannot be had).
  explicit MmapFile(const std::string& path, Residency residency = Residency::mapped);
  ~MmapFile();
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  Residency residency() const { return residency_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0, mapped_size_ = 0;  // mapped_size_: what munmap releases
  Residency residency_ = Residency::mapped;
};

}  // namespace dsv4
