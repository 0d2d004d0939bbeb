// The port: in-order return with data from the memory image, address checks,
// clock crossing, options and traces.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "backend_factory.h"
#include "backing_store.h"
#include "builtin_backend.h"
#include "dram_config.h"
#include "dram_error.h"
#include "dram_options.h"
#include "dram_port.h"
#include "dram_trace.h"
#include "ideal_backend.h"

namespace spatten::dram {
namespace {

std::string tempPath(const std::string& name) {
  return ::testing::TempDir() + "/spatten_dram_" + std::to_string(::getpid()) + "_" + name;
}

/// Byte at address a of the test image.
uint8_t pattern(uint64_t a) { return static_cast<uint8_t>((a * 131 + (a >> 8) * 7 + 3) & 0xff); }

std::string writeImage(size_t size) {
  const std::string p = tempPath("image.bin");
  std::ofstream f(p, std::ios::binary);
  for (size_t a = 0; a < size; ++a) f.put(static_cast<char>(pattern(a)));
  return p;
}

struct Response {
  int64_t cycle;
  std::vector<uint8_t> data;
};

/// Drives a port: offers `addrs` in order (one per cycle when ready), always ready
/// for responses; returns the responses in arrival order.
std::vector<Response> run(DramPort* port, const std::vector<uint64_t>& addrs, int maxCycles = 100000) {
  std::vector<Response> out;
  size_t next = 0;
  for (int c = 0; c < maxCycles && out.size() < addrs.size(); ++c) {
    const bool valid = next < addrs.size();
    const bool fire = valid && port->reqReady();
    if (port->respValid()) {
      const uint8_t* d = port->respData();
      out.push_back({port->cycle(), std::vector<uint8_t>(d, d + port->config().burstBytes)});
    }
    port->tick(false, valid, valid ? addrs[next] : 0, true);
    if (fire) ++next;
  }
  return out;
}

PortConfig portConfig(int channel, int numChannels) {
  PortConfig pc;
  pc.channel = channel;
  pc.numChannels = numChannels;
  pc.burstBytes = 32;
  pc.addrBits = 32;
  return pc;
}

DramConfig noRefresh() {
  DramConfig c = defaultDramConfig();
  c.refresh = RefreshKind::None;
  return c;
}

TEST(DramPort, ReturnsImageDataInRequestOrder) {
  const size_t imageSize = 1 << 16;
  auto store = std::make_shared<BackingStore>(writeImage(imageSize));
  const int nch = 2;
  DramPort port(portConfig(1, nch), std::make_unique<BuiltinBackend>(noRefresh()), store, nullptr);
  // Channel-local transaction index i is global burst i*nch+1. Index 0 opens a row in
  // one bank; index 32*... below revisits that bank on another row (a conflict, slow),
  // then index 32 (other pseudo-channel, closed bank, faster): the DRAM finishes the
  // third before the second, the port must still return them in order.
  const BuiltinBackend probe(noRefresh());
  const AddressMapper& m = probe.mapper();
  DramCoord conflict = m.map(0);
  conflict.row = 5;
  const uint64_t iConflict = m.unmap(conflict);
  auto globalAddr = [&](uint64_t index) { return (index * nch + 1) * 32; };
  std::vector<uint64_t> addrs = {globalAddr(0), globalAddr(iConflict), globalAddr(32), globalAddr(1),
                                 globalAddr(5000) /* beyond the image: zeros */};
  std::vector<Response> got = run(&port, addrs);
  ASSERT_EQ(got.size(), addrs.size());
  for (size_t k = 0; k < addrs.size(); ++k) {
    for (int b = 0; b < 32; ++b) {
      const uint64_t a = addrs[k] + b;
      const uint8_t want = a < imageSize ? pattern(a) : 0;
      ASSERT_EQ(got[k].data[b], want) << "response " << k << " (address 0x" << std::hex << addrs[k] << ") byte "
                                      << std::dec << b;
    }
  }
  const PortStats s = port.stats();
  EXPECT_EQ(s.reads, 5);
  EXPECT_EQ(s.bytes, 160);
  EXPECT_EQ(s.dram.rowConflicts, 1);
}

TEST(DramPort, ReordersOutOfOrderCompletions) {
  // Same pattern, checking that the DRAM really completed out of order: the third
  // request's data were ready before the second's, yet came after it.
  DramPort port(portConfig(0, 1), std::make_unique<BuiltinBackend>(noRefresh()), nullptr, nullptr);
  const BuiltinBackend probe(noRefresh());
  DramCoord conflict = probe.mapper().map(0);
  conflict.row = 9;
  std::vector<uint64_t> addrs = {0, probe.mapper().unmap(conflict) * 32, 32 * 32};
  std::vector<Response> got = run(&port, addrs);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_LT(got[0].cycle, got[1].cycle);
  EXPECT_EQ(got[2].cycle, got[1].cycle + 1);  // was waiting behind the conflict
}

TEST(DramPort, IdealLatencyIsExact) {
  for (int lat : {1, 5, 40}) {
    DramPort port(portConfig(0, 1), std::make_unique<IdealBackend>(lat), nullptr, nullptr);
    // First request offered in cycle 1 (ready rises after the first edge).
    std::vector<Response> got = run(&port, {0, 32, 64});
    ASSERT_EQ(got.size(), 3u);
    const PortStats s = port.stats();
    EXPECT_DOUBLE_EQ(s.latencySum / s.reads, lat) << "latency " << lat;
    EXPECT_EQ(got[1].cycle, got[0].cycle + 1);
  }
}

TEST(DramPort, BackPressureAtDepth) {
  PortConfig pc = portConfig(0, 1);
  pc.depth = 3;
  DramPort port(pc, std::make_unique<IdealBackend>(100), nullptr, nullptr);
  port.tick(false, false, 0, false);
  int accepted = 0;
  for (int c = 0; c < 10; ++c) {
    if (port.reqReady()) ++accepted;
    port.tick(false, true, static_cast<uint64_t>(accepted) * 32, false);
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_FALSE(port.reqReady());
}

TEST(DramPort, ClockCrossing) {
  // Accelerator at 500 MHz, DRAM at 1 GHz: two DRAM cycles per accelerator cycle.
  const DramConfig c = noRefresh();
  const Timing& t = c.timing;
  PortConfig pc = portConfig(0, 1);
  pc.clockMhz = 500;
  DramPort port(pc, std::make_unique<BuiltinBackend>(c), nullptr, nullptr);
  run(&port, {0});
  const PortStats s = port.stats();
  const int dramLat = 1 + t.nRCDRD + t.nCL + t.nBL;  // closed bank
  EXPECT_EQ(s.dram.latencyMax, dramLat);
  EXPECT_EQ(s.latencyMax, (dramLat + 1) / 2);
}

std::string addrError(DramPort* port, uint64_t addr) {
  port->tick(false, false, 0, true);
  try {
    port->tick(false, true, addr, true);
  } catch (const DramError& e) {
    return e.what();
  }
  return "";
}

TEST(DramPort, BadAddressesAreErrors) {
  PortConfig pc = portConfig(1, 2);
  pc.addrBits = 20;
  DramPort port(pc, std::make_unique<IdealBackend>(4), nullptr, nullptr);
  std::string e = addrError(&port, 0x30 + 4);
  EXPECT_NE(e.find("channel 1: request address 0x34 is not aligned to the burst size (32 bytes)"), std::string::npos) << e;
  e = addrError(&port, uint64_t(1) << 20 | 0x20);
  EXPECT_NE(e.find("address 0x100020 is at or above 2^20"), std::string::npos) << e;
  e = addrError(&port, 0x40);
  EXPECT_NE(e.find("address 0x40 belongs to channel 0"), std::string::npos) << e;
  DramPort small(portConfig(0, 1), std::make_unique<BuiltinBackend>(noRefresh()), nullptr, nullptr);
  pc = portConfig(0, 1);
  pc.addrBits = 40;
  DramPort wide(pc, std::make_unique<BuiltinBackend>(noRefresh()), nullptr, nullptr);
  e = addrError(&wide, uint64_t(1) << 36);  // 64 GiB: beyond one 1 GiB HBM2 channel
  EXPECT_NE(e.find("is beyond the DRAM of this channel"), std::string::npos) << e;
}

TEST(DramPort, BadPortConfigs) {
  EXPECT_THROW(DramPort(portConfig(0, 3), std::make_unique<IdealBackend>(1), nullptr, nullptr), DramError);
  EXPECT_THROW(DramPort(portConfig(2, 2), std::make_unique<IdealBackend>(1), nullptr, nullptr), DramError);
  try {
    DramPort(portConfig(0, 6), std::make_unique<IdealBackend>(1), nullptr, nullptr);
  } catch (const DramError& e) {
    EXPECT_NE(std::string(e.what()).find("number of channels must be a power of two, got 6"), std::string::npos);
  }
}

TEST(BackingStore, MissingImageIsAnError) {
  try {
    BackingStore s("/nonexistent/image.bin");
    FAIL();
  } catch (const DramError& e) {
    EXPECT_NE(std::string(e.what()).find("memory image /nonexistent/image.bin: cannot open"), std::string::npos);
  }
}

TEST(DramOptions, Plusargs) {
  DramOptions o = parseDramOptions({"./Vtop", "+dram_backend=ideal", "+ideal_latency=7", "+clock_mhz=800",
                                    "+dram_stats=s.json", "+other=1"});
  EXPECT_EQ(o.backend, "ideal");
  EXPECT_EQ(o.idealLatency, 7);
  EXPECT_EQ(o.clockMhz, 800);
  EXPECT_EQ(o.statsPath, "s.json");
  EXPECT_THROW(parseDramOptions({"+dram_backend=dramsim3"}), DramError);
  EXPECT_THROW(parseDramOptions({"+dram_bogus=1"}), DramError);
  EXPECT_THROW(parseDramOptions({"+clock_mhz=fast"}), DramError);
  EXPECT_THROW(parseDramOptions({"+dram_config="}), DramError);
}

TEST(BackendFactory, Ramulator2AbsentIsAClearError) {
  DramOptions o;
  o.backend = "ramulator2";
  if (haveRamulator2()) GTEST_SKIP() << "built with Ramulator2";
  try {
    makeBackend(o);
    FAIL();
  } catch (const DramError& e) {
    EXPECT_NE(std::string(e.what()).find("built without Ramulator2"), std::string::npos);
  }
}

TEST(DramTrace, WriteAndRead) {
  const std::string p = tempPath("trace.txt");
  {
    TraceWriter w(p, TraceHeader{2, 32, 32, 1000});
    w.record(5, 0x40);
    w.record(5, 0x60);
    w.record(9, 0x1000);
  }
  TraceHeader h;
  std::vector<TraceEntry> t = readTrace(p, &h);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(h.numChannels, 2);
  EXPECT_EQ(t[1].cycle, 5);
  EXPECT_EQ(t[1].addr, 0x60u);
  EXPECT_EQ(t[2].addr, 0x1000u);
  {
    std::ofstream f(p);
    f << "3 0x40\n2 0x60\n";
  }
  try {
    readTrace(p, &h);
    FAIL();
  } catch (const DramError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2: cycle 2 is before the previous line's"), std::string::npos);
  }
  {
    std::ofstream f(p);
    f << "3 zz\n";
  }
  EXPECT_THROW(readTrace(p, &h), DramError);
}

}  // namespace
}  // namespace spatten::dram
