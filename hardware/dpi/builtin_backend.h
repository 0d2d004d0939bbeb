// The built-in cycle-level HBM2 backend: address mapper + one controller per channel.
#ifndef SPATTEN_DPI_BUILTIN_BACKEND_H
#define SPATTEN_DPI_BUILTIN_BACKEND_H

#include <memory>
#include <vector>

#include "address_mapper.h"
#include "dram_backend.h"
#include "dram_config.h"
#include "dram_controller.h"

namespace spatten::dram {

/// HBM2 behind one accelerator port: `org.channel` HBM2 channels (default 1), each with
/// its own controller, addressed through the configured mapper.
class BuiltinBackend final : public DramBackend {
 public:
  explicit BuiltinBackend(const DramConfig& cfg);

  bool send(uint64_t index, uint64_t tag) override;
  void tick() override;
  void drainCompleted(std::vector<uint64_t>* done) override;
  bool idle() const override;
  int clockPeriodPs() const override { return cfg_.timing.tCKps; }
  uint64_t capacity() const override { return mapper_.capacity(); }
  BackendStats stats() const override;
  std::string name() const override { return "builtin"; }

  const AddressMapper& mapper() const { return mapper_; }

 private:
  DramConfig cfg_;
  AddressMapper mapper_;
  std::vector<std::unique_ptr<DramController>> controllers_;
};

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_BUILTIN_BACKEND_H
