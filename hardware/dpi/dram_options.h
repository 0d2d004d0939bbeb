// Run-time options of the DPI DRAM, from plusargs (+dram_backend=... etc.).
#ifndef SPATTEN_DPI_DRAM_OPTIONS_H
#define SPATTEN_DPI_DRAM_OPTIONS_H

#include <string>
#include <vector>

namespace spatten::dram {

struct DramOptions {
  std::string backend = "builtin";  ///< +dram_backend=builtin|ramulator2|ideal
  std::string configPath;           ///< +dram_config=<yaml> (empty: built-in default)
  std::string imagePath;            ///< +dram_image=<file> (empty: all-zero memory)
  std::string statsPath;            ///< +dram_stats=<json out>
  std::string tracePath;            ///< +dram_trace=<trace out>
  int clockMhz = 1000;              ///< +clock_mhz=<accelerator clock>
  int idealLatency = 20;            ///< +ideal_latency=<accelerator cycles>
  int portDepth = 64;               ///< +dram_port_depth=<requests in flight per port>
  bool quiet = false;               ///< +dram_quiet: no banner on stderr
};

/// Parses `+key=value` arguments; others (not starting with +dram_, +clock_mhz,
/// +ideal_latency) are ignored. Unknown +dram_* keys and bad values throw DramError.
DramOptions parseDramOptions(const std::vector<std::string>& args);

/// The simulator's plusargs: /proc/self/cmdline, then the words of the environment
/// variable SPATTEN_DRAM_PLUSARGS (later ones win).
std::vector<std::string> processPlusargs();

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_DRAM_OPTIONS_H
