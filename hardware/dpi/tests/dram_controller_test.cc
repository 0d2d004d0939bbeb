// The built-in HBM2 controller: latencies against the JEDEC parameters, refresh,
// scheduling order, bandwidth bound.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "address_mapper.h"
#include "builtin_backend.h"
#include "dram_config.h"
#include "dram_controller.h"

namespace spatten::dram {
namespace {

DramConfig config(RefreshKind refresh = RefreshKind::None, SchedulerKind s = SchedulerKind::FRFCFS, int cap = 16) {
  DramConfig c = defaultDramConfig();
  c.refresh = refresh;
  c.scheduler = s;
  c.schedulerCap = cap;
  return c;
}

DramCoord at(int pch, int bg, int bank, int row, int col = 0) {
  DramCoord c;
  c.pseudoChannel = pch;
  c.bankGroup = bg;
  c.bank = bank;
  c.row = row;
  c.column = col;
  return c;
}

/// Drives a controller and records when each tag completes.
struct Driver {
  explicit Driver(const DramConfig& c) : ctl(c) {}
  DramController ctl;
  std::map<uint64_t, int64_t> doneAt;
  std::vector<uint64_t> order;
  std::map<uint64_t, int64_t> sentAt;

  void send(const DramCoord& c, uint64_t tag) {
    ASSERT_TRUE(ctl.send(c, tag));
    sentAt[tag] = ctl.clock();
  }
  void tick(int n = 1) {
    for (int i = 0; i < n; ++i) {
      ctl.tick();
      std::vector<uint64_t> d;
      ctl.drainCompleted(&d);
      for (uint64_t t : d) {
        doneAt[t] = ctl.clock();
        order.push_back(t);
      }
    }
  }
  int64_t waitFor(uint64_t tag, int limit = 100000) {
    while (doneAt.count(tag) == 0 && limit-- > 0) tick();
    EXPECT_TRUE(doneAt.count(tag)) << "tag " << tag << " never completed";
    return doneAt[tag] - sentAt[tag];
  }
};

TEST(Hbm2Controller, IdleLatenciesFollowJedecTimings) {
  const DramConfig c = config();
  const Timing& t = c.timing;
  Driver d(c);
  // Closed bank: ACT on the first cycle, RD tRCD later, data tCL + tBL after the RD.
  d.send(at(0, 1, 2, 100), 1);
  EXPECT_EQ(d.waitFor(1), 1 + t.nRCDRD + t.nCL + t.nBL);
  d.tick(50);
  // Row hit: RD on the first cycle.
  d.send(at(0, 1, 2, 100, 5), 2);
  EXPECT_EQ(d.waitFor(2), 1 + t.nCL + t.nBL);
  d.tick(50);
  // Row conflict: PRE, ACT tRP later, RD tRCD later.
  d.send(at(0, 1, 2, 200), 3);
  EXPECT_EQ(d.waitFor(3), 1 + t.nRP + t.nRCDRD + t.nCL + t.nBL);
  EXPECT_EQ(d.ctl.stats().rowMisses, 1);
  EXPECT_EQ(d.ctl.stats().rowHits, 1);
  EXPECT_EQ(d.ctl.stats().rowConflicts, 1);
  EXPECT_EQ(d.ctl.stats().reads, 3);
}

TEST(Hbm2Controller, ConflictRightAfterActivateWaitsForTras) {
  const DramConfig c = config();
  const Timing& t = c.timing;
  Driver d(c);
  d.send(at(1, 0, 0, 7), 1);
  d.send(at(1, 0, 0, 8), 2);  // same bank, other row: PRE must wait tRAS after the ACT
  d.waitFor(2);
  // ACT(row 7) at 1; RD at 1+tRCD; PRE at max(1+tRAS, RD+tRTPL); ACT tRP later; RD tRCD later.
  const int64_t act1 = 1;
  const int64_t rd1 = act1 + t.nRCDRD;
  const int64_t pre = std::max<int64_t>(act1 + t.nRAS, rd1 + std::max(t.nRTPS, t.nRTPL));
  const int64_t act2 = std::max<int64_t>(pre + t.nRP, act1 + t.nRC);
  EXPECT_EQ(d.doneAt[2], act2 + t.nRCDRD + t.nCL + t.nBL);
}

TEST(Hbm2Controller, RefreshEveryTrefi) {
  const DramConfig c = config(RefreshKind::AllBank);
  const Timing& t = c.timing;
  Driver d(c);
  d.tick(t.nREFI - 1);
  EXPECT_EQ(d.ctl.stats().refreshes, 0);
  d.tick(1);
  EXPECT_EQ(d.ctl.stats().refreshes, 1);  // all banks closed: REF issues at tREFI
  // A read arriving now waits tRFC before its ACT.
  d.send(at(0, 0, 0, 1), 1);
  EXPECT_EQ(d.waitFor(1), t.nRFC + t.nRCDRD + t.nCL + t.nBL);
  d.tick(3 * t.nREFI - static_cast<int>(d.ctl.clock()) + 1);
  EXPECT_EQ(d.ctl.clock(), 3 * t.nREFI + 1);
  EXPECT_EQ(d.ctl.stats().refreshes, 3);
}

TEST(Hbm2Controller, RefreshClosesOpenRowsFirst) {
  const DramConfig c = config(RefreshKind::AllBank);
  const Timing& t = c.timing;
  Driver d(c);
  d.tick(t.nREFI - 100);
  d.send(at(0, 0, 0, 1), 1);
  d.waitFor(1);  // leaves the row open
  d.tick(t.nREFI - 1 - static_cast<int>(d.ctl.clock()));
  EXPECT_EQ(d.ctl.stats().refreshes, 0);
  d.tick(1);  // PREA at tREFI
  EXPECT_EQ(d.ctl.stats().refreshes, 0);
  d.tick(t.nRP - 1);
  EXPECT_EQ(d.ctl.stats().refreshes, 0);
  d.tick(1);  // REF tRP after the PREA
  EXPECT_EQ(d.ctl.stats().refreshes, 1);
  // The row was closed: the same row is now a miss, not a hit.
  d.send(at(0, 0, 0, 1), 2);
  d.waitFor(2);
  EXPECT_EQ(d.ctl.stats().rowMisses, 2);
  EXPECT_EQ(d.ctl.stats().rowHits, 0);
}

TEST(Hbm2Controller, FrFcfsServesRowHitsBeforeOlderConflicts) {
  Driver d(config());
  d.send(at(0, 2, 1, 10), 1);
  d.waitFor(1);
  d.tick(40);
  d.send(at(0, 2, 1, 11), 2);     // older, conflicts with the open row 10
  d.send(at(0, 2, 1, 10, 3), 3);  // younger, hits row 10
  d.waitFor(2);
  EXPECT_EQ(d.order, (std::vector<uint64_t>{1, 3, 2}));
}

TEST(Hbm2Controller, FcfsServesInArrivalOrder) {
  Driver d(config(RefreshKind::None, SchedulerKind::FCFS));
  d.send(at(0, 2, 1, 10), 1);
  d.waitFor(1);
  d.tick(40);
  d.send(at(0, 2, 1, 11), 2);
  d.send(at(0, 2, 1, 10, 3), 3);
  d.waitFor(3);
  EXPECT_EQ(d.order, (std::vector<uint64_t>{1, 2, 3}));
}

TEST(Hbm2Controller, FrFcfsCapLimitsBypassing) {
  Driver d(config(RefreshKind::None, SchedulerKind::FRFCFSCap, 2));
  d.send(at(0, 2, 1, 10), 1);
  d.waitFor(1);
  d.tick(40);
  d.send(at(0, 2, 1, 11), 2);  // older conflict
  for (uint64_t tag = 3; tag <= 6; ++tag) d.send(at(0, 2, 1, 10, static_cast<int>(tag)), tag);  // hits
  for (uint64_t tag = 2; tag <= 6; ++tag) d.waitFor(tag);
  // Two hits bypass, then the conflict goes; the rest are conflicts then hits on row 10 again.
  ASSERT_EQ(d.order.size(), 6u);
  EXPECT_EQ(d.order[1], 3u);
  EXPECT_EQ(d.order[2], 4u);
  EXPECT_EQ(d.order[3], 2u);
}

TEST(Hbm2Controller, ReadQueueCapacity) {
  DramConfig c = config();
  c.readQueueSize = 4;
  DramController ctl(c);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(ctl.send(at(0, 0, i, 1), i));
  EXPECT_FALSE(ctl.send(at(0, 1, 0, 1), 9));
}

TEST(Hbm2Backend, SequentialBandwidthBoundedByDataBus) {
  // 2 pseudo-channels, each moving one access (32 B) per max(nBL, nCCDS) cycles.
  const DramConfig c = config();
  BuiltinBackend b(c);
  const int n = 4096;
  const int outstanding = 64;
  int sent = 0, done = 0;
  int64_t cycles = 0;
  std::vector<uint64_t> d;
  while (done < n) {
    while (sent < n && sent - done < outstanding && b.send(static_cast<uint64_t>(sent), sent)) ++sent;
    b.tick();
    ++cycles;
    d.clear();
    b.drainCompleted(&d);
    done += static_cast<int>(d.size());
  }
  const double peak = 2.0 * c.org.accessBytes() / std::max(c.timing.nBL, c.timing.nCCDS);  // bytes per cycle
  const double got = 1.0 * n * c.org.accessBytes() / cycles;
  EXPECT_LE(got, peak);
  EXPECT_GE(got, 0.9 * peak) << "sequential reads should keep both data buses nearly busy";
  EXPECT_GT(b.stats().rowHits, n * 9 / 10);
}

TEST(AddressMapper, RoBaRaCoChFieldOrder) {
  const DramConfig c = config();
  AddressMapper m(c.org, MapperKind::RoBaRaCoCh);
  EXPECT_EQ(m.capacity(), uint64_t(2) * 4 * 4 * 32768 * 32);
  DramCoord a = m.map(0), b = m.map(31), x = m.map(32), y = m.map(64);
  EXPECT_EQ(a.row, b.row);
  EXPECT_EQ(b.column, 31);
  EXPECT_EQ(x.pseudoChannel, 1);
  EXPECT_EQ(x.column, 0);
  EXPECT_EQ(y.bankGroup, 1);
  for (uint64_t i : {uint64_t(0), uint64_t(12345), m.capacity() - 1}) EXPECT_EQ(m.unmap(m.map(i)), i);
  AddressMapper m2(c.org, MapperKind::ChRaBaRoCo);
  EXPECT_EQ(m2.map(32).row, 1);
  for (uint64_t i : {uint64_t(7), uint64_t(99999)}) EXPECT_EQ(m2.unmap(m2.map(i)), i);
}

}  // namespace
}  // namespace spatten::dram
