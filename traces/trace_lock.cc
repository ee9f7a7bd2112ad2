#include "traces/trace_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace trainrr::trace {

namespace {

constexpr off_t kWriterByte = 0;  // locked by the writer: a second writer's lock on it fails
constexpr off_t kPidBase = 1;     // the writer also locks byte kPidBase + its process id
// Locked, beside those two, by a writer that writes its trace beside this file and waits to replace it: the
// file is no trace being written. Far past any process id (Linux's pid_max is at most 2^22).
constexpr off_t kReplacerByte = off_t{1} << 32;

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

// The writer's lock on its byte, then the one on its process id's byte (best effort: without it a second
// writer is still kept out, only told no process id), of `type`.
Status lock_writer_bytes(int fd, const std::string& path, short type) {
  struct flock writer = range(type, kWriterByte, 1);
  if (fcntl_retrying(fd, F_OFD_SETLK, &writer) != 0) {
    const int err = errno;
    if (err == EAGAIN || err == EACCES) return Error{recording_elsewhere(path, writer_of(fd).value_or(0))};
    if (locks_unsupported(err)) return {};
    return Error{path + ": cannot lock the trace: " + std::strerror(err)};
  }
  struct flock pid = range(type, kPidBase + ::getpid(), 1);
  (void)fcntl_retrying(fd, F_OFD_SETLK, &pid);
  return {};
}

}  // namespace

Status lock_for_writing(int fd, const std::string& path) { return lock_writer_bytes(fd, path, F_WRLCK); }

Status lock_for_replacing(int fd, const std::string& path, bool writable) {
  // A file open for reading only (a trace its owner made read-only) takes read locks alone: they keep out a
  // second writer's write lock all the same, and a probe (a write lock's) finds them.
  const short type = writable ? F_WRLCK : F_RDLCK;
  // Read locks do not keep out one another: two writers waiting on one read-only trace are told apart by an
  // exclusive flock, which a descriptor open for reading takes (flock and fcntl locks do not meet).
  if (!writable && ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
    return Error{recording_elsewhere(path, writer_of(fd).value_or(0))};
  if (Status locked = lock_writer_bytes(fd, path, type); !locked) return locked;
  struct flock replacer = range(type, kReplacerByte, 1);
  (void)fcntl_retrying(fd, F_OFD_SETLK, &replacer);
  return {};
}

std::optional<pid_t> writer_of(int fd) {
  // Probed as a write lock, which any lock conflicts with: readers take none, so it finds writers, and those
  // waiting to replace the file whose read locks hold a read-only file.
  struct flock writer = range(F_WRLCK, kWriterByte, 1);
  if (fcntl_retrying(fd, F_OFD_GETLK, &writer) != 0 || writer.l_type == F_UNLCK) return std::nullopt;
  struct flock pid = range(F_WRLCK, kPidBase, kReplacerByte - kPidBase);
  if (fcntl_retrying(fd, F_OFD_GETLK, &pid) != 0 || pid.l_type == F_UNLCK || pid.l_start <= kPidBase)
    return pid_t{0};
  return static_cast<pid_t>(pid.l_start - kPidBase);
}

bool waits_to_replace(int fd) {
  struct flock replacer = range(F_WRLCK, kReplacerByte, 1);
  return fcntl_retrying(fd, F_OFD_GETLK, &replacer) == 0 && replacer.l_type != F_UNLCK;
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
