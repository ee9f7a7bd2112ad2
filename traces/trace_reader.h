#pragma once
// Reads a trace file as untrusted input: explicit size limits, every schema constraint checked, errors as
// values naming the file and byte offset, never a crash. The header is read and checked on open; then
// messages come one at a time (memory holds one message, not the file).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "engine/result.h"
#include "traces/trace.h"

namespace trainrr::trace {

// What a reader takes, each checked before anything is allocated for it. The sizes are what the runs trainrr
// records need with room to spare (the writer refuses to write more): a tensor of 2^28 float32 is larger than
// any layer of those models, and a checkpoint holds a model and its optimizer's slots. Larger traces read
// with larger limits, given here.
struct ReaderLimits {
  uint64_t max_message_bytes = uint64_t{4} << 30;  // one message unpacked, as its segment table declares
  // One message unpacked, per byte it takes in the file, past its first kUnpackedFree bytes: packing writes a
  // run of up to 256 zero words as 2 bytes, and only a crafted file is mostly such runs (the messages of a
  // recording unpack to at most a few times their packed size).
  uint64_t max_unpacked_per_packed_byte = 8;
  uint32_t max_segments = 512;                        // per message
  uint64_t max_tensor_bytes = uint64_t{1} << 30;      // one tensor, decompressed
  uint64_t max_checkpoint_bytes = uint64_t{2} << 30;  // all tensors of one checkpoint, decompressed
  uint64_t max_embedded_bytes = uint64_t{1} << 30;    // one embedded data file, decompressed
  int nesting_limit = 32;                             // the schema nests 6 deep
  // Checkpoint tensors one reader decompresses in all: past the first `inflate_free` bytes, at most
  // `inflate_per_file_byte` per byte of the file. A recording's tensors compress a few times at most (its
  // weights hardly at all); zstd writes a GiB of zeros in 32 KB, and a small crafted file could otherwise
  // make a reader decompress gigabytes per checkpoint, checkpoint after checkpoint.
  uint64_t inflate_free = uint64_t{1} << 30;
  uint64_t inflate_per_file_byte = 1024;
  // What is decompressed. A reader that only follows the steps or summarises a trace (show, diff, the steps a
  // replay compares) leaves checkpoint tensors and embedded data files compressed: their sizes and shapes are
  // checked from the frame headers, and their values are left empty (a tensor keeps its shape and holds no
  // data; a data set says so in DatasetInfo::embedded_not_read).
  bool tensor_values = true;
  bool embedded_data = true;
};
inline constexpr uint64_t kUnpackedFree = uint64_t{64} << 20;
// Tensors of one checkpoint: a model's parameters, their optimizer's slots and its state, some hundreds (each
// an .npy file when exported).
inline constexpr uint64_t kMaxCheckpointTensors = uint64_t{1} << 16;

// The default limits, decompressing nothing (tensor_values and embedded_data false).
inline ReaderLimits without_payloads() {
  ReaderLimits l;
  l.tensor_values = false;
  l.embedded_data = false;
  return l;
}

// One message after the header, with where it sits in the file.
struct TraceRecord {
  uint64_t offset = 0;  // byte offset of the message
  uint64_t size = 0;    // framed size in bytes
  std::variant<TraceStep, TraceEpoch, TraceCheckpoint, TraceFooter> value;
};

// Why next() stopped before the end of the file.
struct ReadStop {
  uint64_t offset = 0;     // where reading stopped
  bool truncated = false;  // the file ends inside a message, as a killed recording leaves it; else damaged
  std::string why;         // the reason, without the "FILE: byte N: " of the Error's message
};

// Whether the file at `path` starts as trainrr writes a trace: with a trace header's magic, whether the
// header is whole, cut (a recording killed as it began), damaged or of another format (trainrr 0.1's unpacked
// traces too). A configuration, a data file or a text does not. The error: the file cannot be read.
Result<bool> starts_like_a_trace(const std::string& path);

// Reads the trace at `path` from its start through the message at `offset` (without payloads), so that each
// message up to that one is checked against those before it: the reader's error where one of them is damaged,
// or one saying the trace ends before `offset`. `each`, where given, is handed every message before it.
Status read_through(const std::string& path, uint64_t offset,
                    const std::function<void(const TraceRecord&)>& each = {});

class TraceReader {
 public:
  // Opens and reads the header. Errors: not a trace (bad framing or magic), a trace needing a newer reader
  // ("trace needs reader version N, this is version M"), a malformed header.
  static Result<std::unique_ptr<TraceReader>> open(const std::string& path, const ReaderLimits& limits = {});
  // The same over bytes in memory (`bytes` must outlive the reader); `name` stands for the path in errors.
  static Result<std::unique_ptr<TraceReader>> open_memory(std::span<const uint8_t> bytes, std::string name,
                                                          const ReaderLimits& limits = {});
  // A new reader, from the start, of the file `same` reads (with these limits): the same file even where
  // another has since been put at its path (a trace recorded again there), as it is now (grown, when it was
  // still being recorded). Errors as open's.
  static Result<std::unique_ptr<TraceReader>> reopen(const TraceReader& same,
                                                     const ReaderLimits& limits = {});
  ~TraceReader();
  TraceReader(const TraceReader&) = delete;
  TraceReader& operator=(const TraceReader&) = delete;

  const TraceHeader& header() const { return header_; }
  uint64_t file_size() const;
  uint64_t header_size() const { return header_size_; }  // offset of the first message after the header

  // The next message in file order. nullopt: the end of the file, reached cleanly after complete messages
  // (with or without a footer: see ended_cleanly()). An Error says where (byte offset) and why reading
  // stopped (truncated tail, malformed message); every message before that offset was returned, and further
  // calls return the same Error. Messages of kinds this reader does not know are skipped, with a note.
  Result<std::optional<TraceRecord>> next();

  // Continues reading at `offset`, which must be the offset of a message (from a CheckpointRef or a
  // TraceRecord). Interned names defined before `offset` are recovered from the checkpoint at `offset` or,
  // for other messages, by scanning from the header.
  Status seek(uint64_t offset);
  // Every checkpoint in the file by scanning message framing and kinds (tensors are not decompressed):
  // works without a footer. Does not move the read position.
  Result<std::vector<CheckpointRef>> checkpoint_index();
  // seek(offset) and read the checkpoint there.
  Result<TraceCheckpoint> read_checkpoint(uint64_t offset);
  // The tensors the model that will take the checkpoints has, by name, with their shapes: a checkpoint tensor
  // that is not among them, or has another shape, is malformed, found before anything is decompressed (a
  // declared size is otherwise all that bounds what a checkpoint costs).
  void expect_tensors(std::map<std::string, Shape> shapes);

  // Set once next() has returned an Error: the same stop, in parts.
  const std::optional<ReadStop>& stopped() const;
  // The offset of a message handed out that no message after it vouched for (one the file ends with, where no
  // footer follows it, or one before a message cut short before the digest it would hold): a change made to
  // it after it was written cannot be seen.
  std::optional<uint64_t> unvouched() const;
  // Set once next() has returned the footer.
  const std::optional<TraceFooter>& footer() const { return footer_; }
  // The writer closed the trace with a footer. A trace without one did not end cleanly.
  bool ended_cleanly() const { return footer_.has_value(); }
  // Things skipped for forward compatibility (unknown message and event kinds), at most 100 kept.
  const std::vector<std::string>& notes() const { return notes_; }
  // Set when a writer was still recording the trace as it was opened (traces/trace_lock.h), to be shown to
  // the user: "FILE: still being recorded (process N): read up to its last complete step". The reader reads
  // the file as it was then; a message the writer was still writing at its end is where the recording had
  // got to, not a cut: next() ends there cleanly (nullopt, no stopped()), without a footer.
  const std::optional<std::string>& still_recording() const { return still_recording_; }

  struct Impl;  // defined in trace_reader.cc

 private:
  explicit TraceReader(std::unique_ptr<Impl> impl);
  // Opens the file of impl->fd (impl->name: its path in messages) and reads the header.
  static Result<std::unique_ptr<TraceReader>> open_file(std::unique_ptr<Impl> impl);
  Status read_header();
  Status read_header_message();

  std::unique_ptr<Impl> impl_;
  TraceHeader header_;
  uint64_t header_size_ = 0;
  std::optional<TraceFooter> footer_;
  std::vector<std::string> notes_;
  std::optional<std::string> still_recording_;
};

}  // namespace trainrr::trace
