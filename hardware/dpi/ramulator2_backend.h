// The Ramulator2 (2.0 API) backend, compiled only with SPATTEN_HAVE_RAMULATOR2.
#ifndef SPATTEN_DPI_RAMULATOR2_BACKEND_H
#define SPATTEN_DPI_RAMULATOR2_BACKEND_H

#include <memory>
#include <string>

#include "dram_backend.h"

namespace spatten::dram {

#ifdef SPATTEN_HAVE_RAMULATOR2
/// One Ramulator2 memory system (GEM5 external-request front end) per port, built from
/// the YAML at `configPath` (empty: the default config). Transaction index i is sent
/// as address i * (prefetch * channel_width / 8), so one burst is one column access.
std::unique_ptr<DramBackend> makeRamulator2Backend(const std::string& configPath);
#endif

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_RAMULATOR2_BACKEND_H
