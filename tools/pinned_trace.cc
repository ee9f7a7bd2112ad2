#include "tools/pinned_trace.h"

#include <sys/stat.h>

#include <utility>

namespace trainrr::cli {
namespace {

std::optional<std::pair<dev_t, ino_t>> identity_of(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return std::make_pair(st.st_dev, st.st_ino);
}

}  // namespace

PinnedTrace::PinnedTrace(std::string path) : path_(std::move(path)), identity_(identity_of(path_)) {}

std::string PinnedTrace::replaced(const std::string& verb) const {
  // Moved or removed, no other file is read in its place: a later read fails and says so.
  const auto now = identity_of(path_);
  if (!identity_ || !now || now == identity_) return "";
  return path_ + ": another file was put at this path while " + verb +
         " read it (a recording that finished there, say): its answer could mix the two files, and is not "
         "given; run " +
         verb + " again";
}

}  // namespace trainrr::cli
