// Request traces: what the accelerator asked of the DRAM, cycle by cycle.
//
// Format (text, one request per line, comments start with '#'):
//   # spatten-dram-trace v1 num_channels=2 burst_bytes=32 addr_bits=32 clock_mhz=1000
//   <cycle> <address>
// `cycle` is the accelerator cycle the port accepted the request (decimal), `address`
// the global byte address (0x-prefixed hex or decimal). The channel follows from the
// address (SPEC.md section 4). Lines are in non-decreasing cycle order.
#ifndef SPATTEN_DPI_DRAM_TRACE_H
#define SPATTEN_DPI_DRAM_TRACE_H

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace spatten::dram {

struct TraceHeader {
  int numChannels = 1;
  int burstBytes = 32;
  int addrBits = 32;
  int clockMhz = 1000;
};

struct TraceEntry {
  int64_t cycle;
  uint64_t addr;
};

/// Writes a trace; several ports may share one writer.
class TraceWriter {
 public:
  TraceWriter(const std::string& path, const TraceHeader& h);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;
  void record(int64_t cycle, uint64_t addr);

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

/// Reads a whole trace; throws DramError naming the file and line on bad input.
/// Header keys missing from the file keep the values already in `*header`.
std::vector<TraceEntry> readTrace(const std::string& path, TraceHeader* header);

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_TRACE_H
