// One accelerator DRAM read port (SPEC.md section 6): validates addresses, crosses
// from the accelerator clock to the DRAM clock, drives a backend, returns the data of
// each burst from the backing store in request order.
#ifndef SPATTEN_DPI_DRAM_PORT_H
#define SPATTEN_DPI_DRAM_PORT_H

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "backing_store.h"
#include "dram_backend.h"
#include "dram_trace.h"

namespace spatten::dram {

struct PortConfig {
  int channel = 0;
  int numChannels = 1;   ///< power of two
  int burstBytes = 32;   ///< power of two
  int addrBits = 32;     ///< 16..63
  int clockMhz = 1000;   ///< accelerator clock
  int depth = 64;        ///< requests accepted and not yet returned, at most
};

/// Port-level statistics (accelerator cycles), plus the backend's.
struct PortStats {
  int channel = 0;
  std::string backend;
  int64_t reads = 0;          ///< responses returned
  int64_t bytes = 0;
  int64_t accelCycles = 0;    ///< cycles ticked (out of reset)
  int64_t busyCycles = 0;     ///< cycles with a request accepted and not yet returned
  double latencySum = 0;      ///< accept -> response valid, accelerator cycles
  int64_t latencyMax = 0;
  int64_t firstAccept = -1, lastResponse = -1;
  BackendStats dram;
};

class DramPort {
 public:
  /// `store` and `trace` may be shared with other ports; `trace` may be null.
  DramPort(const PortConfig& cfg, std::unique_ptr<DramBackend> backend,
           std::shared_ptr<const BackingStore> store, std::shared_ptr<TraceWriter> trace);

  /// One accelerator clock edge. Inputs are the values the accelerator drove during
  /// the cycle that ends; the outputs (reqReady, respValid, respData) were those the
  /// port presented during it. Afterwards the accessors give the outputs for the next
  /// cycle. Throws DramError for a bad address.
  void tick(bool reset, bool reqValid, uint64_t reqAddr, bool respReady);

  bool reqReady() const { return reqReady_; }
  bool respValid() const { return respValid_; }
  /// burstBytes bytes, byte 0 first (valid while respValid()).
  const uint8_t* respData() const { return data_.data(); }

  /// Channel-local transaction index of a global address; throws DramError when the
  /// address is out of range, unaligned, or belongs to another channel.
  uint64_t transactionIndex(uint64_t addr) const;

  PortStats stats() const;
  const PortConfig& config() const { return cfg_; }
  int64_t cycle() const { return cycle_; }
  /// Requests accepted and not yet returned.
  size_t inFlight() const { return rob_.size(); }

 private:
  struct Entry {
    uint64_t tag;
    uint64_t addr;
    uint64_t index;
    int64_t accepted;
    bool done = false;
  };
  void advanceDram();

  PortConfig cfg_;
  std::unique_ptr<DramBackend> backend_;
  std::shared_ptr<const BackingStore> store_;
  std::shared_ptr<TraceWriter> trace_;
  std::deque<Entry> rob_;            ///< request order
  std::deque<uint64_t> toSend_;      ///< tags accepted, not yet taken by the backend
  uint64_t nextTag_ = 0;
  uint64_t headTag_ = 0;             ///< tag of rob_.front()
  std::vector<uint64_t> done_;
  std::vector<uint8_t> data_;
  bool reqReady_ = false;
  bool respValid_ = false;
  int64_t cycle_ = 0;
  int64_t clockAcc_ = 0;             ///< DRAM clock phase, in ps * clockMhz
  int64_t dramStep_ = 0;             ///< tCK in ps * clockMhz (0: one tick per cycle)
  PortStats stats_;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_PORT_H
