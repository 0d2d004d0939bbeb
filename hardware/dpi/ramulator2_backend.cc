// Built only when a Ramulator2 checkout is present (see sources.txt and README.md).
#ifdef SPATTEN_HAVE_RAMULATOR2

#include "ramulator2_backend.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

#include "address_mapper.h"
#include "base/config.h"
#include "base/request.h"
#include "dram_config.h"
#include "dram_error.h"
#include "frontend/frontend.h"
#include "memory_system/memory_system.h"

namespace spatten::dram {
namespace {

class Ramulator2Backend final : public DramBackend {
 public:
  explicit Ramulator2Backend(const std::string& configPath) {
    // Our own parser checks the file first (clear messages, and the organization
    // tells the capacity); Ramulator2 then reads the same YAML.
    const DramConfig cfg = configPath.empty() ? defaultDramConfig() : loadDramConfig(configPath);
    AddressMapper mapper(cfg.org, cfg.mapper);
    capacity_ = mapper.capacity();
    const int txBytes = cfg.org.prefetch * cfg.org.channelWidth / 8;
    txShift_ = 0;
    while ((1 << txShift_) < txBytes) ++txShift_;
    YAML::Node yaml;
    try {
      yaml = configPath.empty() ? YAML::Load(defaultDramConfigYaml())
                                : Ramulator::Config::parse_config_file(configPath, {});
      if (!yaml["Frontend"]) yaml["Frontend"]["impl"] = "GEM5";
      frontend_ = Ramulator::Factory::create_frontend(yaml);
      memory_ = Ramulator::Factory::create_memory_system(yaml);
    } catch (const std::exception& e) {
      throw DramError("ramulator2 backend: " + std::string(configPath.empty() ? "(default config)" : configPath) +
                      ": " + e.what());
    }
    frontend_->connect_memory_system(memory_);
    memory_->connect_frontend(frontend_);
    tckPs_ = static_cast<int>(std::lround(memory_->get_tCK() * 1000.0));
  }

  bool send(uint64_t index, uint64_t tag) override {
    const auto addr = static_cast<Ramulator::Addr_t>(index << txShift_);
    const int64_t sentAt = stats_.dramCycles;
    const bool ok = frontend_->receive_external_requests(
        Ramulator::Request::Type::Read, addr, 0, [this, tag, sentAt](Ramulator::Request&) {
          const int64_t lat = stats_.dramCycles - sentAt;
          ++stats_.reads;
          stats_.latencySum += static_cast<double>(lat);
          stats_.latencyMax = std::max(stats_.latencyMax, lat);
          completed_.push_back(tag);
          --inside_;
        });
    if (ok) ++inside_;
    return ok;
  }

  void tick() override {
    ++stats_.dramCycles;
    if (inside_ > 0) ++stats_.busyCycles;
    memory_->tick();
  }

  void drainCompleted(std::vector<uint64_t>* done) override {
    done->insert(done->end(), completed_.begin(), completed_.end());
    completed_.clear();
  }

  bool idle() const override { return inside_ == 0; }
  int clockPeriodPs() const override { return tckPs_; }
  uint64_t capacity() const override { return capacity_; }
  BackendStats stats() const override { return stats_; }
  std::string name() const override { return "ramulator2"; }

 private:
  Ramulator::IFrontEnd* frontend_ = nullptr;      // owned by Ramulator2's factory
  Ramulator::IMemorySystem* memory_ = nullptr;
  uint64_t capacity_ = 0;
  int txShift_ = 0;
  int tckPs_ = 0;
  int64_t inside_ = 0;
  std::vector<uint64_t> completed_;
  BackendStats stats_;
};

}  // namespace

std::unique_ptr<DramBackend> makeRamulator2Backend(const std::string& configPath) {
  return std::make_unique<Ramulator2Backend>(configPath);
}

}  // namespace spatten::dram

#endif  // SPATTEN_HAVE_RAMULATOR2
