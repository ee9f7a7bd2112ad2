#pragma once
// Plain value types of a trace file (traces/trace.capnp). The recorder fills them and hands them to
// TraceWriter; the replayer and the CLI get them back from TraceReader. Nothing outside traces/ sees the
// Cap'n Proto types: names are full strings here, however the file interns them.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "engine/collective.h"
#include "engine/fingerprint.h"
#include "engine/hooks.h"
#include "engine/result.h"

namespace trainrr::trace {

// "TRAINRR1" read as a little-endian 64-bit word; the first field of the header, checked first.
inline constexpr uint64_t kMagic = 0x3152524e49415254ULL;
// Layout generation of the schema. Format 2 packs every message (Cap'n Proto's packed encoding); format 1
// wrote them unpacked; format 3 adds Message.previous, the digest of the previous message, which a reader of
// format 2 ignores.
inline constexpr uint32_t kFormatVersion = 3;
// This reader reads traces whose minReaderVersion is at most this.
inline constexpr uint32_t kReaderVersion = 2;
// What this writer puts into minReaderVersion unless the header asks for more.
inline constexpr uint32_t kMinReaderVersion = 2;

// What Message.previous holds for a message of these (packed) bytes: XXH3-64's low 32 bits, never 0.
uint32_t message_digest(std::span<const uint8_t> packed);

// XXH3-128 of a file's bytes.
struct Digest128 {
  uint64_t low = 0;
  uint64_t high = 0;
  bool operator==(const Digest128&) const = default;
};
Digest128 digest128_bytes(std::span<const uint8_t> bytes);
// The digest of a regular file and the bytes it read. Streams the file in fixed-size blocks: memory does
// not grow with the file. Anything but a regular file (a directory, /dev/zero, a named pipe) is refused at
// once, with the path and what it is, never read: a data file named by an untrusted trace cannot hang it.
// With `expected_size`, a file of another size is not read at all: `digested` is false and `size` is its
// size.
struct FileDigest {
  Digest128 digest;
  uint64_t size = 0;
  bool digested = false;
};
Result<FileDigest> digest_regular_file(const std::string& path,
                                       std::optional<uint64_t> expected_size = std::nullopt);
Result<Digest128> digest128_file(const std::string& path);

// The names a data set may have in a trace: "data" (a CSV file of features and labels), "features" and
// "labels" (npy and idx files). Each picks the configuration key its file stands for on replay; a name
// never becomes part of a path.
bool is_known_dataset_name(std::string_view name);
std::string known_dataset_names();  // for messages: "'data', 'features' or 'labels'"

struct DatasetInfo {
  std::string name;  // one of the known names above; the reader refuses any other
  std::string path;  // as the configuration names it
  uint64_t size_bytes = 0;
  Digest128 digest;
  // The file's bytes when the data is embedded; empty when it is not. When set, size and digest must match.
  std::vector<uint8_t> embedded;
  // Embedded, but left compressed by a reader that does not decompress embedded data (ReaderLimits).
  bool embedded_not_read = false;
  bool is_embedded() const { return !embedded.empty() || embedded_not_read; }
  bool operator==(const DatasetInfo&) const = default;
};

struct TraceHeader {
  uint32_t format_version = kFormatVersion;      // the writer always writes kFormatVersion
  std::string writer_version;                    // the writer writes TRAINRR_VERSION when empty
  uint32_t min_reader_version = kMinReaderVersion;
  std::string config;       // the run configuration (TOML), verbatim
  std::string config_path;  // where it came from, for people; replay uses `config`
  std::vector<std::string> config_overrides;  // --set key=value, applied over `config` in order
  uint64_t seed = 0;
  bool seed_from_entropy = false;
  ProbeLevel level = ProbeLevel::step;
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0: none
  // Conventional keys: host, cpu.model, cpu.flags, cpu.cores, threads, isa, os, kernel, compiler,
  // compiler.flags, lib.<name> (versions), env.<VAR> (numerics-relevant environment variables).
  std::vector<std::pair<std::string, std::string>> environment;
  std::vector<DatasetInfo> datasets;
  // A data-parallel run: this trace is rank `rank` of `world_size`, all sharing `run_id`. world_size 0: a
  // run of one process.
  int rank = 0;
  int world_size = 0;
  std::string run_id;
  // GPU kernels (CUPTI's activity API, the CUDA backend): true when steps carry TraceStep::kernels. Else
  // kernels_not_recorded says why a run on the GPU has none ("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED",
  // "no driver"); empty when none were asked for (a run on the CPU). The writer refuses a reason with
  // kernels_recorded.
  bool kernels_recorded = false;
  std::string kernels_not_recorded;
  // The steps probe each batch normalization's moving statistics (is_moving_statistics_probe): every trace
  // this writer's recorder writes. false in a trace written before those probes, which holds none.
  bool moving_statistics = false;
};

// --- events, in the order they happened within a step ---

struct RngDrawEvent {
  RngDraw draw;
  uint64_t digest = 0;  // XXH3-64 of the values drawn, as bytes
};

struct SplitEvent {
  std::string site;  // "data/split"
  std::vector<uint32_t> train;
  std::vector<uint32_t> test;
};

struct ShuffleEvent {
  std::string site;  // "data/shuffle"
  int epoch = 0;
  uint64_t length = 0;  // rows in the permutation
  uint64_t digest = 0;  // fingerprint.h digest(std::span<const uint32_t>) of the permutation
  // The draw the permutation came from, when it came from a recorded stream: replay recomputes it.
  std::optional<RngDraw> draw;
  // The permutation itself: set when there is no draw (the writer stores exactly what it is given; the
  // reader checks length and digest against it when present).
  std::vector<uint32_t> permutation;
};

struct BatchOrderEvent {
  int64_t batch = 0;  // the batch of the current epoch the loader handed out
};

struct ProbeEvent {
  std::string site;  // "dense_1/matmul.fwd:out"
  Phase phase = Phase::forward;
  Fingerprint fingerprint;
};

// The order a completion-order kernel combined its partials in at `site` (forced back on replay).
struct AccumulationOrderEvent {
  std::string site;  // "batch_normalization_1/bn_stats.fwd"
  std::vector<uint32_t> order;
};

// KernelChoice is the engine's own type; its `site` is interned in the file like every other site.
using Event = std::variant<RngDrawEvent, SplitEvent, ShuffleEvent, BatchOrderEvent, KernelChoice, ProbeEvent,
                           AccumulationOrderEvent>;

// What the engine reports at the end of a step (StepSummary, with digests in place of tensors).
struct StepEnd {
  double loss = 0;
  std::vector<std::pair<std::string, double>> metrics;
  std::vector<std::pair<std::string, uint64_t>> params;  // name -> digest, after the update
  std::vector<std::pair<std::string, uint64_t>> grads;   // name -> digest, this step's gradients
};

// At level step one digest stands for every parameter, under this name: the XXH3-64 of the parameters'
// own digests, in model order. It says whether the parameters are bit-identical after a step in 8 bytes;
// which parameter differs is found by re-executing that step (see replayer/).
inline constexpr std::string_view kAllParameters = "(all parameters)";

// The parameter digests a step end records at `level`: one over all parameters at level step, one per
// parameter above it.
std::vector<std::pair<std::string, uint64_t>> parameter_digests(
    const std::vector<std::pair<std::string, const Tensor*>>& params, ProbeLevel level);
// The same from each parameter's own digest, in model order.
std::vector<std::pair<std::string, uint64_t>> parameter_digests(std::vector<std::pair<std::string, uint64_t>> each,
                                                               ProbeLevel level);
// Whether `recorded` holds the one digest over all parameters.
bool is_combined(const std::vector<std::pair<std::string, uint64_t>>& recorded);
// Why a checkpoint taken after a step does not hold the parameters that step recorded after its update
// (`recorded`, its StepEnd::params): "" when it holds them. `model`: the digest (fingerprint.h digest) of
// each of the checkpoint's model tensors (those whose name holds no '/', in its order: the parameters, then
// the layers' own state, such as a batch normalization's moving statistics). One digest per parameter is
// looked up by name; the one digest over all parameters (level step) is parameter_digests() of the
// parameters, which lead the model tensors: the checkpoint holds them when it holds such a digest for its
// first n model tensors, for some n (a checkpoint does not say where its parameters end).
std::string parameters_disagree(const std::vector<std::pair<std::string, uint64_t>>& model,
                                const std::vector<std::pair<std::string, uint64_t>>& recorded);

// Whether a trace recorded at `level` holds the probes of `site`: none at level step, the layers' own
// ("dense_1:out", no '/') at level layer, every op's ("dense_1/matmul.fwd:out") at level op.
bool probe_recorded_at(std::string_view site, ProbeLevel level);
// A probe of a batch normalization's moving statistics: "<layer>/moving_stats.fwd:out" (level op) or
// "<layer>:moving_stats" (level layer). A trace holds them where its header's moving_statistics says so.
bool is_moving_statistics_probe(std::string_view site);
// Whether the trace with header `h` holds the probes of `site`: at its level, and of a kind it records.
bool probe_recorded_in(std::string_view site, const TraceHeader& h);

// --- GPU kernels, as CUPTI recorded them ---

// The site of a kernel that no op can be named for: one launched outside every op (a library's own set-up, say),
// or one whose correlation CUPTI did not deliver. It is kept under this site, never left out.
inline constexpr std::string_view kUnattributedSite = "(unattributed)";

// One kernel launch. The kernel is the one that actually ran: inside cuDNN or cuBLASLt only CUPTI sees it.
struct KernelLaunch {
  std::string site;  // the op that launched it ("dense_1/matmul.fwd"), or kUnattributedSite
  std::string name;  // as CUPTI names it (mangled)
  uint32_t grid_x = 1, grid_y = 1, grid_z = 1;
  uint32_t block_x = 1, block_y = 1, block_z = 1;
  uint32_t static_shared = 0;   // bytes
  uint32_t dynamic_shared = 0;  // bytes
  uint64_t duration_ns = 0;     // end - start; 0 where CUPTI gave no timestamps
  bool operator==(const KernelLaunch&) const = default;
};

// The kernels of one step, in launch order.
struct StepKernels {
  uint64_t count = 0;         // kernels, attributed or not
  uint64_t digest = 0;        // kernel_sequence_digest of all of them
  uint64_t unattributed = 0;  // those at kUnattributedSite
  uint64_t dropped = 0;       // activity records CUPTI dropped during the step: kernels it lost
  // Levels layer and op: all `count` launches; level step keeps the count and the digest only.
  std::vector<KernelLaunch> launches;
  bool operator==(const StepKernels&) const = default;
};

// XXH3-64 of a sequence of kernels' (name, grid, block), fed one kernel at a time in launch order: per kernel
// the name's length (little-endian UInt32), its bytes, then gridX..Z and blockX..Z (little-endian UInt32s).
// Duration and shared memory are left out: the digest says which kernels ran in which shapes, which two runs
// of the same program share, not how long they took.
// Streamed: memory stays flat however many kernels a step runs.
class KernelSequenceDigest {
 public:
  KernelSequenceDigest();
  ~KernelSequenceDigest();
  KernelSequenceDigest(const KernelSequenceDigest&) = delete;
  KernelSequenceDigest& operator=(const KernelSequenceDigest&) = delete;
  void add(std::string_view name, const uint32_t (&grid)[3], const uint32_t (&block)[3]);
  void add(const KernelLaunch& k);
  uint64_t value() const;

 private:
  struct State;  // XXH3's streaming state (traces/trace.cc)
  std::unique_ptr<State> state_;
};
uint64_t kernel_sequence_digest(std::span<const KernelLaunch> launches);

// The record of a step's kernels in launch order, at `level`: count, digest and unattributed from the
// launches, which are kept at levels layer and op only.
StepKernels step_kernels(std::vector<KernelLaunch> launches, uint64_t dropped, ProbeLevel level);
// Why `k` breaks a rule of the format at `level` (trace.capnp, StepKernels), "" when it keeps them all. The
// writer refuses and the reader rejects what this names.
std::string check_step_kernels(const StepKernels& k, ProbeLevel level);

// One step: the events since the previous step's end, then the step's end. Events that happen before
// the first step (initialisation draws, split, kernel choices) belong to the first step. A message
// without `end` holds events after the last step (evaluation, say); step indices go up by one from 0.
struct TraceStep {
  int64_t index = 0;  // global step, from 0
  int epoch = 0;
  int64_t batch = 0;
  std::vector<Event> events;
  std::optional<StepEnd> end;
  std::vector<CollectiveCall> collectives;  // a data-parallel run's allreduce calls of this step, in order
  std::optional<StepKernels> kernels;       // the GPU kernels of the step, where the header says they were recorded
};

struct TraceEpoch {
  int epoch = 0;
  std::vector<std::pair<std::string, double>> logs;  // "loss", "accuracy", "val_loss", ...
};

// A checkpoint is the engine's TrainState, whole.
using TraceCheckpoint = TrainState;

struct CheckpointRef {
  int64_t step = 0;     // steps completed at the checkpoint
  uint64_t offset = 0;  // byte offset of the checkpoint message in the file
  bool operator==(const CheckpointRef&) const = default;
};

struct TraceFooter {
  bool completed = false;  // the run finished its schedule (false: stopped by an error or a signal)
  std::string end_reason;  // "completed", "error: ...", "interrupted"
  // Filled by the writer from what it wrote; values passed to TraceWriter::finish are ignored.
  int64_t step_count = 0;    // step messages
  uint64_t event_count = 0;  // events in all steps (step ends not counted)
  std::vector<CheckpointRef> checkpoints;
};

// What Footer.check holds: message_digest() over the footer's values (completed, the counts, the checkpoint
// index, the end reason) in a fixed little-endian layout. The footer is the last message: nothing after it
// holds its digest.
uint32_t footer_digest(const TraceFooter& footer);

// The steps a recorded run's configuration (the header's, with its overrides) schedules for `train_rows`
// training rows: its epochs, each of as many batches as those rows make. nullopt where the configuration
// does not parse. A footer that says the run completed is checked against it.
struct Schedule {
  int64_t epochs = 0;
  int64_t batches_per_epoch = 0;
  // epochs times batches_per_epoch; nullopt where that is more than int64_t holds (no file holds so many).
  std::optional<int64_t> steps() const {
    int64_t out = 0;
    if (__builtin_mul_overflow(epochs, batches_per_epoch, &out)) return std::nullopt;
    return out;
  }
};
std::optional<Schedule> recorded_schedule(const TraceHeader& header, uint64_t train_rows);

}  // namespace trainrr::trace
