#include "dram_options.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "dram_error.h"

namespace spatten::dram {
namespace {

int parseInt(const std::string& key, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo || x > hi) {
    throw DramError("plusarg +" + key + "=" + v + ": expected an integer in " + std::to_string(lo) + ".." +
                    std::to_string(hi));
  }
  return static_cast<int>(x);
}

}  // namespace

DramOptions parseDramOptions(const std::vector<std::string>& args) {
  DramOptions o;
  for (const std::string& a : args) {
    if (a.size() < 2 || a[0] != '+') continue;
    const size_t eq = a.find('=');
    const std::string key = a.substr(1, eq == std::string::npos ? std::string::npos : eq - 1);
    const std::string val = eq == std::string::npos ? "" : a.substr(eq + 1);
    const bool isPath = key == "dram_config" || key == "dram_image" || key == "dram_stats" || key == "dram_trace";
    if (isPath && val.empty()) throw DramError("plusarg +" + key + "= needs a file path");
    if (key == "dram_backend") {
      if (val != "builtin" && val != "ramulator2" && val != "ideal") {
        throw DramError("plusarg +dram_backend=" + val + ": expected builtin, ramulator2 or ideal");
      }
      o.backend = val;
    } else if (key == "dram_config") {
      o.configPath = val;
    } else if (key == "dram_image") {
      o.imagePath = val;
    } else if (key == "dram_stats") {
      o.statsPath = val;
    } else if (key == "dram_trace") {
      o.tracePath = val;
    } else if (key == "clock_mhz") {
      o.clockMhz = parseInt(key, val, 1, 100000);
    } else if (key == "ideal_latency") {
      o.idealLatency = parseInt(key, val, 1, 1000000);
    } else if (key == "dram_port_depth") {
      o.portDepth = parseInt(key, val, 1, 1 << 20);
    } else if (key == "dram_quiet") {
      o.quiet = true;
    } else if (key.rfind("dram_", 0) == 0) {
      throw DramError("unknown plusarg +" + key + " (known: +dram_backend, +dram_config, +dram_image, "
                      "+dram_stats, +dram_trace, +dram_port_depth, +dram_quiet, +clock_mhz, +ideal_latency)");
    }
  }
  return o;
}

std::vector<std::string> processPlusargs() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string arg;
  while (std::getline(in, arg, '\0')) out.push_back(arg);
  if (const char* env = std::getenv("SPATTEN_DRAM_PLUSARGS")) {
    std::istringstream ss(env);
    while (ss >> arg) out.push_back(arg);
  }
  return out;
}

}  // namespace spatten::dram
