#include "hbm2_presets.h"

#include <map>

namespace spatten::dram {
namespace {

struct OrgRow {
  int densityMb, dq, channels, pseudoChannels, bankGroups, banks, rows, columns;
};

// Per channel: 2 pseudo-channels of 64 bits; density = pch*bg*ba*rows*cols*dq / 2^20.
const std::map<std::string, OrgRow>& orgTable() {
  static const std::map<std::string, OrgRow> t = {
      {"HBM2_2Gb", {2048, 128, 1, 2, 4, 2, 1 << 14, 1 << 6}},
      {"HBM2_4Gb", {4096, 128, 1, 2, 4, 4, 1 << 14, 1 << 6}},
      {"HBM2_8Gb", {8192, 128, 1, 2, 4, 4, 1 << 15, 1 << 6}},
  };
  return t;
}

// rate nBL nCL nRCDRD nRCDWR nRP nRAS nRC nWR nRTPS nRTPL nCWL nCCDS nCCDL nRRDS nRRDL
// nWTRS nWTRL nRTW nFAW nRFC nRFCSB nREFI nREFISB nRREFD
const std::map<std::string, Timing>& timingTable() {
  static const std::map<std::string, Timing> t = [] {
    std::map<std::string, Timing> m;
    Timing h;
    h.rate = 2000; h.nBL = 4; h.nCL = 7; h.nRCDRD = 7; h.nRCDWR = 7; h.nRP = 7; h.nRAS = 17;
    h.nRC = 19; h.nWR = 8; h.nRTPS = 2; h.nRTPL = 3; h.nCWL = 2; h.nCCDS = 1; h.nCCDL = 2;
    h.nRRDS = 2; h.nRRDL = 3; h.nWTRS = 3; h.nWTRL = 4; h.nRTW = 3; h.nFAW = 15;
    h.nRFC = -1;  // from the density (hbm2TrfcNs)
    h.nRFCSB = 160; h.nREFI = 3900; h.nREFISB = -1; h.nRREFD = 8;
    h.tCKps = 1000000 / (h.rate / 2);
    m["HBM2_2Gbps"] = h;
    return m;
  }();
  return t;
}

}  // namespace

bool hbm2OrgPreset(const std::string& name, Organization* out) {
  auto it = orgTable().find(name);
  if (it == orgTable().end()) return false;
  const OrgRow& r = it->second;
  out->densityMb = r.densityMb;
  out->dq = r.dq;
  out->channels = r.channels;
  out->pseudoChannels = r.pseudoChannels;
  out->bankGroups = r.bankGroups;
  out->banks = r.banks;
  out->rows = r.rows;
  out->columns = r.columns;
  return true;
}

bool hbm2TimingPreset(const std::string& name, Timing* out) {
  auto it = timingTable().find(name);
  if (it == timingTable().end()) return false;
  *out = it->second;
  return true;
}

std::vector<std::string> hbm2OrgPresetNames() {
  std::vector<std::string> v;
  for (const auto& kv : orgTable()) v.push_back(kv.first);
  return v;
}

std::vector<std::string> hbm2TimingPresetNames() {
  std::vector<std::string> v;
  for (const auto& kv : timingTable()) v.push_back(kv.first);
  return v;
}

int hbm2TrfcNs(int densityMb) {
  switch (densityMb) {
    case 2048: return 160;
    case 4096: return 260;
    case 8192: return 350;
    case 16384: return 450;
    default: return -1;
  }
}

}  // namespace spatten::dram
