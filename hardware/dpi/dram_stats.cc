#include "dram_stats.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <sstream>

#include "dram_error.h"

namespace spatten::dram {
namespace {

std::string quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

std::string num(int64_t v) { return v < 0 ? "null" : std::to_string(v); }

std::string real(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

void channelJson(std::ostringstream& o, const PortStats& p, const RunInfo& run, const char* indent) {
  const BackendStats& d = p.dram;
  const double cycles = static_cast<double>(p.accelCycles);
  const double gbps = cycles > 0 ? p.bytes * (run.clockMhz / 1000.0) / cycles : 0.0;
  o << indent << "{\"channel\": " << p.channel << ", \"backend\": " << quote(p.backend)
    << ", \"reads\": " << p.reads << ", \"bytes\": " << p.bytes
    << ", \"row_hits\": " << num(d.rowHits) << ", \"row_misses\": " << num(d.rowMisses)
    << ", \"row_conflicts\": " << num(d.rowConflicts) << ", \"refreshes\": " << num(d.refreshes)
    << ", \"avg_latency_cycles\": " << real(p.reads ? p.latencySum / p.reads : 0.0)
    << ", \"max_latency_cycles\": " << p.latencyMax
    << ", \"avg_latency_dram_cycles\": " << real(d.reads ? d.latencySum / d.reads : 0.0)
    << ", \"max_latency_dram_cycles\": " << d.latencyMax << ", \"cycles\": " << p.accelCycles
    << ", \"busy_cycles\": " << p.busyCycles << ", \"dram_cycles\": " << d.dramCycles
    << ", \"busy_dram_cycles\": " << d.busyCycles << ", \"data_bus_cycles\": " << num(d.dataBusCycles)
    << ", \"bandwidth_GBps\": " << real(gbps) << ", \"peak_GBps\": ";
  if (d.peakBurstsPerCycle < 0) {
    o << "null";
  } else {  // bursts per DRAM cycle -> GB/s (bytes per ns)
    const double periodPs = run.dramClockPs > 0 ? run.dramClockPs : 1e6 / run.clockMhz;
    o << real(d.peakBurstsPerCycle * run.burstBytes * 1000.0 / periodPs);
  }
  o << "}";
}

}  // namespace

std::string statsJson(const RunInfo& run, const std::vector<PortStats>& channels) {
  std::ostringstream o;
  o << "{\n  \"backend\": " << quote(run.backend) << ",\n  \"config\": " << quote(run.config)
    << ",\n  \"image\": " << quote(run.image) << ",\n  \"clock_mhz\": " << run.clockMhz
    << ",\n  \"dram_clock_ps\": " << run.dramClockPs << ",\n  \"burst_bytes\": " << run.burstBytes
    << ",\n  \"num_channels\": " << run.numChannels << ",\n  \"channels\": [\n";
  PortStats total;
  total.channel = -1;
  total.backend = run.backend;
  total.dram.rowHits = total.dram.rowMisses = total.dram.rowConflicts = total.dram.refreshes = 0;
  total.dram.dataBusCycles = 0;
  total.dram.peakBurstsPerCycle = 0;
  for (size_t i = 0; i < channels.size(); ++i) {
    const PortStats& p = channels[i];
    channelJson(o, p, run, "    ");
    o << (i + 1 < channels.size() ? ",\n" : "\n");
    total.reads += p.reads;
    total.bytes += p.bytes;
    total.accelCycles = std::max(total.accelCycles, p.accelCycles);
    total.busyCycles = std::max(total.busyCycles, p.busyCycles);
    total.latencySum += p.latencySum;
    total.latencyMax = std::max(total.latencyMax, p.latencyMax);
    auto add = [](int64_t* t, int64_t v) { *t = (*t < 0 || v < 0) ? -1 : *t + v; };
    add(&total.dram.rowHits, p.dram.rowHits);
    add(&total.dram.rowMisses, p.dram.rowMisses);
    add(&total.dram.rowConflicts, p.dram.rowConflicts);
    add(&total.dram.refreshes, p.dram.refreshes);
    add(&total.dram.dataBusCycles, p.dram.dataBusCycles);
    total.dram.reads += p.dram.reads;
    total.dram.latencySum += p.dram.latencySum;
    total.dram.latencyMax = std::max(total.dram.latencyMax, p.dram.latencyMax);
    total.dram.dramCycles = std::max(total.dram.dramCycles, p.dram.dramCycles);
    total.dram.busyCycles = std::max(total.dram.busyCycles, p.dram.busyCycles);
    total.dram.peakBurstsPerCycle = (total.dram.peakBurstsPerCycle < 0 || p.dram.peakBurstsPerCycle < 0)
                                        ? -1 : total.dram.peakBurstsPerCycle + p.dram.peakBurstsPerCycle;
  }
  o << "  ],\n  \"total\":\n";
  channelJson(o, total, run, "    ");
  o << "\n}\n";
  return o.str();
}

void writeFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) throw DramError("cannot write " + tmp + ": " + std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) throw DramError("cannot write " + tmp + ": " + std::strerror(errno));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw DramError("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
}

}  // namespace spatten::dram
