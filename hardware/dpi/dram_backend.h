// The interface every DRAM timing backend implements (builtin, ideal, ramulator2).
#ifndef SPATTEN_DPI_DRAM_BACKEND_H
#define SPATTEN_DPI_DRAM_BACKEND_H

#include <cstdint>
#include <string>
#include <vector>

namespace spatten::dram {

/// Statistics of one backend (one accelerator port). Counters a backend cannot
/// observe are reported as -1.
struct BackendStats {
  int64_t reads = 0;
  int64_t rowHits = -1;
  int64_t rowMisses = -1;       ///< bank was closed (ACT needed)
  int64_t rowConflicts = -1;    ///< another row was open (PRE + ACT needed)
  int64_t refreshes = -1;
  int64_t busyCycles = 0;       ///< DRAM cycles with at least one request inside
  int64_t dataBusCycles = -1;   ///< DRAM cycles the data bus carried read data
  int64_t dramCycles = 0;       ///< DRAM cycles simulated
  double latencySum = 0;        ///< DRAM cycles from send() to completion, summed
  int64_t latencyMax = 0;
  /// The most bursts the DRAM can return per DRAM cycle (its data buses at full rate, no
  /// refresh, no row misses); negative when the backend does not know it.
  double peakBurstsPerCycle = -1;
};

/// A timing model of the DRAM behind one accelerator port.
///
/// A request is one burst: one column access (RD) of the DRAM. It is named by its
/// *transaction index*, the channel-local burst number (see README: address mapping).
/// The backend decides only *when* a read completes; data come from the backing store.
class DramBackend {
 public:
  virtual ~DramBackend() = default;

  /// Offers a read of transaction `index`, identified by `tag`. Returns false (and
  /// keeps nothing) when the backend cannot take it this cycle.
  virtual bool send(uint64_t index, uint64_t tag) = 0;

  /// Advances one DRAM clock cycle.
  virtual void tick() = 0;

  /// Moves the tags of reads that completed so far into `done` (any order).
  virtual void drainCompleted(std::vector<uint64_t>* done) = 0;

  /// True when no request is inside the backend.
  virtual bool idle() const = 0;

  /// DRAM clock period in picoseconds (0: runs at the accelerator clock).
  virtual int clockPeriodPs() const = 0;

  /// Number of transaction indices the backend can address (index < capacity()).
  virtual uint64_t capacity() const = 0;

  virtual BackendStats stats() const = 0;
  virtual std::string name() const = 0;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_BACKEND_H
