// Creates the backend named by +dram_backend.
#ifndef SPATTEN_DPI_BACKEND_FACTORY_H
#define SPATTEN_DPI_BACKEND_FACTORY_H

#include <memory>
#include <string>

#include "dram_backend.h"
#include "dram_options.h"

namespace spatten::dram {

/// builtin: the HBM2 model with +dram_config (or the default config);
/// ideal: IdealBackend(+ideal_latency);
/// ramulator2: Ramulator2 with +dram_config, when compiled in (SPATTEN_HAVE_RAMULATOR2),
/// else a DramError saying how to get it. Throws DramError on a bad config.
std::unique_ptr<DramBackend> makeBackend(const DramOptions& opts);

/// True when the Ramulator2 backend was compiled in.
bool haveRamulator2();

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_BACKEND_FACTORY_H
