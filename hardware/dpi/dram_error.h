// Error type of the SpAtten DRAM model (hardware/dpi/).
#ifndef SPATTEN_DPI_DRAM_ERROR_H
#define SPATTEN_DPI_DRAM_ERROR_H

#include <stdexcept>
#include <string>

namespace spatten::dram {

/// Any error of the DRAM model: bad configuration, bad address, bad option.
/// The message names the file/key/address at fault and what was expected.
class DramError : public std::runtime_error {
 public:
  explicit DramError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_ERROR_H
