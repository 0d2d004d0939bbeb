#include "address_mapper.h"

namespace spatten::dram {
namespace {

int log2i(int v) {
  int b = 0;
  while ((1 << b) < v) ++b;
  return b;
}

int take(uint64_t* v, int bits) {
  int out = static_cast<int>(*v & ((uint64_t(1) << bits) - 1));
  *v >>= bits;
  return out;
}

void put(uint64_t* acc, int* shift, int value, int bits) {
  *acc |= uint64_t(value) << *shift;
  *shift += bits;
}

}  // namespace

AddressMapper::AddressMapper(const Organization& org, MapperKind kind)
    : kind_(kind),
      chBits_(log2i(org.channels)),
      pchBits_(log2i(org.pseudoChannels)),
      bgBits_(log2i(org.bankGroups)),
      baBits_(log2i(org.banks)),
      roBits_(log2i(org.rows)),
      coBits_(log2i(org.accessesPerRow())),
      totalBits_(chBits_ + pchBits_ + bgBits_ + baBits_ + roBits_ + coBits_) {}

DramCoord AddressMapper::map(uint64_t index) const {
  DramCoord c;
  uint64_t v = index;
  if (kind_ == MapperKind::RoBaRaCoCh) {
    c.channel = take(&v, chBits_);
    c.column = take(&v, coBits_);
    c.pseudoChannel = take(&v, pchBits_);
    c.bankGroup = take(&v, bgBits_);
    c.bank = take(&v, baBits_);
    c.row = take(&v, roBits_);
  } else {
    c.column = take(&v, coBits_);
    c.row = take(&v, roBits_);
    c.bank = take(&v, baBits_);
    c.bankGroup = take(&v, bgBits_);
    c.pseudoChannel = take(&v, pchBits_);
    c.channel = take(&v, chBits_);
  }
  return c;
}

uint64_t AddressMapper::unmap(const DramCoord& c) const {
  uint64_t acc = 0;
  int s = 0;
  if (kind_ == MapperKind::RoBaRaCoCh) {
    put(&acc, &s, c.channel, chBits_);
    put(&acc, &s, c.column, coBits_);
    put(&acc, &s, c.pseudoChannel, pchBits_);
    put(&acc, &s, c.bankGroup, bgBits_);
    put(&acc, &s, c.bank, baBits_);
    put(&acc, &s, c.row, roBits_);
  } else {
    put(&acc, &s, c.column, coBits_);
    put(&acc, &s, c.row, roBits_);
    put(&acc, &s, c.bank, baBits_);
    put(&acc, &s, c.bankGroup, bgBits_);
    put(&acc, &s, c.pseudoChannel, pchBits_);
    put(&acc, &s, c.channel, chBits_);
  }
  return acc;
}

}  // namespace spatten::dram
