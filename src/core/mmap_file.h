// A read-only memory-mapped file. Checkpoints are mapped, never read into memory: the OS pages
// weights in on first touch and can drop them again under pressure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv4 {

class MmapFile {
 public:
  explicit MmapFile(const std::string& path);  // throws Error naming the path on failure
  ~MmapFile();
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv4
