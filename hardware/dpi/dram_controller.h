// The memory controller of one HBM2 channel: read queue, FR-FCFS scheduling,
// all-bank refresh, in-flight reads.
#ifndef SPATTEN_DPI_DRAM_CONTROLLER_H
#define SPATTEN_DPI_DRAM_CONTROLLER_H

#include <cstdint>
#include <deque>
#include <vector>

#include "address_mapper.h"
#include "dram_backend.h"
#include "dram_config.h"
#include "hbm2_device.h"

namespace spatten::dram {

/// One HBM2 channel's controller. Each tick it (1) hands back at most one read whose
/// data have arrived, (2) raises a refresh every nREFI cycles (AllBank), (3) issues at
/// most one command:
///  - first a request whose row it already activated (the "active" set), if its RD is ready;
///  - else a due refresh (PREA, then REF; nothing else issues while it waits);
///  - else the read queue's best request by the scheduler:
///    FRFCFS: ready commands first, then row hits, then the oldest; a row that a
///    waiting request hits is not precharged;
///    FRFCFS_Cap: as FRFCFS, but a bank's row hits lose their priority (and their
///    row its protection) after `cap` of them have bypassed an older request to
///    that bank;
///    FCFS: the oldest request only.
///  A PRE is not issued while an activated request still needs that bank's row.
/// A read completes nCL + nBL cycles after its RD.
class DramController {
 public:
  DramController(const DramConfig& cfg);

  /// Enqueues a read; false when the read queue is full.
  bool send(const DramCoord& c, uint64_t tag);
  void tick();
  void drainCompleted(std::vector<uint64_t>* done);
  bool idle() const { return queue_.empty() && active_.empty() && pending_.empty(); }
  const BackendStats& stats() const { return stats_; }
  int64_t clock() const { return clk_; }

 private:
  enum class Kind { Unknown, Hit, Miss, Conflict };
  struct Req {
    DramCoord coord;
    uint64_t tag;
    int64_t arrive;
    uint64_t seq;  ///< arrival order
    int64_t depart = -1;
    Kind kind = Kind::Unknown;
  };

  /// Index of the best request in `reqs` (or -1), and its command and readiness.
  int pick(std::vector<Req>& reqs, Command* cmd, bool* ready);
  void issue(std::vector<Req>& from, int i, Command cmd);
  bool closesActiveRow(const DramCoord& c) const;

  DramConfig cfg_;
  Hbm2Device device_;
  int64_t clk_ = 0;
  uint64_t nextSeq_ = 0;
  std::vector<Req> queue_;     ///< waiting reads, oldest first
  std::vector<Req> active_;    ///< reads whose row was activated for them
  std::deque<Req> pending_;    ///< RD issued, data on the way
  std::vector<uint64_t> completed_;
  std::vector<int> hitBanks_;     ///< scratch of pick()
  std::vector<int> bypassCount_;  ///< FRFCFS_Cap: per bank hits that bypassed an older request
  int64_t nextRefresh_;
  int refreshesDue_ = 0;
  BackendStats stats_;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_CONTROLLER_H
