// POSIX mmap of a whole file, read-only; or the file read into huge-page anonymous memory.
#include "core/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace dsv4 {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// The file's bytes in anonymous memory (rounded up to whole huge pages), read-only.
uint8_t* read_into_ram(int fd, const std::string& path, size_t size, size_t& mapped) {
  mapped = (size + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  DSV4_CHECK(p != MAP_FAILED, path, ": cannot get ", mapped >> 20, " MiB of memory to hold it: ", std::strerror(errno),
             " (--mmap maps the file instead)");
  uint8_t* data = static_cast<uint8_t*>(p);
  ::madvise(p, mapped, MADV_HUGEPAGE);  // a hint: without THP the copy still works, on 4 KiB pages
  for (size_t done = 0; done < size;) {
    const ssize_t got = ::pread(fd, data + done, std::min<size_t>(size - done, size_t(1) << 30), static_cast<off_t>(done));
    if (got <= 0) {
      const int e = got < 0 ? errno : EIO;
      ::munmap(p, mapped);
      fail(path, ": read failed after ", done, " of ", size, " bytes: ", std::strerror(e));
    }
    done += static_cast<size_t>(got);
  }
  ::mprotect(p, mapped, PROT_READ);
  return data;
}

}  // namespace

MmapFile::MmapFile(const std::string& path, Residency residency) : path_(path), residency_(residency) {
  int fd = ::open(path.c_str(), O_RDONLY);
  DSV4_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(e));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0 && residency == Residency::ram) {
    try {
      data_ = read_into_ram(fd, path, size_, mapped_size_);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
  } else if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    DSV4_CHECK(p != MAP_FAILED, path, ": mmap failed: ", std::strerror(e));
    data_ = static_cast<const uint8_t*>(p);
    mapped_size_ = size_;
  } else {
    ::close(fd);
  }
}

MmapFile::~MmapFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), mapped_size_);
}

}  // namespace dsv4
