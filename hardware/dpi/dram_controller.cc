#include "dram_controller.h"

#include <algorithm>

namespace spatten::dram {

DramController::DramController(const DramConfig& cfg)
    : cfg_(cfg),
      device_(cfg.org, cfg.timing),
      bypassCount_(cfg.org.pseudoChannels * cfg.org.bankGroups * cfg.org.banks, 0),
      nextRefresh_(cfg.refresh == RefreshKind::AllBank ? cfg.timing.nREFI : -1) {
  stats_.rowHits = stats_.rowMisses = stats_.rowConflicts = 0;
  stats_.refreshes = 0;
  stats_.dataBusCycles = 0;
  queue_.reserve(cfg.readQueueSize);
}

bool DramController::send(const DramCoord& c, uint64_t tag) {
  if (static_cast<int>(queue_.size()) >= cfg_.readQueueSize) return false;
  queue_.push_back(Req{c, tag, clk_, nextSeq_++});
  return true;
}

void DramController::drainCompleted(std::vector<uint64_t>* done) {
  done->insert(done->end(), completed_.begin(), completed_.end());
  completed_.clear();
}

bool DramController::closesActiveRow(const DramCoord& c) const {
  const int b = device_.bankIndex(c);
  return std::any_of(active_.begin(), active_.end(),
                     [&](const Req& r) { return device_.bankIndex(r.coord) == b; });
}

int DramController::pick(std::vector<Req>& reqs, Command* cmd, bool* ready) {
  if (reqs.empty()) return -1;
  if (cfg_.scheduler == SchedulerKind::FCFS) {
    *cmd = device_.requiredCommand(reqs[0].coord);
    *ready = device_.ready(*cmd, reqs[0].coord, clk_);
    return 0;
  }
  // Banks whose open row a waiting request hits: such a row is not closed while the
  // hit waits (unless FRFCFS_Cap says the hits have bypassed enough older requests).
  hitBanks_.clear();
  for (const std::vector<Req>* v : {&queue_, &active_}) {
    for (const Req& r : *v) {
      if (device_.requiredCommand(r.coord) != Command::RD) continue;
      const int b = device_.bankIndex(r.coord);
      if (cfg_.scheduler == SchedulerKind::FRFCFSCap && bypassCount_[b] >= cfg_.schedulerCap) continue;
      hitBanks_.push_back(b);
    }
  }
  auto protectedBank = [&](int b) { return std::find(hitBanks_.begin(), hitBanks_.end(), b) != hitBanks_.end(); };
  int best = -1;
  int bestScore = -1;
  Command bestCmd = Command::RD;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Req& r = reqs[i];
    const Command c = device_.requiredCommand(r.coord);
    const int b = device_.bankIndex(r.coord);
    if (c == Command::PRE && protectedBank(b)) continue;
    const bool rdy = device_.ready(c, r.coord, clk_);
    const bool hit = c == Command::RD && !(cfg_.scheduler == SchedulerKind::FRFCFSCap &&
                                           bypassCount_[b] >= cfg_.schedulerCap);
    // Vectors are kept oldest first, so the first of equal scores is the oldest.
    const int score = (rdy ? 2 : 0) + (hit ? 1 : 0);
    if (score > bestScore) {
      best = static_cast<int>(i);
      bestScore = score;
      bestCmd = c;
    }
  }
  *cmd = bestCmd;
  *ready = bestScore >= 2;
  return best;
}

void DramController::issue(std::vector<Req>& from, int i, Command cmd) {
  Req& r = from[i];
  device_.issue(cmd, r.coord, clk_);
  if (r.kind == Kind::Unknown) {
    r.kind = cmd == Command::RD ? Kind::Hit : (cmd == Command::ACT ? Kind::Miss : Kind::Conflict);
  }
  const int bank = device_.bankIndex(r.coord);
  if (cfg_.scheduler == SchedulerKind::FRFCFSCap) {
    if (cmd == Command::RD) {
      // Did this hit bypass an older request to the same bank?
      bool bypassed = std::any_of(queue_.begin(), queue_.end(), [&](const Req& o) {
        return o.seq < r.seq && device_.bankIndex(o.coord) == bank;
      });
      if (bypassed) ++bypassCount_[bank];
    } else {
      bypassCount_[bank] = 0;
    }
  }
  if (cmd == Command::RD) {
    r.depart = clk_ + device_.timing().readLatency();
    stats_.dataBusCycles += device_.timing().nBL;
    switch (r.kind) {
      case Kind::Hit: ++stats_.rowHits; break;
      case Kind::Miss: ++stats_.rowMisses; break;
      case Kind::Conflict: ++stats_.rowConflicts; break;
      case Kind::Unknown: break;
    }
    pending_.push_back(r);
    from.erase(from.begin() + i);
  } else if (cmd == Command::ACT && &from == &queue_) {
    active_.push_back(r);
    queue_.erase(queue_.begin() + i);
  }
}

void DramController::tick() {
  ++clk_;
  ++stats_.dramCycles;
  if (!idle()) ++stats_.busyCycles;
  // 1. Hand back one read whose data have arrived.
  if (!pending_.empty() && pending_.front().depart <= clk_) {
    const Req& r = pending_.front();
    const int64_t lat = clk_ - r.arrive;
    ++stats_.reads;
    stats_.latencySum += static_cast<double>(lat);
    stats_.latencyMax = std::max(stats_.latencyMax, lat);
    completed_.push_back(r.tag);
    pending_.pop_front();
  }
  // 2. Refresh timer.
  if (nextRefresh_ > 0 && clk_ >= nextRefresh_) {
    nextRefresh_ += cfg_.timing.nREFI;
    ++refreshesDue_;
  }
  // 3. One command.
  Command cmd;
  bool ready = false;
  int i = pick(active_, &cmd, &ready);
  if (i >= 0 && ready) {
    issue(active_, i, cmd);
    return;
  }
  if (refreshesDue_ > 0) {
    const DramCoord any{};
    Command rc = device_.anyBankOpen() ? Command::PREA : Command::REF;
    if (device_.ready(rc, any, clk_)) {
      device_.issue(rc, any, clk_);
      if (rc == Command::REF) {
        --refreshesDue_;
        ++stats_.refreshes;
      }
    }
    return;
  }
  i = pick(queue_, &cmd, &ready);
  if (i < 0 || !ready) return;
  if (cmd == Command::PRE && closesActiveRow(queue_[i].coord)) return;
  issue(queue_, i, cmd);
}

}  // namespace spatten::dram
