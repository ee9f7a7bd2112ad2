#pragma once
// One writer per trace file. A writer holds two open-file-description locks (fcntl F_OFD_SETLK) on its file
// for as long as it writes: a write lock on byte 0, which keeps out a second writer, and one on byte
// 1 + its process id, which tells others who it is (F_OFD_GETLK reports no process id of its own). The
// kernel drops both when the writer closes the file or its process dies, kill -9 included, so a killed
// recording leaves no stale lock. Open-file-description locks, unlike classic POSIX ones, stay held when the
// same process opens and closes the file again (a reader of its own trace), and conflict within one process
// too. Readers take no lock: they only ask.

#include <sys/types.h>

#include <optional>
#include <string>

#include "engine/result.h"

namespace trainrr::trace {

// Takes the writer's locks on `fd` (open for writing). An Error names the writer that holds them already. On
// a file system that keeps no locks (some network and FUSE mounts) it succeeds without them: the trace is
// written as before, and one writer per path cannot be promised there.
Status lock_for_writing(int fd, const std::string& path);

// Takes the locks of a writer that writes its trace beside the file open at `fd` and waits to replace it with
// that trace: a writer's, which keep out a second writer, and one that tells readers the file is not being
// written. `writable`: `fd` is open for writing (else it holds read locks, which keep out a writer too).
Status lock_for_replacing(int fd, const std::string& path, bool writable);

// Whether the writer that holds the file open at `fd` waits to replace it (lock_for_replacing): the file is
// an earlier trace, whole or not, that no one writes.
bool waits_to_replace(int fd);

// Who writes the file open at `fd`: nullopt when no writer holds it; otherwise the writer's process id, 0
// when it cannot be told.
std::optional<pid_t> writer_of(int fd);
// The same for the file at `path`; nullopt also when there is none or it cannot be opened.
std::optional<pid_t> writer_of(const std::string& path);

// "PATH: another trainrr (process N) is recording to this trace; ..." for a second writer.
std::string recording_elsewhere(const std::string& path, pid_t pid);
// "PATH: still being recorded (process N): read up to its last complete step" for a reader.
std::string still_recording(const std::string& path, pid_t pid);

}  // namespace trainrr::trace
