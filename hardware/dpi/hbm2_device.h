// State and JEDEC timing rules of one HBM2 channel (pseudo-channels, bank groups, banks).
#ifndef SPATTEN_DPI_HBM2_DEVICE_H
#define SPATTEN_DPI_HBM2_DEVICE_H

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "address_mapper.h"
#include "dram_config.h"

namespace spatten::dram {

/// DRAM commands the read-only controller issues.
enum class Command { ACT, PRE, PREA, RD, REF };
constexpr int kNumCommands = 5;
const char* commandName(Command c);

/// One HBM2 channel: which rows are open, and the earliest cycle each command may be
/// issued at every level (channel, pseudo-channel, bank group, bank).
///
/// Timing rules (prev -> next: minimum distance in tCK), JESD235 / Ramulator2 HBM2:
///  - channel:        ACT -> ACT, PRE, PREA, REF: 2 (two-cycle ACT on the row bus)
///  - pseudo-channel: ACT -> ACT: nRRDS; 4 ACTs in nFAW; RD -> RD: max(nBL, nCCDS)
///                    (data bus); ACT -> PREA: nRAS; RD -> PREA: nRTPS; PREA -> ACT: nRP;
///                    ACT -> REF: nRC; PRE/PREA -> REF: nRP; REF -> ACT, REF: nRFC
///  - bank group:     RD -> RD: nCCDL; ACT -> ACT: nRRDL
///  - bank:           ACT -> ACT: nRC; ACT -> RD: nRCDRD; ACT -> PRE: nRAS;
///                    PRE -> ACT: nRP; RD -> PRE: max(nRTPS, nRTPL)
/// PREA and REF address the whole channel; ACT, PRE and RD one bank.
class Hbm2Device {
 public:
  Hbm2Device(const Organization& org, const Timing& timing);

  /// The command a read of `c` needs next: RD (row open), ACT (bank closed) or PRE.
  Command requiredCommand(const DramCoord& c) const;
  /// True when `cmd` may be issued to `c` at cycle `clk`.
  bool ready(Command cmd, const DramCoord& c, int64_t clk) const;
  /// Issues `cmd` at cycle `clk` (the caller checked ready()).
  void issue(Command cmd, const DramCoord& c, int64_t clk);

  bool anyBankOpen() const;
  int openRow(const DramCoord& c) const { return openRow_[bankIndex(c)]; }
  int bankIndex(const DramCoord& c) const {
    return (c.pseudoChannel * org_.bankGroups + c.bankGroup) * org_.banks + c.bank;
  }
  const Timing& timing() const { return timing_; }

 private:
  enum Level { kChannel, kPseudoChannel, kBankGroup, kBank, kNumLevels };
  struct Rule {
    Command next;
    int latency;
    int window;  ///< 1: from the last issue; n: from the n-th last issue
  };
  struct Node {
    std::array<int64_t, kNumCommands> readyAt{};
    std::deque<int64_t> actHistory;  ///< recent ACT cycles (pseudo-channel nFAW window)
  };

  void addRule(Level l, Command prev, Command next, int latency, int window = 1);
  void applyRules(Level l, Node* n, Command cmd, int64_t clk);
  template <typename F>
  void forEachTarget(Command cmd, const DramCoord& c, F f);
  template <typename F>
  bool allTargets(Command cmd, const DramCoord& c, F f) const;

  Organization org_;
  Timing timing_;
  std::array<std::array<std::vector<Rule>, kNumCommands>, kNumLevels> rules_;
  Node channel_;
  std::vector<Node> pch_, bg_, bank_;
  std::vector<int> openRow_;
  int openBanks_ = 0;
  int maxWindow_ = 1;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_HBM2_DEVICE_H
