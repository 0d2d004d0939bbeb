#include "dram_config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "dram_error.h"
#include "hbm2_presets.h"

namespace spatten::dram {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool isPow2(long v) { return v > 0 && (v & (v - 1)) == 0; }

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    throw DramError("DRAM config " + source_ + ": " + key + ": " + msg);
  }

  YAML::Node required(const YAML::Node& parent, const std::string& key, const std::string& path) const {
    if (!parent.IsMap() || !parent[key]) fail(path + key, "missing field");
    return parent[key];
  }

  std::string str(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) fail(path, "expected a string");
    return n.as<std::string>();
  }

  long integer(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) fail(path, "expected an integer");
    try {
      return n.as<long>();
    } catch (const YAML::Exception&) {
      fail(path, "expected an integer, got '" + n.as<std::string>() + "'");
    }
  }

  double real(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) fail(path, "expected a number");
    try {
      return n.as<double>();
    } catch (const YAML::Exception&) {
      fail(path, "expected a number, got '" + n.as<std::string>() + "'");
    }
  }

  std::string impl(const YAML::Node& parent, const std::string& key, const std::string& path) const {
    YAML::Node n = required(parent, key, path);
    return str(required(n, "impl", path + key + "."), path + key + ".impl");
  }

 private:
  std::string source_;
};

// Timing fields by their Ramulator2 names (n* in cycles; t* accepted in ns).
std::map<std::string, int Timing::*> timingFields() {
  return {{"nBL", &Timing::nBL},       {"nCL", &Timing::nCL},       {"nRCDRD", &Timing::nRCDRD},
          {"nRCDWR", &Timing::nRCDWR}, {"nRP", &Timing::nRP},       {"nRAS", &Timing::nRAS},
          {"nRC", &Timing::nRC},       {"nWR", &Timing::nWR},       {"nRTPS", &Timing::nRTPS},
          {"nRTPL", &Timing::nRTPL},   {"nCWL", &Timing::nCWL},     {"nCCDS", &Timing::nCCDS},
          {"nCCDL", &Timing::nCCDL},   {"nRRDS", &Timing::nRRDS},   {"nRRDL", &Timing::nRRDL},
          {"nWTRS", &Timing::nWTRS},   {"nWTRL", &Timing::nWTRL},   {"nRTW", &Timing::nRTW},
          {"nFAW", &Timing::nFAW},     {"nRFC", &Timing::nRFC},     {"nRFCSB", &Timing::nRFCSB},
          {"nREFI", &Timing::nREFI},   {"nREFISB", &Timing::nREFISB}, {"nRREFD", &Timing::nRREFD}};
}

void parseOrg(const Reader& rd, const YAML::Node& org, DramConfig* cfg) {
  const std::string p = "MemorySystem.DRAM.org.";
  Organization o;
  o.densityMb = o.dq = o.channels = o.pseudoChannels = o.bankGroups = o.banks = o.rows = o.columns = -1;
  if (org["preset"]) {
    cfg->orgPreset = rd.str(org["preset"], p + "preset");
    if (!hbm2OrgPreset(cfg->orgPreset, &o)) {
      rd.fail(p + "preset", "unknown organization preset '" + cfg->orgPreset + "'; known: " +
                                join(hbm2OrgPresetNames()));
    }
  }
  const std::map<std::string, int Organization::*> fields = {
      {"density", &Organization::densityMb}, {"dq", &Organization::dq},
      {"channel", &Organization::channels},  {"pseudochannel", &Organization::pseudoChannels},
      {"bankgroup", &Organization::bankGroups}, {"bank", &Organization::banks},
      {"row", &Organization::rows},          {"column", &Organization::columns},
      {"channel_width", &Organization::channelWidth}};
  for (auto it = org.begin(); it != org.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (key == "preset") continue;
    auto f = fields.find(key);
    if (f == fields.end()) rd.fail(p + key, "unknown organization field");
    long v = rd.integer(it->second, p + key);
    if (v <= 0 || v > (1L << 30)) rd.fail(p + key, "must be a positive integer, got " + std::to_string(v));
    o.*(f->second) = static_cast<int>(v);
  }
  for (const auto& [name, ptr] : fields) {
    if (o.*ptr < 0) rd.fail(p + name, "missing field (no preset gives it)");
  }
  const std::pair<const char*, int> counts[] = {
      {"channel", o.channels}, {"pseudochannel", o.pseudoChannels}, {"bankgroup", o.bankGroups},
      {"bank", o.banks},       {"row", o.rows},                     {"column", o.columns}};
  for (const auto& [name, v] : counts) {
    if (!isPow2(v)) rd.fail(p + name, "must be a power of two, got " + std::to_string(v));
  }
  if (o.columns < o.prefetch) rd.fail(p + "column", "must be at least the prefetch (2)");
  long long bits = 1LL * o.pseudoChannels * o.bankGroups * o.banks * o.rows * o.columns * o.dq;
  long long mb = bits >> 20;
  if (mb != o.densityMb) {
    rd.fail(p + "density", "calculated channel density " + std::to_string(mb) +
                               " Mb (pseudochannel*bankgroup*bank*row*column*dq) does not equal " +
                               std::to_string(o.densityMb) + " Mb");
  }
  cfg->org = o;
}

void parseTiming(const Reader& rd, const YAML::Node& timing, DramConfig* cfg) {
  const std::string p = "MemorySystem.DRAM.timing.";
  Timing t;
  const auto fields = timingFields();
  for (const auto& kv : fields) t.*(kv.second) = -1;
  t.rate = -1;
  bool preset = false;
  if (timing["preset"]) {
    cfg->timingPreset = rd.str(timing["preset"], p + "preset");
    if (!hbm2TimingPreset(cfg->timingPreset, &t)) {
      rd.fail(p + "preset", "unknown timing preset '" + cfg->timingPreset + "'; known: " +
                                join(hbm2TimingPresetNames()));
    }
    preset = true;
  }
  if (timing["rate"]) {
    if (preset) rd.fail(p + "rate", "cannot change the transfer rate when a timing preset is used");
    long r = rd.integer(timing["rate"], p + "rate");
    if (r <= 0) rd.fail(p + "rate", "must be positive");
    t.rate = static_cast<int>(r);
  }
  if (t.rate <= 0) rd.fail(p + "rate", "missing field (no preset gives it)");
  t.tCKps = static_cast<int>(1000000 / (t.rate / 2));
  int trfc = hbm2TrfcNs(cfg->org.densityMb);
  if (trfc > 0) t.nRFC = jedecCycles(trfc, t.tCKps);
  for (auto it = timing.begin(); it != timing.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (key == "preset" || key == "rate") continue;
    std::string nkey = key;
    bool ns = false;
    if (!key.empty() && key[0] == 't') {
      nkey[0] = 'n';
      ns = true;
    }
    auto f = fields.find(nkey);
    if (f == fields.end()) rd.fail(p + key, "unknown timing parameter");
    long v = ns ? jedecCycles(rd.real(it->second, p + key), t.tCKps) : rd.integer(it->second, p + key);
    if (v < 0 || v > 1000000) rd.fail(p + key, "out of range: " + std::to_string(v));
    t.*(f->second) = static_cast<int>(v);
  }
  // nREFISB and nRFCSB belong to per-bank refresh, which this model does not use.
  for (const auto& [name, ptr] : fields) {
    if (name == "nREFISB" || name == "nRFCSB") continue;
    if (t.*ptr < 0) rd.fail(p + name, "missing field (no preset gives it)");
  }
  if (t.nBL <= 0 || t.nCL <= 0 || t.nREFI <= 0) rd.fail(p + "nBL/nCL/nREFI", "must be positive");
  cfg->timing = t;
}

}  // namespace

int jedecCycles(double ns, int tCKps) {
  // ceil(ns / tCK) with the JEDEC 0.974 guard band for floating-point timings.
  const long long ps = std::llround(ns * 1000.0);
  return static_cast<int>((ps * 1000 / tCKps + 974) / 1000);
}

DramConfig parseDramConfig(const std::string& yamlText, const std::string& source) {
  Reader rd(source);
  YAML::Node root;
  try {
    root = YAML::Load(yamlText);
  } catch (const YAML::Exception& e) {
    throw DramError("DRAM config " + source + ": not valid YAML: " + e.what());
  }
  DramConfig cfg;
  cfg.source = source;
  if (!root.IsMap()) rd.fail("(top level)", "expected a mapping with a MemorySystem key");
  YAML::Node ms = rd.required(root, "MemorySystem", "");
  std::string msImpl = rd.str(rd.required(ms, "impl", "MemorySystem."), "MemorySystem.impl");
  if (msImpl != "GenericDRAM") rd.fail("MemorySystem.impl", "unsupported '" + msImpl + "' (expected GenericDRAM)");
  if (ms["clock_ratio"]) {
    long r = rd.integer(ms["clock_ratio"], "MemorySystem.clock_ratio");
    if (r != 1) {
      rd.fail("MemorySystem.clock_ratio", "only 1 is supported; the accelerator clock is set with +clock_mhz");
    }
    cfg.clockRatio = 1;
  }
  YAML::Node dram = rd.required(ms, "DRAM", "MemorySystem.");
  cfg.dramImpl = rd.str(rd.required(dram, "impl", "MemorySystem.DRAM."), "MemorySystem.DRAM.impl");
  if (cfg.dramImpl != "HBM2") {
    rd.fail("MemorySystem.DRAM.impl", "unsupported '" + cfg.dramImpl + "' (the built-in model implements HBM2)");
  }
  parseOrg(rd, rd.required(dram, "org", "MemorySystem.DRAM."), &cfg);
  parseTiming(rd, rd.required(dram, "timing", "MemorySystem.DRAM."), &cfg);

  YAML::Node ctrl = rd.required(ms, "Controller", "MemorySystem.");
  std::string ctrlImpl = rd.str(rd.required(ctrl, "impl", "MemorySystem.Controller."), "MemorySystem.Controller.impl");
  if (ctrlImpl != "Generic") rd.fail("MemorySystem.Controller.impl", "unsupported '" + ctrlImpl + "' (expected Generic)");
  if (ctrl["read_queue_size"]) {
    long q = rd.integer(ctrl["read_queue_size"], "MemorySystem.Controller.read_queue_size");
    if (q < 1 || q > 4096) rd.fail("MemorySystem.Controller.read_queue_size", "must be in 1..4096");
    cfg.readQueueSize = static_cast<int>(q);
  }
  std::string sched = rd.impl(ctrl, "Scheduler", "MemorySystem.Controller.");
  if (sched == "FRFCFS") {
    cfg.scheduler = SchedulerKind::FRFCFS;
  } else if (sched == "FRFCFS_Cap") {
    cfg.scheduler = SchedulerKind::FRFCFSCap;
    if (ctrl["Scheduler"]["cap"]) {
      long c = rd.integer(ctrl["Scheduler"]["cap"], "MemorySystem.Controller.Scheduler.cap");
      if (c < 1) rd.fail("MemorySystem.Controller.Scheduler.cap", "must be positive");
      cfg.schedulerCap = static_cast<int>(c);
    }
  } else if (sched == "FCFS") {
    cfg.scheduler = SchedulerKind::FCFS;
  } else {
    rd.fail("MemorySystem.Controller.Scheduler.impl", "unknown scheduler '" + sched + "'; known: FRFCFS, FRFCFS_Cap, FCFS");
  }
  std::string refresh = rd.impl(ctrl, "RefreshManager", "MemorySystem.Controller.");
  if (refresh == "AllBank") {
    cfg.refresh = RefreshKind::AllBank;
  } else if (refresh == "None") {
    cfg.refresh = RefreshKind::None;
  } else {
    rd.fail("MemorySystem.Controller.RefreshManager.impl", "unknown refresh manager '" + refresh + "'; known: AllBank, None");
  }
  std::string mapper = rd.impl(ms, "AddrMapper", "MemorySystem.");
  if (mapper == "RoBaRaCoCh") {
    cfg.mapper = MapperKind::RoBaRaCoCh;
  } else if (mapper == "ChRaBaRoCo") {
    cfg.mapper = MapperKind::ChRaBaRoCo;
  } else {
    rd.fail("MemorySystem.AddrMapper.impl", "unknown address mapper '" + mapper + "'; known: RoBaRaCoCh, ChRaBaRoCo");
  }
  return cfg;
}

DramConfig loadDramConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DramError("DRAM config " + path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parseDramConfig(ss.str(), path);
}

const char* defaultDramConfigYaml() {
  return "Frontend: {impl: GEM5}\n"
         "MemorySystem:\n"
         "  impl: GenericDRAM\n"
         "  clock_ratio: 1\n"
         "  DRAM: {impl: HBM2, org: {preset: HBM2_8Gb, density: 8192}, timing: {preset: HBM2_2Gbps}}\n"
         "  Controller: {impl: Generic, Scheduler: {impl: FRFCFS}, RefreshManager: {impl: AllBank}}\n"
         "  AddrMapper: {impl: RoBaRaCoCh}\n";
}

DramConfig defaultDramConfig() { return parseDramConfig(defaultDramConfigYaml(), "(built-in default)"); }

}  // namespace spatten::dram
