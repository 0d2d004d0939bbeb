// The DPI-C functions SpAttenDram.sv calls: init (one handle per channel instance),
// tick (once per clock), finish (statistics). Everything the instances share lives
// in one Context, the only global this file keeps (DPI offers no other place).
// One more entry point is for the native harness, not for SystemVerilog:
// spatten_dram_host_write writes bytes into the memory (a host whose K/V cache grows
// while the accelerator runs; the harness's --stream mode).
#include <svdpi.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend_factory.h"
#include "backing_store.h"
#include "dram_error.h"
#include "dram_options.h"
#include "dram_port.h"
#include "dram_stats.h"
#include "dram_trace.h"

namespace spatten::dram {
namespace {

/// State shared by all SpAttenDram instances of one simulation.
struct Context {
  bool ready = false;
  DramOptions opts;
  std::shared_ptr<BackingStore> store;
  uint64_t addrLimit = 0;  ///< 2^addrBits
  std::shared_ptr<TraceWriter> trace;
  std::map<int, std::unique_ptr<DramPort>> ports;  ///< by channel
  std::map<int, PortStats> finished;               ///< channels whose finish ran
  RunInfo run;
};

Context& context() {
  static Context ctx;
  return ctx;
}

void report(int channel, const std::string& msg) {
  std::fprintf(stderr, "[SpAttenDram] channel %d: error: %s\n", channel, msg.c_str());
  std::fflush(stderr);
}

void setupOnce(Context& ctx, int numChannels, int burstBytes, int addrBits) {
  if (ctx.ready) return;
  ctx.opts = parseDramOptions(processPlusargs());
  if (!ctx.opts.imagePath.empty()) {
    ctx.store = std::make_shared<BackingStore>(ctx.opts.imagePath);
  } else {
    ctx.store = std::make_shared<BackingStore>();
  }
  ctx.addrLimit = addrBits >= 64 ? ~uint64_t{0} : (uint64_t{1} << addrBits);
  if (!ctx.opts.tracePath.empty()) {
    ctx.trace = std::make_shared<TraceWriter>(ctx.opts.tracePath,
                                              TraceHeader{numChannels, burstBytes, addrBits, ctx.opts.clockMhz});
  }
  ctx.run.backend = ctx.opts.backend;
  ctx.run.config = ctx.opts.backend == "ideal" ? "(none)"
                   : ctx.opts.configPath.empty() ? "(built-in default)"
                                                 : ctx.opts.configPath;
  ctx.run.image = ctx.opts.imagePath;
  ctx.run.clockMhz = ctx.opts.clockMhz;
  ctx.run.burstBytes = burstBytes;
  ctx.run.numChannels = numChannels;
  if (!ctx.opts.quiet) {
    std::fprintf(stderr, "[SpAttenDram] backend=%s config=%s image=%s clock_mhz=%d\n", ctx.opts.backend.c_str(),
                 ctx.run.config.c_str(), ctx.opts.imagePath.empty() ? "(none: memory reads as zero)"
                                                                   : ctx.opts.imagePath.c_str(),
                 ctx.opts.clockMhz);
  }
  ctx.ready = true;
}

}  // namespace
}  // namespace spatten::dram

using spatten::dram::Context;
using spatten::dram::context;
using spatten::dram::DramError;
using spatten::dram::DramPort;
using spatten::dram::report;

extern "C" {

/// Creates channel `channel`'s port; returns its handle, or null after printing why.
void* spatten_dram_init(int channel, int num_channels, int burst_bytes, int addr_bits) {
  Context& ctx = context();
  try {
    spatten::dram::setupOnce(ctx, num_channels, burst_bytes, addr_bits);
    if (ctx.ports.count(channel) != 0) throw DramError("two SpAttenDram instances have this channel id");
    if (num_channels != ctx.run.numChannels || burst_bytes != ctx.run.burstBytes) {
      throw DramError("instances disagree on NUM_CHANNELS/BURST_BYTES");
    }
    spatten::dram::PortConfig pc;
    pc.channel = channel;
    pc.numChannels = num_channels;
    pc.burstBytes = burst_bytes;
    pc.addrBits = addr_bits;
    pc.clockMhz = ctx.opts.clockMhz;
    pc.depth = ctx.opts.portDepth;
    auto backend = spatten::dram::makeBackend(ctx.opts);
    ctx.run.dramClockPs = backend->clockPeriodPs();
    auto port = std::make_unique<DramPort>(pc, std::move(backend), ctx.store, ctx.trace);
    DramPort* raw = port.get();
    ctx.ports[channel] = std::move(port);
    return raw;
  } catch (const std::exception& e) {
    report(channel, e.what());
    return nullptr;
  }
}

/// One clock edge of one port; returns 0, or 1 after printing an error.
int spatten_dram_tick(void* handle, svBit reset, svBit req_valid, unsigned long long req_addr,
                      svBit resp_ready, svBit* req_ready, svBit* resp_valid, svBitVecVal* resp_data) {
  auto* port = static_cast<DramPort*>(handle);
  if (port == nullptr) {
    report(-1, "tick on a null handle (init failed)");
    return 1;
  }
  try {
    port->tick(reset != 0, req_valid != 0, req_addr, resp_ready != 0);
  } catch (const std::exception& e) {
    report(port->config().channel, e.what());
    return 1;
  }
  *req_ready = port->reqReady() ? 1 : 0;
  *resp_valid = port->respValid() ? 1 : 0;
  const int bytes = port->config().burstBytes;
  const int words = (bytes + 3) / 4;
  const uint8_t* d = port->respData();
  for (int w = 0; w < words; ++w) {
    uint32_t v = 0;
    for (int b = 0; b < 4 && 4 * w + b < bytes; ++b) v |= uint32_t(d[4 * w + b]) << (8 * b);
    resp_data[w] = v;
  }
  return 0;
}

/// Records the port's statistics and rewrites +dram_stats with every finished channel.
void spatten_dram_finish(void* handle) {
  auto* port = static_cast<DramPort*>(handle);
  if (port == nullptr) return;
  Context& ctx = context();
  ctx.finished[port->config().channel] = port->stats();
  if (ctx.opts.statsPath.empty()) return;
  std::vector<spatten::dram::PortStats> all;
  for (const auto& kv : ctx.finished) all.push_back(kv.second);
  try {
    spatten::dram::writeFileAtomic(ctx.opts.statsPath, spatten::dram::statsJson(ctx.run, all));
  } catch (const std::exception& e) {
    report(port->config().channel, e.what());
  }
}

/// Writes `len` bytes at byte address `addr` of the memory (after the instances were
/// initialized); returns 0, or 1 after printing why not.
int spatten_dram_host_write(uint64_t addr, const uint8_t* data, uint64_t len) {
  Context& ctx = context();
  if (!ctx.ready || !ctx.store) {
    report(-1, "memory write before the DRAM model was initialized");
    return 1;
  }
  if (addr >= ctx.addrLimit || len > ctx.addrLimit - addr) {
    report(-1, "memory write of " + std::to_string(len) + " bytes at " + std::to_string(addr) +
                   " is beyond the address space");
    return 1;
  }
  ctx.store->write(addr, static_cast<size_t>(len), data);
  return 0;
}

}  // extern "C"
