// Configuration parsing: presets, overrides and errors.
#include <gtest/gtest.h>

#include <string>

#include "dram_config.h"
#include "dram_error.h"

namespace spatten::dram {
namespace {

std::string cfgText(const std::string& org, const std::string& timing, const std::string& extraCtrl = "",
                    const std::string& mapper = "RoBaRaCoCh") {
  return "MemorySystem:\n"
         "  impl: GenericDRAM\n"
         "  clock_ratio: 1\n"
         "  DRAM:\n"
         "    impl: HBM2\n"
         "    org: " + org + "\n"
         "    timing: " + timing + "\n"
         "  Controller:\n"
         "    impl: Generic\n"
         "    Scheduler: {impl: FRFCFS}\n"
         "    RefreshManager: {impl: AllBank}\n" + extraCtrl +
         "  AddrMapper: {impl: " + mapper + "}\n";
}

std::string errorOf(const std::string& text) {
  try {
    parseDramConfig(text, "test.yaml");
  } catch (const DramError& e) {
    return e.what();
  }
  return "";
}

TEST(DramConfig, DefaultIsHbm2_8Gb_2Gbps) {
  DramConfig c = defaultDramConfig();
  EXPECT_EQ(c.org.pseudoChannels, 2);
  EXPECT_EQ(c.org.bankGroups, 4);
  EXPECT_EQ(c.org.banks, 4);
  EXPECT_EQ(c.org.rows, 1 << 15);
  EXPECT_EQ(c.org.columns, 64);
  EXPECT_EQ(c.org.accessBytes(), 32);  // 2 x 128-bit columns: one 64-bit pseudo-channel BL4 burst
  EXPECT_EQ(c.timing.tCKps, 1000);     // 2 Gbps DDR -> 1 GHz clock
  EXPECT_EQ(c.timing.nCL, 7);
  EXPECT_EQ(c.timing.nRCDRD, 7);
  EXPECT_EQ(c.timing.nRP, 7);
  EXPECT_EQ(c.timing.nRAS, 17);
  EXPECT_EQ(c.timing.nBL, 4);
  EXPECT_EQ(c.timing.nREFI, 3900);
  EXPECT_EQ(c.timing.nRFC, 350);       // tRFC(8 Gb) = 350 ns at tCK = 1 ns
  EXPECT_EQ(c.scheduler, SchedulerKind::FRFCFS);
  EXPECT_EQ(c.refresh, RefreshKind::AllBank);
}

TEST(DramConfig, OverridesInCyclesAndNanoseconds) {
  DramConfig c = parseDramConfig(cfgText("{preset: HBM2_4Gb}", "{preset: HBM2_2Gbps, nCL: 9, tRP: 14.0}"), "t");
  EXPECT_EQ(c.org.banks, 4);
  EXPECT_EQ(c.org.rows, 1 << 14);
  EXPECT_EQ(c.timing.nCL, 9);
  EXPECT_EQ(c.timing.nRP, 14);
  EXPECT_EQ(c.timing.nRFC, 260);  // 4 Gb
}

TEST(DramConfig, RamulatorStyleDensityOverrideAccepted) {
  // The original SpAtten config sets density: 8192 next to the HBM2_8Gb preset.
  DramConfig c = parseDramConfig(cfgText("{preset: HBM2_8Gb, density: 8192}", "{preset: HBM2_2Gbps}"), "t");
  EXPECT_EQ(c.org.densityMb, 8192);
}

TEST(DramConfig, UnknownPresetsNamed) {
  EXPECT_NE(errorOf(cfgText("{preset: HBM2_9Gb}", "{preset: HBM2_2Gbps}")).find("unknown organization preset 'HBM2_9Gb'"),
            std::string::npos);
  EXPECT_NE(errorOf(cfgText("{preset: HBM2_8Gb}", "{preset: HBM2_3Gbps}")).find("unknown timing preset 'HBM2_3Gbps'"),
            std::string::npos);
}

TEST(DramConfig, MissingFieldsNamed) {
  std::string e = errorOf("MemorySystem: {impl: GenericDRAM, DRAM: {impl: HBM2, org: {preset: HBM2_8Gb}}}");
  EXPECT_NE(e.find("test.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("MemorySystem.DRAM.timing: missing field"), std::string::npos) << e;
  e = errorOf(cfgText("{dq: 128, channel: 1, pseudochannel: 2, bankgroup: 4, bank: 4, row: 32768, column: 64}",
                      "{preset: HBM2_2Gbps}"));
  EXPECT_NE(e.find("MemorySystem.DRAM.org.density: missing field"), std::string::npos) << e;
  e = errorOf(cfgText("{preset: HBM2_8Gb}", "{rate: 2000}"));
  EXPECT_NE(e.find("MemorySystem.DRAM.timing.nBL: missing field"), std::string::npos) << e;
  e = errorOf("MemorySystem: {impl: GenericDRAM, DRAM: {impl: HBM2, org: {preset: HBM2_8Gb}, timing: {preset: HBM2_2Gbps}},"
              " Controller: {impl: Generic, Scheduler: {impl: FRFCFS}}, AddrMapper: {impl: RoBaRaCoCh}}");
  EXPECT_NE(e.find("MemorySystem.Controller.RefreshManager: missing field"), std::string::npos) << e;
}

TEST(DramConfig, NonPowerOfTwoCountsRejected) {
  std::string e = errorOf(cfgText("{preset: HBM2_8Gb, channel: 3}", "{preset: HBM2_2Gbps}"));
  EXPECT_NE(e.find("MemorySystem.DRAM.org.channel: must be a power of two, got 3"), std::string::npos) << e;
  e = errorOf(cfgText("{preset: HBM2_8Gb, bank: 6}", "{preset: HBM2_2Gbps}"));
  EXPECT_NE(e.find("org.bank: must be a power of two"), std::string::npos) << e;
}

TEST(DramConfig, DensityMismatchRejected) {
  std::string e = errorOf(cfgText("{preset: HBM2_8Gb, density: 6144}", "{preset: HBM2_2Gbps}"));
  EXPECT_NE(e.find("calculated channel density 8192 Mb"), std::string::npos) << e;
}

TEST(DramConfig, OtherErrors) {
  EXPECT_NE(errorOf(cfgText("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, nXYZ: 3}")).find("timing.nXYZ: unknown timing parameter"),
            std::string::npos);
  EXPECT_NE(errorOf(cfgText("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, rate: 1600}")).find("cannot change the transfer rate"),
            std::string::npos);
  EXPECT_NE(errorOf(cfgText("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, nCL: seven}")).find("timing.nCL: expected an integer"),
            std::string::npos);
  EXPECT_NE(errorOf(cfgText("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps}", "", "MOP4CLXOR")).find("unknown address mapper 'MOP4CLXOR'"),
            std::string::npos);
  std::string e = errorOf("MemorySystem: {impl: GenericDRAM, DRAM: {impl: DDR4}}");
  EXPECT_NE(e.find("MemorySystem.DRAM.impl: unsupported 'DDR4'"), std::string::npos) << e;
  EXPECT_NE(errorOf("MemorySystem: [1, 2").find("not valid YAML"), std::string::npos);
  try {
    loadDramConfig("/nonexistent/dram.yaml");
    FAIL() << "no error";
  } catch (const DramError& ex) {
    EXPECT_NE(std::string(ex.what()).find("/nonexistent/dram.yaml: cannot open"), std::string::npos);
  }
}

TEST(DramConfig, JedecRounding) {
  EXPECT_EQ(jedecCycles(350, 1000), 350);
  EXPECT_EQ(jedecCycles(13.5, 1000), 14);
  EXPECT_EQ(jedecCycles(14.01, 1000), 14);  // within the 0.974 guard band
}

}  // namespace
}  // namespace spatten::dram
