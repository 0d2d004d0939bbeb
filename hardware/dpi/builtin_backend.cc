#include "builtin_backend.h"

#include <algorithm>

namespace spatten::dram {

BuiltinBackend::BuiltinBackend(const DramConfig& cfg) : cfg_(cfg), mapper_(cfg.org, cfg.mapper) {
  for (int c = 0; c < cfg.org.channels; ++c) controllers_.push_back(std::make_unique<DramController>(cfg));
}

bool BuiltinBackend::send(uint64_t index, uint64_t tag) {
  const DramCoord c = mapper_.map(index);
  return controllers_[c.channel]->send(c, tag);
}

void BuiltinBackend::tick() {
  for (auto& c : controllers_) c->tick();
}

void BuiltinBackend::drainCompleted(std::vector<uint64_t>* done) {
  for (auto& c : controllers_) c->drainCompleted(done);
}

bool BuiltinBackend::idle() const {
  return std::all_of(controllers_.begin(), controllers_.end(), [](const auto& c) { return c->idle(); });
}

BackendStats BuiltinBackend::stats() const {
  BackendStats s;
  s.rowHits = s.rowMisses = s.rowConflicts = s.refreshes = s.dataBusCycles = 0;
  for (const auto& c : controllers_) {
    const BackendStats& x = c->stats();
    s.reads += x.reads;
    s.rowHits += x.rowHits;
    s.rowMisses += x.rowMisses;
    s.rowConflicts += x.rowConflicts;
    s.refreshes += x.refreshes;
    s.busyCycles = std::max(s.busyCycles, x.busyCycles);
    s.dataBusCycles += x.dataBusCycles;
    s.dramCycles = std::max(s.dramCycles, x.dramCycles);
    s.latencySum += x.latencySum;
    s.latencyMax = std::max(s.latencyMax, x.latencyMax);
  }
  // Every pseudo-channel returns one burst per max(nBL, nCCDS) cycles at best (RD -> RD).
  const Timing& t = cfg_.timing;
  s.peakBurstsPerCycle = static_cast<double>(cfg_.org.channels) * cfg_.org.pseudoChannels /
                         std::max(t.nBL, std::max(t.nCCDS, 1));
  return s;
}

}  // namespace spatten::dram
