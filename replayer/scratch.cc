#include "replayer/scratch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

namespace trainrr {
namespace fs = std::filesystem;

namespace {

// What the signal handler needs to remove a scratch folder, in fixed storage: the handler may only make
// async-signal-safe calls (unlinkat, rmdir), so it cannot walk a std::string or a directory listing.
constexpr int kSlots = 1024;  // a run replayed in one process takes one per rank
constexpr int kFilesPerSlot = 16;
constexpr size_t kNameBytes = 64;
struct Slot {
  std::atomic<bool> used{false};
  int fd = -1;
  char path[4096] = {};
  char names[kFilesPerSlot][kNameBytes] = {};
  std::atomic<int> count{0};
};
std::array<Slot, kSlots> g_slots;

constexpr std::array<int, 4> kSignals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
struct sigaction g_previous[kSignals.size()];
int g_live = 0;  // folders in use; handlers are installed while there is one (main thread only)

void remove_slot(Slot& s) {
  const int n = s.count.load();
  for (int i = 0; i < n && i < kFilesPerSlot; ++i) ::unlinkat(s.fd, s.names[i], 0);
  ::rmdir(s.path);
}

extern "C" void on_fatal_signal(int sig) {
  for (Slot& s : g_slots)
    if (s.used.load()) remove_slot(s);
  // Then die of the signal as the process would have without us, so the caller sees why it ended.
  for (size_t i = 0; i < kSignals.size(); ++i)
    if (kSignals[i] == sig) ::sigaction(sig, &g_previous[i], nullptr);
  ::raise(sig);
}

void install_handlers() {
  if (g_live++ > 0) return;
  struct sigaction sa = {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : kSignals) sigaddset(&sa.sa_mask, sig);
  sa.sa_flags = SA_RESETHAND;
  for (size_t i = 0; i < kSignals.size(); ++i) {
    ::sigaction(kSignals[i], nullptr, &g_previous[i]);
    // A signal the caller ignores (nohup) stays ignored.
    if (g_previous[i].sa_handler != SIG_IGN) ::sigaction(kSignals[i], &sa, nullptr);
  }
}

void restore_handlers() {
  if (--g_live > 0) return;
  for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &g_previous[i], nullptr);
}

}  // namespace

bool is_scratch_file_name(std::string_view name) {
  if (name.empty() || name.size() >= kNameBytes || name.front() == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Result<ScratchDir> ScratchDir::create(std::string_view prefix) {
  std::error_code ec;
  fs::path base = fs::temp_directory_path(ec);
  if (ec) base = "/tmp";
  std::string tmpl = (base / (std::string(prefix) + "-XXXXXX")).string();
  if (tmpl.size() >= sizeof(Slot::path)) return Error{"the temporary folder's path is too long: " + tmpl};
  int slot = -1;
  for (int i = 0; i < kSlots && slot < 0; ++i)
    if (!g_slots[i].used.load()) slot = i;
  if (slot < 0) return Error{"too many scratch folders in use at once (" + std::to_string(kSlots) + ")"};
  if (!::mkdtemp(tmpl.data()))
    return Error{"cannot create a temporary folder in " + base.string() + ": " + std::strerror(errno)};
  const int fd = ::open(tmpl.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const std::string why = std::strerror(errno);
    ::rmdir(tmpl.c_str());
    return Error{tmpl + ": cannot open the temporary folder: " + why};
  }
  Slot& s = g_slots[slot];
  s.fd = fd;
  std::memcpy(s.path, tmpl.c_str(), tmpl.size() + 1);
  s.count.store(0);
  s.used.store(true);
  install_handlers();
  return ScratchDir(std::move(tmpl), fd, slot);
}

ScratchDir::ScratchDir(ScratchDir&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), slot_(other.slot_) {
  other.fd_ = -1;
  other.slot_ = -1;
  other.path_.clear();
}

ScratchDir::~ScratchDir() {
  if (slot_ < 0) return;
  Slot& s = g_slots[slot_];
  remove_slot(s);
  // Anything else in the folder (nothing but write_file writes there) goes too; links are removed, not
  // followed.
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path_, ec))) fs::remove_all(path_, ec);
  s.used.store(false);
  s.count.store(0);
  ::close(fd_);
  s.fd = -1;
  restore_handlers();
}

Result<std::string> ScratchDir::write_file(std::string_view name, std::span<const uint8_t> bytes) {
  if (!is_scratch_file_name(name)) return Error{"not a scratch file name: '" + std::string(name) + "'"};
  Slot& s = g_slots[slot_];
  const int n = s.count.load();
  if (n >= kFilesPerSlot) return Error{path_ + ": too many files in the scratch folder"};
  // The name is entered before the file exists, so a signal in between still removes it.
  std::memcpy(s.names[n], name.data(), name.size());
  s.names[n][name.size()] = '\0';
  s.count.store(n + 1);
  const std::string path = path_ + "/" + std::string(name);
  // O_EXCL | O_NOFOLLOW: a file or a link already there under this name is refused, never written through.
  const int fd = ::openat(fd_, s.names[n], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    s.count.store(n);  // not ours: the cleanup must not remove what someone else put there
    return Error{path + ": cannot create: " + std::strerror(err)};
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return Error{path + ": cannot write the embedded data: " + why};
    }
    done += static_cast<size_t>(w);
  }
  if (::close(fd) != 0) return Error{path + ": cannot write the embedded data: " + std::strerror(errno)};
  return path;
}

}  // namespace trainrr
