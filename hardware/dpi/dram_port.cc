#include "dram_port.h"

#include <algorithm>
#include <sstream>

#include "dram_error.h"

namespace spatten::dram {
namespace {

bool isPow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

std::string hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

}  // namespace

DramPort::DramPort(const PortConfig& cfg, std::unique_ptr<DramBackend> backend,
                   std::shared_ptr<const BackingStore> store, std::shared_ptr<TraceWriter> trace)
    : cfg_(cfg), backend_(std::move(backend)), store_(std::move(store)), trace_(std::move(trace)) {
  const std::string where = "DRAM port (channel " + std::to_string(cfg.channel) + "): ";
  if (!isPow2(cfg.numChannels)) {
    throw DramError(where + "the number of channels must be a power of two, got " + std::to_string(cfg.numChannels));
  }
  if (cfg.channel < 0 || cfg.channel >= cfg.numChannels) {
    throw DramError(where + "channel id must be in 0.." + std::to_string(cfg.numChannels - 1));
  }
  if (!isPow2(cfg.burstBytes) || cfg.burstBytes < 4) {
    throw DramError(where + "burst bytes must be a power of two >= 4, got " + std::to_string(cfg.burstBytes));
  }
  if (cfg.addrBits < 8 || cfg.addrBits > 63) {
    throw DramError(where + "address bits must be in 8..63, got " + std::to_string(cfg.addrBits));
  }
  if (cfg.depth < 1) throw DramError(where + "port depth must be positive");
  if (!store_) store_ = std::make_shared<BackingStore>();
  data_.assign(cfg.burstBytes, 0);
  dramStep_ = int64_t(backend_->clockPeriodPs()) * cfg.clockMhz;
  stats_.channel = cfg.channel;
  stats_.backend = backend_->name();
}

uint64_t DramPort::transactionIndex(uint64_t addr) const {
  const std::string where = "DRAM channel " + std::to_string(cfg_.channel) + ": request address " + hex(addr);
  if (cfg_.addrBits < 64 && (addr >> cfg_.addrBits) != 0) {
    throw DramError(where + " is at or above 2^" + std::to_string(cfg_.addrBits) + " (dramAddrBits)");
  }
  if (addr % cfg_.burstBytes != 0) {
    throw DramError(where + " is not aligned to the burst size (" + std::to_string(cfg_.burstBytes) + " bytes)");
  }
  const uint64_t burst = addr / cfg_.burstBytes;
  const int owner = static_cast<int>(burst % cfg_.numChannels);
  if (owner != cfg_.channel) {
    throw DramError(where + " belongs to channel " + std::to_string(owner) + " ((addr / " +
                    std::to_string(cfg_.burstBytes) + ") % " + std::to_string(cfg_.numChannels) + ")");
  }
  const uint64_t index = burst / cfg_.numChannels;
  if (index >= backend_->capacity()) {
    throw DramError(where + " is beyond the DRAM of this channel (" + std::to_string(backend_->capacity()) +
                    " bursts of " + std::to_string(cfg_.burstBytes) + " bytes per channel)");
  }
  return index;
}

void DramPort::advanceDram() {
  auto oneTick = [this] {
    while (!toSend_.empty()) {
      const Entry& e = rob_[toSend_.front() - headTag_];
      if (!backend_->send(e.index, e.tag)) break;
      toSend_.pop_front();
    }
    backend_->tick();
    done_.clear();
    backend_->drainCompleted(&done_);
    for (uint64_t tag : done_) {
      if (tag < headTag_ || tag >= nextTag_) continue;  // issued before a reset
      rob_[tag - headTag_].done = true;
    }
  };
  if (dramStep_ == 0) {
    oneTick();
    return;
  }
  clockAcc_ += 1000000;  // one accelerator period, in ps * clockMhz
  while (clockAcc_ >= dramStep_) {
    clockAcc_ -= dramStep_;
    oneTick();
  }
}

void DramPort::tick(bool reset, bool reqValid, uint64_t reqAddr, bool respReady) {
  if (reset) {
    // Drop everything the accelerator asked for; reads already inside the backend
    // complete there and are ignored (their tags are below headTag_).
    headTag_ = nextTag_;
    rob_.clear();
    toSend_.clear();
    reqReady_ = respValid_ = false;
    advanceDram();
    return;
  }
  ++cycle_;
  ++stats_.accelCycles;
  if (!rob_.empty()) ++stats_.busyCycles;
  // Handshakes of the cycle that ends.
  if (respValid_ && respReady) {
    rob_.pop_front();
    ++headTag_;
    ++stats_.reads;
    stats_.bytes += cfg_.burstBytes;
    respValid_ = false;
  }
  if (reqReady_ && reqValid) {
    const uint64_t index = transactionIndex(reqAddr);
    rob_.push_back(Entry{nextTag_, reqAddr, index, cycle_});
    toSend_.push_back(nextTag_);
    ++nextTag_;
    if (stats_.firstAccept < 0) stats_.firstAccept = cycle_;
    if (trace_) trace_->record(cycle_, reqAddr);
  }
  advanceDram();
  // Outputs for the next cycle.
  if (!respValid_ && !rob_.empty() && rob_.front().done) {
    const Entry& e = rob_.front();
    store_->read(e.addr, data_.size(), data_.data());
    respValid_ = true;
    const int64_t lat = cycle_ - e.accepted + 1;
    stats_.latencySum += static_cast<double>(lat);
    stats_.latencyMax = std::max(stats_.latencyMax, lat);
    stats_.lastResponse = cycle_ + 1;
  }
  reqReady_ = static_cast<int>(rob_.size()) < cfg_.depth;
}

PortStats DramPort::stats() const {
  PortStats s = stats_;
  s.dram = backend_->stats();
  return s;
}

}  // namespace spatten::dram
