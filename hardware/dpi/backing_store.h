// The memory contents: a flat little-endian image file (file offset == byte address),
// mapped read-only and shared by all channels. Bytes beyond the file read as zero.
// A host that feeds the accelerator request by request (the harness's --stream mode)
// writes new bytes as its K/V cache grows (write): the first write copies the image
// into memory the store owns, which grows to the highest byte written.
#ifndef SPATTEN_DPI_BACKING_STORE_H
#define SPATTEN_DPI_BACKING_STORE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace spatten::dram {

class BackingStore {
 public:
  /// An all-zero memory (no image).
  BackingStore() = default;
  /// Maps `path` read-only; throws DramError when it cannot.
  explicit BackingStore(const std::string& path);
  ~BackingStore();
  BackingStore(const BackingStore&) = delete;
  BackingStore& operator=(const BackingStore&) = delete;

  /// Copies `len` bytes at byte address `addr` into `dst` (zero beyond the image).
  void read(uint64_t addr, size_t len, uint8_t* dst) const;
  /// Copies `len` bytes from `src` to byte address `addr` (the memory grows as needed).
  void write(uint64_t addr, size_t len, const uint8_t* src);
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;  ///< the mapped file, or owned_.data() after a write
  uint64_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> owned_;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_BACKING_STORE_H
