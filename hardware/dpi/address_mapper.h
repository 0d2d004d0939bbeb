// Maps a transaction index to HBM2 coordinates (RoBaRaCoCh or ChRaBaRoCo).
#ifndef SPATTEN_DPI_ADDRESS_MAPPER_H
#define SPATTEN_DPI_ADDRESS_MAPPER_H

#include <cstdint>

#include "dram_config.h"

namespace spatten::dram {

/// Where one column access lands.
struct DramCoord {
  int channel = 0;
  int pseudoChannel = 0;
  int bankGroup = 0;
  int bank = 0;
  int row = 0;
  int column = 0;  ///< access (prefetch-sized) column
};

/// Slices a transaction index into level fields. Field order, low bits first:
///  - RoBaRaCoCh: channel, column, pseudochannel, bankgroup, bank, row
///  - ChRaBaRoCo: column, row, bank, bankgroup, pseudochannel, channel
/// (the names list fields from the most significant end, as in Ramulator2).
class AddressMapper {
 public:
  AddressMapper(const Organization& org, MapperKind kind);
  DramCoord map(uint64_t index) const;
  /// Inverse of map() (for tests and trace generation).
  uint64_t unmap(const DramCoord& c) const;
  /// Number of distinct transaction indices.
  uint64_t capacity() const { return uint64_t(1) << totalBits_; }

 private:
  MapperKind kind_;
  int chBits_, pchBits_, bgBits_, baBits_, roBits_, coBits_, totalBits_;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_ADDRESS_MAPPER_H
