#include "dram_trace.h"

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dram_error.h"

namespace spatten::dram {

TraceWriter::TraceWriter(const std::string& path, const TraceHeader& h) : path_(path) {
  f_ = std::fopen(path.c_str(), "w");
  if (f_ == nullptr) throw DramError("+dram_trace=" + path + ": cannot write: " + std::strerror(errno));
  std::fprintf(f_, "# spatten-dram-trace v1 num_channels=%d burst_bytes=%d addr_bits=%d clock_mhz=%d\n",
               h.numChannels, h.burstBytes, h.addrBits, h.clockMhz);
}

TraceWriter::~TraceWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

void TraceWriter::record(int64_t cycle, uint64_t addr) {
  std::fprintf(f_, "%" PRId64 " 0x%" PRIx64 "\n", cycle, addr);
}

std::vector<TraceEntry> readTrace(const std::string& path, TraceHeader* header) {
  std::ifstream in(path);
  if (!in) throw DramError("trace " + path + ": cannot open");
  std::vector<TraceEntry> out;
  std::string line;
  int lineNo = 0;
  int64_t lastCycle = -1;
  while (std::getline(in, line)) {
    ++lineNo;
    const std::string where = "trace " + path + " line " + std::to_string(lineNo) + ": ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ss(line.substr(1));
      std::string word;
      while (ss >> word) {
        const size_t eq = word.find('=');
        if (eq == std::string::npos) continue;
        const std::string k = word.substr(0, eq);
        int* dst = k == "num_channels" ? &header->numChannels
                   : k == "burst_bytes" ? &header->burstBytes
                   : k == "addr_bits"   ? &header->addrBits
                   : k == "clock_mhz"   ? &header->clockMhz
                                        : nullptr;
        if (dst == nullptr) continue;
        try {
          *dst = std::stoi(word.substr(eq + 1));
        } catch (const std::exception&) {
          throw DramError(where + "bad header value '" + word + "'");
        }
      }
      continue;
    }
    std::istringstream ss(line);
    std::string c, a, extra;
    if (!(ss >> c >> a) || (ss >> extra)) throw DramError(where + "expected '<cycle> <address>', got '" + line + "'");
    TraceEntry e{};
    try {
      size_t used = 0;
      e.cycle = std::stoll(c, &used, 10);
      if (used != c.size() || e.cycle < 0) throw std::invalid_argument(c);
      e.addr = std::stoull(a, &used, 0);
      if (used != a.size()) throw std::invalid_argument(a);
    } catch (const std::exception&) {
      throw DramError(where + "expected '<cycle> <address>' (decimal cycle, hex or decimal address), got '" +
                      line + "'");
    }
    if (e.cycle < lastCycle) throw DramError(where + "cycle " + c + " is before the previous line's");
    lastCycle = e.cycle;
    out.push_back(e);
  }
  return out;
}

}  // namespace spatten::dram
