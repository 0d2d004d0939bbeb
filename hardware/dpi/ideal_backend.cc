#include "ideal_backend.h"

#include <algorithm>

#include "dram_error.h"

namespace spatten::dram {

IdealBackend::IdealBackend(int latency) : latency_(latency) {
  stats_.peakBurstsPerCycle = 1.0;  // one request a cycle, like the port
  if (latency < 1) throw DramError("ideal backend: +ideal_latency must be >= 1, got " + std::to_string(latency));
}

bool IdealBackend::send(uint64_t /*index*/, uint64_t tag) {
  inflight_.emplace_back(clk_ + latency_, tag);
  return true;
}

void IdealBackend::tick() {
  ++clk_;
  ++stats_.dramCycles;
  if (!inflight_.empty()) ++stats_.busyCycles;
  while (!inflight_.empty() && inflight_.front().first <= clk_) {
    ++stats_.reads;
    stats_.latencySum += latency_;
    stats_.latencyMax = latency_;
    completed_.push_back(inflight_.front().second);
    inflight_.pop_front();
  }
}

void IdealBackend::drainCompleted(std::vector<uint64_t>* done) {
  done->insert(done->end(), completed_.begin(), completed_.end());
  completed_.clear();
}

}  // namespace spatten::dram
