#include "traces/trace_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace trainrr::trace {

namespace {

constexpr off_t kWriterByte = 0;  // locked by the writer: a second writer's lock on it fails
constexpr off_t kPidBase = 1;     // the writer also locks byte kPidBase + its process id

struct flock range(short type, off_t start, off_t len) {
  struct flock fl;
  std::memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;  // 0: to the end of any file
  fl.l_pid = 0;    // F_OFD_* require 0
  return fl;
}

int fcntl_retrying(int fd, int cmd, struct flock* fl) {
  int rc;
  do rc = ::fcntl(fd, cmd, fl);
  while (rc != 0 && errno == EINTR);
  return rc;
}

std::string process(pid_t pid) { return pid > 0 ? " (process " + std::to_string(pid) + ")" : ""; }

bool locks_unsupported(int err) {
  return err == ENOLCK || err == EINVAL || err == EOPNOTSUPP || err == ENOSYS;
}

}  // namespace

Status lock_for_writing(int fd, const std::string& path) {
  struct flock writer = range(F_WRLCK, kWriterByte, 1);
  if (fcntl_retrying(fd, F_OFD_SETLK, &writer) != 0) {
    const int err = errno;
    if (err == EAGAIN || err == EACCES) return Error{recording_elsewhere(path, writer_of(fd).value_or(0))};
    if (locks_unsupported(err)) return {};
    return Error{path + ": cannot lock the trace for writing: " + std::strerror(err)};
  }
  // Best effort: without it a second writer is still kept out, only told no process id.
  struct flock pid = range(F_WRLCK, kPidBase + ::getpid(), 1);
  (void)fcntl_retrying(fd, F_OFD_SETLK, &pid);
  return {};
}

std::optional<pid_t> writer_of(int fd) {
  // A read lock conflicts with the writer's write lock only: a probe finds writers, never readers.
  struct flock writer = range(F_RDLCK, kWriterByte, 1);
  if (fcntl_retrying(fd, F_OFD_GETLK, &writer) != 0 || writer.l_type == F_UNLCK) return std::nullopt;
  struct flock pid = range(F_RDLCK, kPidBase, 0);
  if (fcntl_retrying(fd, F_OFD_GETLK, &pid) != 0 || pid.l_type == F_UNLCK || pid.l_start <= kPidBase)
    return pid_t{0};
  return static_cast<pid_t>(pid.l_start - kPidBase);
}

std::optional<pid_t> writer_of(const std::string& path) {
  // Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<pid_t> out = writer_of(fd);
  ::close(fd);
  return out;
}

std::string recording_elsewhere(const std::string& path, pid_t pid) {
  return path + ": another trainrr" + process(pid) +
         " is recording to this trace; choose another trace path (-o) or wait for it to finish";
}

std::string still_recording(const std::string& path, pid_t pid) {
  return path + ": still being recorded" + process(pid) + ": read up to its last complete step";
}

}  // namespace trainrr::trace
