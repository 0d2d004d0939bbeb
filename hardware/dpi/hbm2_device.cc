#include "hbm2_device.h"

#include <algorithm>

namespace spatten::dram {

const char* commandName(Command c) {
  switch (c) {
    case Command::ACT: return "ACT";
    case Command::PRE: return "PRE";
    case Command::PREA: return "PREA";
    case Command::RD: return "RD";
    case Command::REF: return "REF";
  }
  return "?";
}

namespace {
int idx(Command c) { return static_cast<int>(c); }
bool channelScoped(Command c) { return c == Command::PREA || c == Command::REF; }
}  // namespace

Hbm2Device::Hbm2Device(const Organization& org, const Timing& t) : org_(org), timing_(t) {
  const int nPch = org.pseudoChannels;
  const int nBg = nPch * org.bankGroups;
  const int nBank = nBg * org.banks;
  pch_.resize(nPch);
  bg_.resize(nBg);
  bank_.resize(nBank);
  openRow_.assign(nBank, -1);
  using C = Command;
  addRule(kChannel, C::ACT, C::ACT, 2);
  addRule(kChannel, C::ACT, C::PRE, 2);
  addRule(kChannel, C::ACT, C::PREA, 2);
  addRule(kChannel, C::ACT, C::REF, 2);

  addRule(kPseudoChannel, C::ACT, C::ACT, t.nRRDS);
  addRule(kPseudoChannel, C::ACT, C::ACT, t.nFAW, 4);
  addRule(kPseudoChannel, C::RD, C::RD, std::max(t.nBL, t.nCCDS));
  addRule(kPseudoChannel, C::ACT, C::PREA, t.nRAS);
  addRule(kPseudoChannel, C::RD, C::PREA, t.nRTPS);
  addRule(kPseudoChannel, C::PREA, C::ACT, t.nRP);
  addRule(kPseudoChannel, C::ACT, C::REF, t.nRC);
  addRule(kPseudoChannel, C::PRE, C::REF, t.nRP);
  addRule(kPseudoChannel, C::PREA, C::REF, t.nRP);
  addRule(kPseudoChannel, C::REF, C::ACT, t.nRFC);
  addRule(kPseudoChannel, C::REF, C::REF, t.nRFC);

  addRule(kBankGroup, C::RD, C::RD, t.nCCDL);
  addRule(kBankGroup, C::ACT, C::ACT, t.nRRDL);

  addRule(kBank, C::ACT, C::ACT, t.nRC);
  addRule(kBank, C::ACT, C::RD, t.nRCDRD);
  addRule(kBank, C::ACT, C::PRE, t.nRAS);
  addRule(kBank, C::PRE, C::ACT, t.nRP);
  addRule(kBank, C::RD, C::PRE, std::max(t.nRTPS, t.nRTPL));
}

void Hbm2Device::addRule(Level l, Command prev, Command next, int latency, int window) {
  rules_[l][idx(prev)].push_back({next, latency, window});
  maxWindow_ = std::max(maxWindow_, window);
}

void Hbm2Device::applyRules(Level l, Node* n, Command cmd, int64_t clk) {
  if (cmd == Command::ACT && l == kPseudoChannel) {
    n->actHistory.push_front(clk);
    if (static_cast<int>(n->actHistory.size()) > maxWindow_) n->actHistory.pop_back();
  }
  for (const Rule& r : rules_[l][idx(cmd)]) {
    int64_t base = clk;
    if (r.window > 1) {
      if (static_cast<int>(n->actHistory.size()) < r.window) continue;
      base = n->actHistory[r.window - 1];
    }
    int64_t& at = n->readyAt[idx(r.next)];
    at = std::max(at, base + r.latency);
  }
}

template <typename F>
void Hbm2Device::forEachTarget(Command cmd, const DramCoord& c, F f) {
  f(kChannel, &channel_);
  if (channelScoped(cmd)) {
    for (auto& n : pch_) f(kPseudoChannel, &n);
    for (auto& n : bg_) f(kBankGroup, &n);
    for (auto& n : bank_) f(kBank, &n);
    return;
  }
  f(kPseudoChannel, &pch_[c.pseudoChannel]);
  f(kBankGroup, &bg_[c.pseudoChannel * org_.bankGroups + c.bankGroup]);
  f(kBank, &bank_[bankIndex(c)]);
}

template <typename F>
bool Hbm2Device::allTargets(Command cmd, const DramCoord& c, F f) const {
  if (!f(channel_)) return false;
  if (channelScoped(cmd)) {
    for (const auto& n : pch_) if (!f(n)) return false;
    for (const auto& n : bg_) if (!f(n)) return false;
    for (const auto& n : bank_) if (!f(n)) return false;
    return true;
  }
  return f(pch_[c.pseudoChannel]) && f(bg_[c.pseudoChannel * org_.bankGroups + c.bankGroup]) &&
         f(bank_[bankIndex(c)]);
}

Command Hbm2Device::requiredCommand(const DramCoord& c) const {
  int open = openRow_[bankIndex(c)];
  if (open == c.row) return Command::RD;
  return open < 0 ? Command::ACT : Command::PRE;
}

bool Hbm2Device::ready(Command cmd, const DramCoord& c, int64_t clk) const {
  const int i = idx(cmd);
  return allTargets(cmd, c, [&](const Node& n) { return n.readyAt[i] <= clk; });
}

void Hbm2Device::issue(Command cmd, const DramCoord& c, int64_t clk) {
  forEachTarget(cmd, c, [&](Level l, Node* n) { applyRules(l, n, cmd, clk); });
  switch (cmd) {
    case Command::ACT: {
      int& r = openRow_[bankIndex(c)];
      if (r < 0) ++openBanks_;
      r = c.row;
      break;
    }
    case Command::PRE: {
      int& r = openRow_[bankIndex(c)];
      if (r >= 0) --openBanks_;
      r = -1;
      break;
    }
    case Command::PREA:
      std::fill(openRow_.begin(), openRow_.end(), -1);
      openBanks_ = 0;
      break;
    case Command::RD:
    case Command::REF:
      break;
  }
}

bool Hbm2Device::anyBankOpen() const { return openBanks_ > 0; }

}  // namespace spatten::dram
