// Configuration of the DRAM model, read from a Ramulator2-2.0-style YAML file.
#ifndef SPATTEN_DPI_DRAM_CONFIG_H
#define SPATTEN_DPI_DRAM_CONFIG_H

#include <cstdint>
#include <string>

namespace spatten::dram {

/// HBM2 organization of one memory system (per accelerator port).
/// Counts per level; `column` counts DQ-wide columns as in JESD235 / Ramulator2.
struct Organization {
  int densityMb = 0;     ///< per channel, in Mb
  int dq = 0;            ///< bits per column of one pseudo-channel
  int channels = 0;      ///< HBM2 channels behind one accelerator port
  int pseudoChannels = 0;
  int bankGroups = 0;
  int banks = 0;         ///< banks per bank group
  int rows = 0;
  int columns = 0;
  int channelWidth = 64; ///< bits of one pseudo-channel's data bus (`org.channel_width`)
  int prefetch = 2;      ///< internal prefetch (columns per access)

  /// Column accesses per row: columns / prefetch.
  int accessesPerRow() const { return columns / prefetch; }
  /// Bytes moved by one column access (RD): prefetch * dq / 8.
  int accessBytes() const { return prefetch * dq / 8; }
};

/// JEDEC timing parameters, in DRAM clock cycles (tCK) except tCKps and rate.
struct Timing {
  int rate = 0;  ///< MT/s
  int nBL = 0, nCL = 0, nRCDRD = 0, nRCDWR = 0, nRP = 0, nRAS = 0, nRC = 0, nWR = 0;
  int nRTPS = 0, nRTPL = 0, nCWL = 0, nCCDS = 0, nCCDL = 0, nRRDS = 0, nRRDL = 0;
  int nWTRS = 0, nWTRL = 0, nRTW = 0, nFAW = 0, nRFC = 0, nRFCSB = 0, nREFI = 0;
  int nREFISB = 0, nRREFD = 0;
  int tCKps = 0;  ///< clock period in picoseconds

  /// Cycles from RD issue to the last data beat: nCL + nBL.
  int readLatency() const { return nCL + nBL; }
};

enum class SchedulerKind { FRFCFS, FRFCFSCap, FCFS };
enum class RefreshKind { AllBank, None };
enum class MapperKind { RoBaRaCoCh, ChRaBaRoCo };

/// Everything the built-in model reads from the YAML file.
struct DramConfig {
  std::string source;        ///< file the config came from (for messages)
  std::string dramImpl;      ///< DRAM.impl (HBM2)
  std::string orgPreset;     ///< DRAM.org.preset
  std::string timingPreset;  ///< DRAM.timing.preset
  Organization org;
  Timing timing;
  SchedulerKind scheduler = SchedulerKind::FRFCFS;
  int schedulerCap = 16;     ///< FRFCFS_Cap: row hits that may bypass an older request
  RefreshKind refresh = RefreshKind::AllBank;
  MapperKind mapper = MapperKind::RoBaRaCoCh;
  int readQueueSize = 32;    ///< Controller.read_queue_size
  int clockRatio = 1;        ///< MemorySystem.clock_ratio (read and checked; see README)
};

/// Parses a Ramulator2-2.0-style YAML file. Throws DramError naming the file and key.
DramConfig loadDramConfig(const std::string& path);

/// Parses YAML text (for tests); `source` names it in messages.
DramConfig parseDramConfig(const std::string& yamlText, const std::string& source);

/// The default configuration as YAML text (what configs/hbm2.yaml holds too).
const char* defaultDramConfigYaml();

/// The default configuration (HBM2_8Gb, HBM2_2Gbps, FRFCFS, AllBank, RoBaRaCoCh).
DramConfig defaultDramConfig();

/// JEDEC rounding of a time in ns to cycles of tCKps, as JESD79 prescribes
/// (0.974 correction factor, the convention Ramulator2 uses too).
int jedecCycles(double ns, int tCKps);

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_CONFIG_H
