// Statistics of all DRAM ports as JSON.
#ifndef SPATTEN_DPI_DRAM_STATS_H
#define SPATTEN_DPI_DRAM_STATS_H

#include <string>
#include <vector>

#include "dram_port.h"

namespace spatten::dram {

/// Facts about the run that go beside the per-channel numbers.
struct RunInfo {
  std::string backend;
  std::string config;   ///< YAML path, or "(built-in default)"
  std::string image;
  int clockMhz = 1000;
  int burstBytes = 32;
  int numChannels = 1;
  int dramClockPs = 0;  ///< 0: the backend runs at the accelerator clock
};

/// One JSON object: run info, "channels": [per-channel objects], and "total".
/// Per channel: reads, bytes, row_hits, row_misses, row_conflicts, refreshes (null
/// when the backend does not report them), avg/max latency in accelerator cycles and
/// in DRAM cycles, busy cycles (both clocks), data-bus cycles, bandwidth in GB/s, and the
/// DRAM's peak bandwidth in GB/s (null when the backend does not know it).
std::string statsJson(const RunInfo& run, const std::vector<PortStats>& channels);

/// Writes `text` to `path` atomically (temporary file + rename). Throws DramError.
void writeFileAtomic(const std::string& path, const std::string& text);

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_STATS_H
