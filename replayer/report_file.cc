#include "replayer/report_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace trainrr {
namespace {

namespace fs = std::filesystem;

std::string errno_text(int err) { return std::strerror(err); }

// Writes all of `page` to `fd`; 0 or the errno of the write that failed.
int write_all(int fd, std::string_view page) {
  size_t done = 0;
  while (done < page.size()) {
    const ssize_t n = ::write(fd, page.data() + done, page.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    done += static_cast<size_t>(n);
  }
  return 0;
}

Status write_in_place(const std::string& path, std::string_view page) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return Error{path + ": cannot write the HTML report: " + errno_text(errno)};
  int err = write_all(fd, page);
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) return Error{path + ": cannot write the HTML report: " + errno_text(err)};
  return {};
}

}  // namespace

ReportPathCheck check_html_report_path(const std::string& path) {
  using P = ReportPathProblem;
  if (path.empty()) return {P::empty, "--html needs a file path, got an empty one"};
  std::error_code ec;
  const fs::file_type type = fs::status(path, ec).type();
  if (type == fs::file_type::not_found && fs::is_symlink(fs::symlink_status(path, ec))) {
    const fs::path to = fs::read_symlink(path, ec);
    return {P::dangling_link, path + " is a symbolic link" + (ec ? "" : " to " + to.string()) +
                                  ", which does not exist: a report is written through a link only to an "
                                  "earlier report; give the report's own path"};
  }
  if (type == fs::file_type::directory)
    return {P::folder, path + " is a directory; an HTML report needs a file path"};
  // An existing report must itself be writable: one made read-only is kept. The effective IDs decide
  // (AT_EACCESS), as they decide the open that writes the report. Permissions do not tell all (root passes
  // them; /proc and a read-only mount take no file): the file is opened for writing as the report will be,
  // without changing it, or created and removed again.
  if (type != fs::file_type::not_found && type != fs::file_type::none) {
    if (::faccessat(AT_FDCWD, path.c_str(), W_OK, AT_EACCESS) != 0)
      return {P::cannot_write, "cannot write " + path + ": " + errno_text(errno)};
    if (type == fs::file_type::regular) {
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return {P::cannot_write, "cannot write " + path + ": " + errno_text(errno)};
      ::close(fd);
    }
  } else {
    fs::path folder = fs::path(path).parent_path();
    if (folder.empty()) folder = ".";
    if (!fs::is_directory(folder, ec)) return {P::no_folder, "folder " + folder.string() + " does not exist"};
    if (::faccessat(AT_FDCWD, folder.c_str(), W_OK | X_OK, AT_EACCESS) != 0)
      return {P::cannot_write, "cannot create a file in " + folder.string() + ": " + errno_text(errno)};
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return {P::cannot_write, "cannot create " + path + ": " + errno_text(errno)};
    ::close(fd);
    ::unlink(path.c_str());
  }
  if (type == fs::file_type::regular && fs::file_size(path, ec) > 0) {
    std::string head(kReportStart.size(), '\0');
    std::ifstream in(path, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    if (in.gcount() != static_cast<std::streamsize>(head.size()) || head != kReportStart)
      return {P::not_a_report,
              path +
                  " exists and is not an HTML report (a report trainrr wrote names trainrr as "
                  "its generator in its first bytes): refusing to overwrite it"};
  }
  return {};
}

Status write_html_report(const std::string& path, std::string_view page) {
  struct stat before {};
  const bool exists = ::stat(path.c_str(), &before) == 0;
  // A rename would put a file in the place of a device or a pipe, not write to it.
  if (exists && !S_ISREG(before.st_mode)) return write_in_place(path, page);
  fs::path target = path;
  std::error_code ec;
  if (exists && fs::is_symlink(fs::symlink_status(target, ec))) {
    // The report is replaced where the link points, as writing through the link did, and the link stays.
    const fs::path resolved = fs::canonical(target, ec);
    if (!ec) target = resolved;
  }
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // A new file beside the report, under a name of its own. It is made readable by no one else until it has
  // the permissions of the report it replaces: never more readable than that one.
  std::string temp;
  int fd = -1;
  for (int n = 0; fd < 0 && n < 100; ++n) {
    temp = (folder / (".trainrr-" + std::to_string(::getpid()) + "-" + std::to_string(n) + ".html.part"))
               .string();
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, exists ? 0600 : 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    // A folder that takes no new file, where the report itself can be written: rewriting it is the only way.
    if (exists && (err == EACCES || err == EPERM)) return write_in_place(path, page);
    return Error{path + ": cannot create the HTML report (a new file in " + folder.string() +
                 "): " + errno_text(err)};
  }
  int err = exists && ::fchmod(fd, before.st_mode & 0777) != 0 ? errno : 0;
  if (err == 0) err = write_all(fd, page);
  if (err == 0 && ::fsync(fd) != 0 && errno != EINVAL) err = errno;  // EINVAL: a file system without sync
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temp.c_str(), target.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temp.c_str());
    return Error{path + ": cannot write the HTML report: " + errno_text(err) +
                 (exists ? " (the earlier report is as it was)" : "")};
  }
  return {};
}

}  // namespace trainrr
