#pragma once
// The folder `trainrr export` writes. An export is written whole into a staging folder beside DIR
// (DIR.partial-XXXXXX), then renamed into place: a failed export leaves nothing, and a new
// one keeps no stale file of an earlier one. DIR may be absent, empty or an earlier export that holds nothing
// but what an export writes (its manifest.json and the .npy files the manifest lists); anything else in it
// would be lost, so it is refused, as is a DIR that holds the trace being read.

#include <filesystem>
#include <set>
#include <string>

#include "engine/result.h"

namespace trainrr::cli {

// The .npy files a manifest.json lists (its tensors' "file" entries); an error when the text is not a
// manifest that trainrr export writes.
Result<std::set<std::string>> manifest_files(const std::string& manifest_text);

// Whether `target` may be replaced by an export of `trace`: absent, an empty folder, or an earlier export
// holding only its manifest.json and the files it lists, and not the trace.
Status check_export_target(const std::filesystem::path& target, const std::string& trace);

// Replaces `target` (absent, or passed by check_export_target for `trace`) with `staging`, a folder beside
// it. The earlier export is checked again once moved aside: a file put there since is kept, and the export
// is refused.
Status put_export_in_place(const std::filesystem::path& staging, const std::filesystem::path& target,
                           const std::string& trace);

}  // namespace trainrr::cli
