// spatten-dram-replay: drives DRAM ports directly (no RTL) from a request trace or a
// synthetic pattern and prints their statistics as JSON.
//
//   replay --trace FILE [options]        replay a trace written by +dram_trace (open loop:
//                                        each request is offered at its cycle, later when
//                                        the port is full; requests keep their order)
//   replay --pattern seq|random --count N --outstanding K [--channels C] [--seed S]
//                                        closed loop: keep K requests in flight per channel
// Options: --backend builtin|ramulator2|ideal  --config YAML  --ideal-latency N
//          --clock-mhz MHZ  --depth N (port depth; default max(64, K))  --addr-bits B
//          --burst-bytes B  --stats FILE (also write the JSON there)
//          --latencies FILE (one line per request: channel address latency)
//          --span BYTES (random pattern: addresses below this; default 256 MiB)
// The JSON on stdout has the fields of +dram_stats plus "total_cycles" (cycles until
// the last response) and "wall_seconds", "ns_per_cycle" (simulation speed).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend_factory.h"
#include "dram_error.h"
#include "dram_options.h"
#include "dram_port.h"
#include "dram_stats.h"
#include "dram_trace.h"

namespace {

using spatten::dram::DramError;

struct Args {
  std::string trace, pattern = "", stats, latencies;
  spatten::dram::DramOptions opts;
  long count = 0;
  int outstanding = 16, channels = 1, depth = 0, addrBits = 32, burstBytes = 32;
  bool channelsSet = false, addrBitsSet = false, burstSet = false, clockSet = false;
  unsigned seed = 1;
  uint64_t span = 256ull << 20;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr, "replay: %s\n(see the comment at the top of hardware/dpi/replay.cc)\n", msg.c_str());
  std::exit(2);
}

long toLong(const std::string& flag, const char* v) {
  char* end = nullptr;
  long x = std::strtol(v, &end, 0);
  if (*v == '\0' || *end != '\0') usage(flag + " expects an integer, got '" + v + "'");
  return x;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage(f + " needs a value");
      return argv[++i];
    };
    if (f == "--trace") a.trace = val();
    else if (f == "--pattern") a.pattern = val();
    else if (f == "--count") a.count = toLong(f, val());
    else if (f == "--outstanding") a.outstanding = static_cast<int>(toLong(f, val()));
    else if (f == "--channels") { a.channels = static_cast<int>(toLong(f, val())); a.channelsSet = true; }
    else if (f == "--seed") a.seed = static_cast<unsigned>(toLong(f, val()));
    else if (f == "--backend") a.opts.backend = val();
    else if (f == "--config") a.opts.configPath = val();
    else if (f == "--ideal-latency") a.opts.idealLatency = static_cast<int>(toLong(f, val()));
    else if (f == "--clock-mhz") { a.opts.clockMhz = static_cast<int>(toLong(f, val())); a.clockSet = true; }
    else if (f == "--depth") a.depth = static_cast<int>(toLong(f, val()));
    else if (f == "--addr-bits") { a.addrBits = static_cast<int>(toLong(f, val())); a.addrBitsSet = true; }
    else if (f == "--burst-bytes") { a.burstBytes = static_cast<int>(toLong(f, val())); a.burstSet = true; }
    else if (f == "--stats") a.stats = val();
    else if (f == "--latencies") a.latencies = val();
    else if (f == "--span") a.span = static_cast<uint64_t>(toLong(f, val()));
    else usage("unknown argument '" + f + "'");
  }
  if (a.trace.empty() == a.pattern.empty()) usage("give exactly one of --trace FILE and --pattern seq|random");
  if (!a.pattern.empty() && a.pattern != "seq" && a.pattern != "random") usage("--pattern must be seq or random");
  if (!a.pattern.empty() && a.count <= 0) usage("--pattern needs --count N > 0");
  if (a.outstanding < 1) usage("--outstanding must be positive");
  return a;
}

/// One channel's request source and response bookkeeping.
struct Lane {
  std::unique_ptr<spatten::dram::DramPort> port;
  std::vector<spatten::dram::TraceEntry> reqs;  // trace mode: this channel's requests
  size_t next = 0;                              // next request to offer
  std::vector<int64_t> acceptedAt;              // per request
  size_t responses = 0;
  int64_t lastResponse = 0;
  std::vector<int64_t> latency;
};

int run(const Args& a) {
  spatten::dram::TraceHeader h;
  h.numChannels = a.channels;
  h.addrBits = a.addrBits;
  h.burstBytes = a.burstBytes;
  h.clockMhz = a.opts.clockMhz;
  std::vector<spatten::dram::TraceEntry> trace;
  if (!a.trace.empty()) {
    trace = spatten::dram::readTrace(a.trace, &h);
    if (a.channelsSet) h.numChannels = a.channels;
    if (a.addrBitsSet) h.addrBits = a.addrBits;
    if (a.burstSet) h.burstBytes = a.burstBytes;
    if (a.clockSet) h.clockMhz = a.opts.clockMhz;
  }
  spatten::dram::DramOptions opts = a.opts;
  opts.clockMhz = h.clockMhz;
  const bool closedLoop = !a.pattern.empty();
  const int depth = a.depth > 0 ? a.depth : (closedLoop ? a.outstanding : 64);
  std::vector<Lane> lanes(h.numChannels);
  int dramClockPs = 0;
  for (int c = 0; c < h.numChannels; ++c) {
    spatten::dram::PortConfig pc;
    pc.channel = c;
    pc.numChannels = h.numChannels;
    pc.burstBytes = h.burstBytes;
    pc.addrBits = h.addrBits;
    pc.clockMhz = h.clockMhz;
    pc.depth = depth;
    auto backend = spatten::dram::makeBackend(opts);
    dramClockPs = backend->clockPeriodPs();
    lanes[c].port = std::make_unique<spatten::dram::DramPort>(pc, std::move(backend), nullptr, nullptr);
  }
  // Requests per channel.
  const uint64_t B = static_cast<uint64_t>(h.burstBytes), C = static_cast<uint64_t>(h.numChannels);
  if (!closedLoop) {
    for (const auto& e : trace) {
      if (e.addr % B != 0) {
        throw DramError("trace " + a.trace + ": address " + std::to_string(e.addr) + " is not burst-aligned");
      }
      lanes[(e.addr / B) % C].reqs.push_back(e);
    }
  } else {
    std::mt19937_64 rng(a.seed);
    const uint64_t bursts = a.span / B / C;
    for (int c = 0; c < h.numChannels; ++c) {
      for (long i = 0; i < a.count; ++i) {
        const uint64_t local = a.pattern == "seq" ? static_cast<uint64_t>(i) : rng() % bursts;
        lanes[c].reqs.push_back({0, (local * C + c) * B});
      }
    }
  }
  for (auto& l : lanes) l.acceptedAt.assign(l.reqs.size(), -1);
  size_t total = 0;
  for (const auto& l : lanes) total += l.reqs.size();
  size_t done = 0;
  int64_t cycle = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t limit = 4'000'000'000LL;
  while (done < total) {
    for (auto& l : lanes) {
      auto& p = *l.port;
      if (p.respValid()) {
        const size_t k = l.responses++;
        l.latency.push_back(cycle + 1 - l.acceptedAt[k]);
        l.lastResponse = cycle + 1;
        ++done;
      }
      bool offer = l.next < l.reqs.size();
      if (offer && !closedLoop && l.reqs[l.next].cycle > cycle) offer = false;
      if (offer && closedLoop && static_cast<int>(p.inFlight()) >= a.outstanding) offer = false;
      const bool fire = offer && p.reqReady();
      const uint64_t addr = offer ? l.reqs[l.next].addr : 0;
      p.tick(false, offer, addr, true);
      if (fire) l.acceptedAt[l.next++] = cycle + 1;
    }
    ++cycle;
    if (cycle > limit) throw DramError("replay: no progress after " + std::to_string(limit) + " cycles");
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t lastResponse = 0;
  std::vector<spatten::dram::PortStats> stats;
  for (const auto& l : lanes) {
    stats.push_back(l.port->stats());
    lastResponse = std::max(lastResponse, l.lastResponse);
  }
  spatten::dram::RunInfo info;
  info.backend = opts.backend;
  info.config = opts.backend == "ideal" ? "(none)" : (opts.configPath.empty() ? "(built-in default)" : opts.configPath);
  info.image = "";
  info.clockMhz = h.clockMhz;
  info.burstBytes = h.burstBytes;
  info.numChannels = h.numChannels;
  info.dramClockPs = dramClockPs;
  std::string json = spatten::dram::statsJson(info, stats);
  // Append run-level fields before the closing brace.
  const size_t close = json.rfind('}');
  char extra[256];
  std::snprintf(extra, sizeof extra, ",\n  \"total_cycles\": %lld,\n  \"wall_seconds\": %.6f,\n  \"ns_per_cycle\": %.3f\n",
                static_cast<long long>(lastResponse), wall, cycle ? wall * 1e9 / static_cast<double>(cycle) : 0.0);
  json = json.substr(0, close).substr(0, json.substr(0, close).find_last_not_of(" \n") + 1) + extra + "}\n";
  std::fputs(json.c_str(), stdout);
  if (!a.stats.empty()) spatten::dram::writeFileAtomic(a.stats, json);
  if (!a.latencies.empty()) {
    std::string text;
    for (int c = 0; c < h.numChannels; ++c) {
      for (size_t k = 0; k < lanes[c].latency.size(); ++k) {
        text += std::to_string(c) + " " + std::to_string(lanes[c].reqs[k].addr) + " " +
                std::to_string(lanes[c].latency[k]) + "\n";
      }
    }
    spatten::dram::writeFileAtomic(a.latencies, text);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "replay: error: %s\n", e.what());
    return 1;
  }
}
