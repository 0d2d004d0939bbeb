// A fixed-latency backend with no bandwidth limit: every read completes `latency`
// cycles after it was sent. For tests and for measuring the DPI path's own cost.
#ifndef SPATTEN_DPI_IDEAL_BACKEND_H
#define SPATTEN_DPI_IDEAL_BACKEND_H

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "dram_backend.h"

namespace spatten::dram {

class IdealBackend final : public DramBackend {
 public:
  /// `latency` >= 1 cycles of the accelerator clock (the backend runs at that clock).
  explicit IdealBackend(int latency);

  bool send(uint64_t index, uint64_t tag) override;
  void tick() override;
  void drainCompleted(std::vector<uint64_t>* done) override;
  bool idle() const override { return inflight_.empty(); }
  int clockPeriodPs() const override { return 0; }
  uint64_t capacity() const override { return ~uint64_t(0); }
  BackendStats stats() const override { return stats_; }
  std::string name() const override { return "ideal"; }

 private:
  int latency_;
  int64_t clk_ = 0;
  std::deque<std::pair<int64_t, uint64_t>> inflight_;  ///< (due cycle, tag), due order
  std::vector<uint64_t> completed_;
  BackendStats stats_;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_IDEAL_BACKEND_H
