#include "tools/export_folder.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string_view>
#include <vector>

#include "tools/trace_text.h"

namespace trainrr::cli {
namespace fs = std::filesystem;
namespace {

// Just enough JSON to read back the manifest export writes: the top-level object's "tensors" array and
// each of its objects' "file" string; every other value is checked for form and skipped.
class ManifestReader {
 public:
  explicit ManifestReader(std::string_view text) : s_(text) {}

  Result<std::set<std::string>> files() {
    std::set<std::string> out;
    bool tensors = false;
    ws();
    if (!eat('{')) return fail("it is not a JSON object");
    ws();
    for (bool first = true; !eat('}'); first = false) {
      if (!first && !eat(',')) return fail("expected ',' or '}'");
      std::string key;
      if (!(ws(), string(key)) || !(ws(), eat(':'))) return fail("expected a key");
      ws();
      if (key == "tensors") {
        tensors = true;
        if (!tensor_files(out)) return fail("its \"tensors\" are not a list of objects with a \"file\"");
      } else if (!skip(0)) {
        return fail("malformed value of \"" + key + "\"");
      }
      ws();
    }
    ws();
    if (pos_ != s_.size()) return fail("text after the object");
    if (!tensors) return fail("it has no \"tensors\"");
    return out;
  }

 private:
  static constexpr int kMaxDepth = 32;

  Error fail(const std::string& why) const {
    return Error{"not a manifest of trainrr export (" + why + " at byte " + std::to_string(pos_) + ")"};
  }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }

  // A string; \u escapes are kept as written (no file name export writes has one).
  bool string(std::string& out) {
    if (!eat('"')) return false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return false;
      const char e = s_[pos_++];
      const char* plain = std::strchr("\"\\/", e);
      if (plain && e) {
        out += e;
      } else if (e == 'u') {
        if (pos_ + 4 > s_.size()) return false;
        for (size_t i = 0; i < 4; ++i)
          if (!std::isxdigit(static_cast<unsigned char>(s_[pos_ + i]))) return false;
        out += "\\u" + std::string(s_.substr(pos_, 4));
        pos_ += 4;
      } else if (e && std::strchr("bfnrt", e)) {
        out += '\\';
        out += e;
      } else {
        return false;
      }
    }
    return false;
  }

  bool tensor_files(std::set<std::string>& out) {
    if (!eat('[')) return false;
    ws();
    for (bool first = true; !eat(']'); first = false) {
      if (!first && !eat(',')) return false;
      ws();
      if (!eat('{')) return false;
      bool has_file = false;
      ws();
      for (bool first_key = true; !eat('}'); first_key = false) {
        if (!first_key && !eat(',')) return false;
        std::string key;
        if (!(ws(), string(key)) || !(ws(), eat(':'))) return false;
        ws();
        if (key == "file") {
          std::string file;
          if (!string(file)) return false;
          out.insert(std::move(file));
          has_file = true;
        } else if (!skip(2)) {
          return false;
        }
        ws();
      }
      if (!has_file) return false;
      ws();
    }
    return true;
  }

  bool skip(int depth) {
    if (depth > kMaxDepth || pos_ >= s_.size()) return false;
    const char c = s_[pos_];
    if (c == '"') {
      std::string ignored;
      return string(ignored);
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      ws();
      for (bool first = true; !eat(close); first = false) {
        if (!first && !eat(',')) return false;
        ws();
        if (c == '{') {
          std::string key;
          if (!string(key) || !(ws(), eat(':'))) return false;
          ws();
        }
        if (!skip(depth + 1)) return false;
        ws();
      }
      return true;
    }
    for (std::string_view word : {"true", "false", "null"})
      if (s_.substr(pos_, word.size()) == word) return pos_ += word.size(), true;
    const size_t start = pos_;
    while (pos_ < s_.size() && std::strchr("+-0123456789.eE", s_[pos_]) && s_[pos_]) ++pos_;
    return pos_ > start;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// An entry of an earlier export: a regular file, never a link, folder or device.
bool is_plain_file(const fs::directory_entry& e) {
  std::error_code ec;
  return e.symlink_status(ec).type() == fs::file_type::regular;
}

// Whether `trace` is `folder` or lies inside it, by path or as a hard link to one of its files.
bool holds_trace(const fs::path& folder, const std::vector<fs::directory_entry>& entries,
                 const std::string& trace) {
  struct stat ts {};
  if (::stat(trace.c_str(), &ts) != 0) return false;  // no such file: none to lose
  std::error_code ec;
  const fs::path t = fs::weakly_canonical(fs::absolute(trace, ec), ec);
  const fs::path f = fs::weakly_canonical(folder, ec);
  if (!ec && !t.empty() && std::mismatch(f.begin(), f.end(), t.begin(), t.end()).first == f.end()) return true;
  for (const auto& e : entries) {
    struct stat es {};
    if (::lstat(e.path().c_str(), &es) == 0 && es.st_dev == ts.st_dev && es.st_ino == ts.st_ino) return true;
  }
  return false;
}

}  // namespace

Result<std::set<std::string>> manifest_files(const std::string& manifest_text) {
  if (!std::string_view(manifest_text).starts_with("{\"trace\":"))
    return Error{"not a manifest of trainrr export (it does not start with {\"trace\":)"};
  return ManifestReader(manifest_text).files();
}

Status check_export_target(const fs::path& target, const std::string& trace) {
  std::error_code ec;
  const fs::file_type type = fs::symlink_status(target, ec).type();
  if (type == fs::file_type::not_found) {
    // As record -o and --html: the folder -o names is created, not the folders above it (a slip of the
    // keyboard would scatter folders).
    const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, ec))
      return Error{target.string() + ": its folder " + parent.string() +
                   " does not exist (export creates the folder -o names, not the folders above it)"};
    return {};
  }
  if (type == fs::file_type::symlink) {
    const fs::path to = fs::read_symlink(target, ec);
    return Error{target.string() + " is a symbolic link" + (ec ? "" : " (to " + to.string() + ")") +
                 ": export replaces the folder -o names and does not follow a link; give the folder itself, "
                 "or another -o"};
  }
  if (type != fs::file_type::directory) return Error{target.string() + ": exists and is not a folder"};
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(target, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
  if (ec) return Error{target.string() + ": cannot list the folder: " + ec.message()};
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  if (holds_trace(target, entries, trace))
    return Error{target.string() + ": holds the trace being read (" + trace +
                 "); refusing to replace the folder (choose another -o)"};
  if (entries.empty()) return {};

  const fs::path manifest = target / "manifest.json";
  const auto refuse = [&](const std::string& why) {
    return Error{target.string() + ": exists and is not an earlier export (" + why +
                 "); refusing to replace it (remove it or choose another -o)"};
  };
  if (fs::symlink_status(manifest, ec).type() != fs::file_type::regular)
    return refuse("it has no manifest.json from trainrr export");
  // A manifest is a few MiB at most (the permutation of the data set's rows): a bigger file is not one.
  constexpr uintmax_t kMaxManifestBytes = uintmax_t{1} << 30;
  if (fs::file_size(manifest, ec) > kMaxManifestBytes || ec)
    return refuse("its manifest.json is not one from trainrr export");
  std::ifstream in(manifest, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto listed = manifest_files(text);
  if (!listed) return refuse("its manifest.json is " + listed.error().message);
  for (const auto& e : entries) {
    const std::string name = e.path().filename().string();
    if (name == "manifest.json") continue;
    if (listed->count(name) && name.ends_with(".npy") && is_plain_file(e)) continue;
    return Error{
        target.string() + ": holds " + name +
        ", which trainrr export did not write there (its manifest.json lists no such file); refusing "
        "to replace the folder, as " +
        name + " would be lost (move it out, or choose another -o)"};
  }
  return {};
}

namespace {

// The staging folder's marker: which host and process write it, so that a later export can tell a folder
// that a killed export left from one that a running export is writing.
constexpr const char* kMarker = ".trainrr-export-partial";

std::atomic<int> g_signal{0};
constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_previous[kSignals.size()];

// Only notes the signal (an atomic store is async-signal-safe); the export stops before its next file.
extern "C" void on_interrupt(int sig) { g_signal.store(sig); }

void install_handlers() {
  g_signal.store(0);
  struct sigaction sa = {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  // A second signal of the same kind ends the process as it would have without us.
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  for (size_t i = 0; i < kSignals.size(); ++i) {
    ::sigaction(kSignals[i], nullptr, &g_previous[i]);
    // A signal the caller ignores (nohup) stays ignored.
    if (g_previous[i].sa_handler != SIG_IGN) ::sigaction(kSignals[i], &sa, nullptr);
  }
}

void restore_handlers() {
  for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &g_previous[i], nullptr);
}

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

// The process that wrote a staging folder's marker, when the marker names this host; else 0.
pid_t marker_process(const fs::path& folder) {
  std::error_code ec;
  if (fs::symlink_status(folder / kMarker, ec).type() != fs::file_type::regular) return 0;
  std::ifstream in(folder / kMarker);
  std::string word, host;
  long long pid = 0;
  if (!(in >> word >> pid >> word >> host) || pid <= 0 || host != host_name()) return 0;
  return static_cast<pid_t>(pid);
}

// Whether a staging folder holds nothing but what an export writes there: its marker, a manifest.json and
// .npy files.
bool holds_only_export_files(const fs::path& folder) {
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->symlink_status(ec).type() != fs::file_type::regular) return false;
    if (name != kMarker && name != "manifest.json" && !name.ends_with(".npy")) return false;
  }
  return !ec;
}

// The staging folders that earlier exports to `target` left beside it: removed where provably such and
// stale, else named.
void clean_stale_staging(const fs::path& target) {
  const fs::path parent = target.parent_path();
  const std::string prefix = target.filename().string() + ".partial-";
  std::error_code ec;
  std::vector<fs::path> found;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().starts_with(prefix)) found.push_back(it->path());
  std::sort(found.begin(), found.end());
  for (const fs::path& p : found) {
    std::error_code e;
    const bool folder = fs::symlink_status(p, e).type() == fs::file_type::directory;
    const pid_t pid = folder ? marker_process(p) : 0;
    const bool alive = pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
    if (alive) {
      std::fprintf(stderr, "note: %s: another export to %s is being written there (process %lld)\n",
                   printable(p.string()).c_str(), printable(target.string()).c_str(),
                   static_cast<long long>(pid));
      continue;
    }
    if (pid > 0 && holds_only_export_files(p)) {
      fs::remove_all(p, e);
      if (!e) {
        std::fprintf(
            stderr, "note: removed %s, which an export to %s left when it was killed (process %lld)\n",
            printable(p.string()).c_str(), printable(target.string()).c_str(), static_cast<long long>(pid));
        continue;
      }
    }
    std::fprintf(
        stderr,
        "note: %s is beside %s under the name of an export's staging folder, but nothing shows that an "
        "export left it and has ended: it is kept (remove it if it is litter)\n",
        printable(p.string()).c_str(), printable(target.string()).c_str());
  }
}

}  // namespace

Result<ExportStaging> ExportStaging::create(const fs::path& target) {
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  clean_stale_staging(target);
  // Before the folder exists, so that no signal finds it without a handler to remove it.
  install_handlers();
  std::string name = (parent / (target.filename().string() + ".partial-XXXXXX")).string();
  if (!::mkdtemp(name.data())) {
    const std::string why = std::strerror(errno);
    restore_handlers();
    return Error{parent.string() + ": cannot create a folder for the export: " + why};
  }
  ExportStaging staging{fs::path(name)};
  // mkdtemp made it for this user alone: it takes the permissions of the export it replaces (never more
  // readable than that one; its owner writes it until it is put in place), or those mkdir gives a new folder.
  struct stat earlier {};
  if (::stat(target.c_str(), &earlier) == 0 && S_ISDIR(earlier.st_mode)) {
    ::chmod(name.c_str(), (earlier.st_mode & 07777) | S_IRWXU);
  } else {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::chmod(name.c_str(), 0777 & ~mask);
  }
  std::ofstream marker(staging.path_ / kMarker);
  marker << "process " << ::getpid() << " host " << host_name() << "\n";
  marker.close();
  if (!marker) return Error{name + ": cannot write into the folder for the export: " + std::strerror(errno)};
  return staging;
}

ExportStaging::ExportStaging(ExportStaging&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
  other.moved_ = true;
}

ExportStaging::~ExportStaging() {
  if (moved_) return;
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
  restore_handlers();
}

int ExportStaging::interrupted() { return g_signal.load(); }

Status ExportStaging::put_in_place(const fs::path& target, const std::string& trace) {
  std::error_code ec;
  // The marker goes just before the folder is put in place: an export never holds it.
  fs::remove(path_ / kMarker, ec);
  const fs::path staging = path_;
  fs::path earlier;
  if (fs::symlink_status(target, ec).type() != fs::file_type::not_found) {
    earlier = staging.string() + ".earlier";
    fs::rename(target, earlier, ec);
    if (ec) return Error{target.string() + ": cannot move the earlier export aside: " + ec.message()};
    // What was checked before the export was written may have changed since: checked again where no one
    // else writes.
    if (Status s = check_export_target(earlier, trace); !s) {
      std::error_code back;
      fs::rename(earlier, target, back);
      std::string message = s.error().message;
      if (message.starts_with(earlier.string())) message.replace(0, earlier.string().size(), target.string());
      return Error{message};
    }
    // The permissions of the export it replaces, as they are now.
    struct stat st {};
    if (::stat(earlier.c_str(), &st) == 0) ::chmod(staging.c_str(), st.st_mode & 07777);
  }
  fs::rename(staging, target, ec);
  if (ec) {
    std::error_code back;
    if (!earlier.empty()) fs::rename(earlier, target, back);
    return Error{target.string() + ": cannot rename the export into place: " + ec.message()};
  }
  path_.clear();
  if (!earlier.empty()) fs::remove_all(earlier, ec);
  return {};
}

}  // namespace trainrr::cli
