#include "traces/trace_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace trainrr::trace {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("trainrr_" + std::to_string(::getpid()) + "_l_" + name))
      .string();
}

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

TEST(WriterLock, ASecondWriterIsRefusedWithTheHoldersPidUntilTheFirstClosesItsFile) {
  const std::string path = temp_path("lock.trr");
  auto first = std::make_unique<Fd>(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_GE(first->fd, 0);
  EXPECT_EQ(writer_of(path), std::nullopt) << "no writer yet";
  ASSERT_TRUE(lock_for_writing(first->fd, path));
  EXPECT_EQ(writer_of(path), std::optional<pid_t>(::getpid()));

  Fd second(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_GE(second.fd, 0);
  Status refused = lock_for_writing(second.fd, path);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, recording_elsewhere(path, ::getpid()));

  first.reset();
  EXPECT_EQ(writer_of(path), std::nullopt) << "closing the file frees it";
  EXPECT_TRUE(lock_for_writing(second.fd, path));
  std::remove(path.c_str());
}

// Classic POSIX locks would be dropped here: the process closes another descriptor of the file.
TEST(WriterLock, TheWritersOwnProcessOpeningAndClosingTheFileKeepsItLocked) {
  const std::string path = temp_path("reopen.trr");
  Fd writer(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_GE(writer.fd, 0);
  ASSERT_TRUE(lock_for_writing(writer.fd, path));
  { Fd reader(::open(path.c_str(), O_RDONLY | O_CLOEXEC)); }
  EXPECT_EQ(writer_of(path), std::optional<pid_t>(::getpid()));
  std::remove(path.c_str());
}

TEST(WriterLock, MessagesNameThePathAndTheProcess) {
  EXPECT_EQ(recording_elsewhere("same.trr", 1234),
            "same.trr: another trainrr (process 1234) is recording to this trace; choose another trace path "
            "(-o) or wait for it to finish");
  EXPECT_EQ(still_recording("run.trr", 1234),
            "run.trr: still being recorded (process 1234): read up to its last complete step");
  EXPECT_EQ(still_recording("run.trr", 0),
            "run.trr: still being recorded: read up to its last complete step");
  EXPECT_EQ(writer_of(temp_path("absent.trr")), std::nullopt);
}

}  // namespace
}  // namespace trainrr::trace
