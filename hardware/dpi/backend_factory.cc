#include "backend_factory.h"

#include "builtin_backend.h"
#include "dram_config.h"
#include "dram_error.h"
#include "ideal_backend.h"
#include "ramulator2_backend.h"

namespace spatten::dram {

bool haveRamulator2() {
#ifdef SPATTEN_HAVE_RAMULATOR2
  return true;
#else
  return false;
#endif
}

std::unique_ptr<DramBackend> makeBackend(const DramOptions& opts) {
  if (opts.backend == "ideal") return std::make_unique<IdealBackend>(opts.idealLatency);
  if (opts.backend == "builtin") {
    DramConfig cfg = opts.configPath.empty() ? defaultDramConfig() : loadDramConfig(opts.configPath);
    return std::make_unique<BuiltinBackend>(cfg);
  }
  if (opts.backend == "ramulator2") {
#ifdef SPATTEN_HAVE_RAMULATOR2
    return makeRamulator2Backend(opts.configPath);
#else
    throw DramError(
        "+dram_backend=ramulator2: this simulator was built without Ramulator2 (no checkout at "
        "third_party/ramulator2 or $SPATTEN_RAMULATOR2_DIR when the DPI was compiled); see "
        "hardware/dpi/README.md, or use +dram_backend=builtin");
#endif
  }
  throw DramError("+dram_backend=" + opts.backend + ": expected builtin, ramulator2 or ideal");
}

}  // namespace spatten::dram
