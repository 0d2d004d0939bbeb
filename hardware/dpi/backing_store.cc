#include "backing_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "dram_error.h"

namespace spatten::dram {

BackingStore::BackingStore(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw DramError("memory image " + path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw DramError("memory image " + path + ": cannot stat: " + std::strerror(e));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw DramError("memory image " + path + ": cannot mmap: " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
    mapped_ = true;
  }
  ::close(fd);
}

BackingStore::~BackingStore() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void BackingStore::write(uint64_t addr, size_t len, const uint8_t* src) {
  if (mapped_) {  // from now on the store owns its bytes
    owned_.assign(data_, data_ + size_);
    ::munmap(const_cast<uint8_t*>(data_), size_);
    mapped_ = false;
  }
  if (addr + len > owned_.size()) owned_.resize(addr + len, 0);
  std::memcpy(owned_.data() + addr, src, len);
  data_ = owned_.data();
  size_ = owned_.size();
}

void BackingStore::read(uint64_t addr, size_t len, uint8_t* dst) const {
  size_t n = 0;
  if (addr < size_) {
    n = static_cast<size_t>(std::min<uint64_t>(len, size_ - addr));
    std::memcpy(dst, data_ + addr, n);
  }
  if (n < len) std::memset(dst + n, 0, len - n);
}

}  // namespace spatten::dram
