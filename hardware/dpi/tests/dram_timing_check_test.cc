// An independent JEDEC checker: random traffic through the controller, every issued
// command checked against the HBM2 rules written out here from the timing table (not
// from the model's rule list), every read's data time checked against its RD.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "address_mapper.h"
#include "dram_config.h"
#include "dram_controller.h"

namespace spatten::dram {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::min() / 4;

class JedecChecker {
 public:
  JedecChecker(const Organization& o, const Timing& t)
      : o_(o), t_(t), banks_(o.pseudoChannels * o.bankGroups * o.banks), pch_(o.pseudoChannels),
        bg_(o.pseudoChannels * o.bankGroups) {}

  void on(int64_t clk, Command cmd, const DramCoord& c) {
    ++commands_;
    expect(clk != lastCmd_, clk, "two commands in one cycle");
    lastCmd_ = clk;
    if (cmd != Command::RD) expect(clk - chLastAct_ >= 2, clk, "row command within 2 cycles of an ACT");
    switch (cmd) {
      case Command::ACT: act(clk, c); break;
      case Command::RD: rd(clk, c); break;
      case Command::PRE: pre(clk, c); break;
      case Command::PREA: prea(clk); break;
      case Command::REF: ref(clk); break;
    }
  }

  /// A read completed at `clk` (completions come back in RD order).
  void completed(int64_t clk) {
    if (rdTimes_.empty()) {
      expect(false, clk, "completion without an RD");
      return;
    }
    expect(clk == rdTimes_.front() + t_.nCL + t_.nBL, clk,
           "data not at RD + nCL + nBL (RD at " + std::to_string(rdTimes_.front()) + ")");
    rdTimes_.pop_front();
  }

  const std::vector<std::string>& errors() const { return errors_; }
  const std::vector<int64_t>& refreshes() const { return refs_; }
  int64_t commands() const { return commands_; }

 private:
  struct BankState {
    int open = -1;
    int64_t act = kNever, pre = kNever, rd = kNever;
  };
  struct Group {
    int64_t act = kNever, rd = kNever;
    std::deque<int64_t> acts;
  };

  void expect(bool ok, int64_t clk, const std::string& what) {
    if (!ok && errors_.size() < 20) errors_.push_back("cycle " + std::to_string(clk) + ": " + what);
  }
  int bank(const DramCoord& c) const { return (c.pseudoChannel * o_.bankGroups + c.bankGroup) * o_.banks + c.bank; }

  void act(int64_t clk, const DramCoord& c) {
    BankState& b = banks_[bank(c)];
    Group& p = pch_[c.pseudoChannel];
    Group& g = bg_[c.pseudoChannel * o_.bankGroups + c.bankGroup];
    expect(b.open < 0, clk, "ACT to an open bank");
    expect(clk - b.act >= t_.nRC, clk, "tRC");
    expect(clk - b.pre >= t_.nRP, clk, "tRP (PRE -> ACT)");
    expect(clk - lastPrea_ >= t_.nRP, clk, "tRP (PREA -> ACT)");
    expect(clk - lastRef_ >= t_.nRFC, clk, "tRFC");
    expect(clk - p.act >= t_.nRRDS, clk, "tRRDS");
    expect(clk - g.act >= t_.nRRDL, clk, "tRRDL");
    if (p.acts.size() >= 4) expect(clk - p.acts[p.acts.size() - 4] >= t_.nFAW, clk, "tFAW");
    b.open = c.row;
    b.act = p.act = g.act = chLastAct_ = clk;
    p.acts.push_back(clk);
    if (p.acts.size() > 4) p.acts.pop_front();
  }

  void rd(int64_t clk, const DramCoord& c) {
    BankState& b = banks_[bank(c)];
    Group& p = pch_[c.pseudoChannel];
    Group& g = bg_[c.pseudoChannel * o_.bankGroups + c.bankGroup];
    expect(b.open == c.row, clk, "RD to a row that is not open");
    expect(clk - b.act >= t_.nRCDRD, clk, "tRCD");
    expect(clk - p.rd >= std::max(t_.nBL, t_.nCCDS), clk, "data bus (nBL) / tCCDS");
    expect(clk - g.rd >= t_.nCCDL, clk, "tCCDL");
    b.rd = p.rd = g.rd = clk;
    rdTimes_.push_back(clk);
  }

  void pre(int64_t clk, const DramCoord& c) {
    BankState& b = banks_[bank(c)];
    expect(b.open >= 0, clk, "PRE to a closed bank");
    expect(clk - b.act >= t_.nRAS, clk, "tRAS");
    expect(clk - b.rd >= std::max(t_.nRTPL, t_.nRTPS), clk, "tRTP");
    b.open = -1;
    b.pre = clk;
  }

  void prea(int64_t clk) {
    for (BankState& b : banks_) {
      if (b.open >= 0) {
        expect(clk - b.act >= t_.nRAS, clk, "tRAS before PREA");
        expect(clk - b.rd >= t_.nRTPS, clk, "tRTP before PREA");
      }
      b.open = -1;
    }
    lastPrea_ = clk;
  }

  void ref(int64_t clk) {
    for (const BankState& b : banks_) {
      expect(b.open < 0, clk, "REF with a bank open");
      expect(clk - b.pre >= t_.nRP, clk, "tRP before REF");
      expect(clk - b.act >= t_.nRC, clk, "tRC before REF");
    }
    expect(clk - lastPrea_ >= t_.nRP, clk, "tRP (PREA -> REF)");
    expect(clk - lastRef_ >= t_.nRFC, clk, "tRFC between REFs");
    lastRef_ = clk;
    refs_.push_back(clk);
  }

  Organization o_;
  Timing t_;
  std::vector<BankState> banks_;
  std::vector<Group> pch_, bg_;
  int64_t lastCmd_ = kNever, chLastAct_ = kNever, lastPrea_ = kNever, lastRef_ = kNever;
  std::deque<int64_t> rdTimes_;
  std::vector<int64_t> refs_;
  std::vector<std::string> errors_;
  int64_t commands_ = 0;
};

struct Case {
  SchedulerKind scheduler;
  const char* name;
};

class RandomTraffic : public ::testing::TestWithParam<Case> {};

TEST_P(RandomTraffic, EveryCommandMeetsJedecTiming) {
  DramConfig cfg = defaultDramConfig();
  cfg.scheduler = GetParam().scheduler;
  cfg.schedulerCap = 4;
  const Timing& t = cfg.timing;
  DramController ctl(cfg);
  JedecChecker check(cfg.org, t);
  ctl.setCommandObserver([&](int64_t clk, Command cmd, const DramCoord& c) { check.on(clk, cmd, c); });
  AddressMapper mapper(cfg.org, cfg.mapper);
  std::mt19937_64 rng(12345);
  const int64_t cycles = 6 * t.nREFI + 500;
  int64_t sent = 0, done = 0;
  uint64_t stream = 0;
  std::vector<uint64_t> d;
  for (int64_t clk = 0; clk < cycles; ++clk) {
    // Bursts of sequential reads, random jumps (some to few rows: conflicts), idle gaps.
    if (clk % 2000 < 1500 && rng() % 3 != 0) {
      uint64_t index;
      switch (rng() % 4) {
        case 0: index = stream++; break;
        case 1: index = rng() % mapper.capacity(); break;
        case 2: index = (rng() % 8) * 1024 + rng() % 64; break;  // two rows' worth of banks, 8 rows
        default: index = stream + rng() % 32; break;
      }
      if (ctl.send(mapper.map(index), static_cast<uint64_t>(sent))) ++sent;
    }
    ctl.tick();
    d.clear();
    ctl.drainCompleted(&d);
    for (size_t k = 0; k < d.size(); ++k) check.completed(ctl.clock());
    done += static_cast<int64_t>(d.size());
  }
  for (int i = 0; i < 10000 && !ctl.idle(); ++i) {
    ctl.tick();
    d.clear();
    ctl.drainCompleted(&d);
    for (size_t k = 0; k < d.size(); ++k) check.completed(ctl.clock());
    done += static_cast<int64_t>(d.size());
  }
  std::ostringstream errs;
  for (const auto& e : check.errors()) errs << "\n  " << e;
  EXPECT_TRUE(check.errors().empty()) << GetParam().name << ":" << errs.str();
  EXPECT_EQ(done, sent) << "every accepted read completes";
  EXPECT_GT(sent, 2000);
  EXPECT_GT(ctl.stats().rowHits, 0);
  EXPECT_GT(ctl.stats().rowConflicts, 0);
  // One refresh per tREFI, each issued soon after it fell due.
  const auto& refs = check.refreshes();
  ASSERT_GE(refs.size(), 6u);
  for (size_t k = 0; k < refs.size(); ++k) {
    const int64_t due = static_cast<int64_t>(k + 1) * t.nREFI;
    EXPECT_GE(refs[k], due) << "refresh " << k;
    EXPECT_LE(refs[k], due + t.nRAS + t.nRP + t.nRC + 8) << "refresh " << k << " late";
  }
}

TEST(JedecCheckerSelfTest, CatchesAControllerWithAShorterTrcd) {
  // Negative test: a controller that uses tRCD - 2 must be caught by the checker.
  DramConfig cfg = defaultDramConfig();
  DramConfig fast = cfg;
  fast.timing.nRCDRD -= 2;
  DramController ctl(fast);
  JedecChecker check(cfg.org, cfg.timing);
  ctl.setCommandObserver([&](int64_t clk, Command cmd, const DramCoord& c) { check.on(clk, cmd, c); });
  AddressMapper mapper(cfg.org, cfg.mapper);
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(ctl.send(mapper.map(i * 1024), i));
  for (int k = 0; k < 2000; ++k) ctl.tick();
  ASSERT_FALSE(check.errors().empty());
  EXPECT_NE(check.errors()[0].find("tRCD"), std::string::npos) << check.errors()[0];
}

INSTANTIATE_TEST_SUITE_P(Schedulers, RandomTraffic,
                         ::testing::Values(Case{SchedulerKind::FRFCFS, "FRFCFS"},
                                           Case{SchedulerKind::FRFCFSCap, "FRFCFS_Cap"},
                                           Case{SchedulerKind::FCFS, "FCFS"}),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace spatten::dram
