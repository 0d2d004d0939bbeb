// The HBM2 organization and timing presets (names and values as in JESD235 and
// Ramulator2 2.0's HBM2 device: HBM2_2Gb/4Gb/8Gb, HBM2_2Gbps).
#ifndef SPATTEN_DPI_HBM2_PRESETS_H
#define SPATTEN_DPI_HBM2_PRESETS_H

#include <string>
#include <vector>

#include "dram_config.h"

namespace spatten::dram {

/// Looks up an organization preset; returns false when the name is unknown.
bool hbm2OrgPreset(const std::string& name, Organization* out);

/// Looks up a timing preset (tCKps derived from the rate); false when unknown.
bool hbm2TimingPreset(const std::string& name, Timing* out);

/// Known preset names, for error messages.
std::vector<std::string> hbm2OrgPresetNames();
std::vector<std::string> hbm2TimingPresetNames();

/// tRFC in ns for a per-channel density (JESD235: 2/4/8/16 Gb); -1 if not a JEDEC density.
int hbm2TrfcNs(int densityMb);

}  // namespace spatten::dram

#endif  // SPATTEN_DPI_HBM2_PRESETS_H
