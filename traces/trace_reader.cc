#include "traces/trace_reader.h"

#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/exception.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include "engine/data/file_io.h"
#include "engine/fingerprint.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "trace.capnp.h"
#include "traces/trace_lock.h"

namespace trainrr::trace {

static_assert(std::endian::native == std::endian::little, "tensor payloads are stored little-endian");

namespace {

// "run/rank0.trr: not a regular file (it is a named pipe)": a trace is read from a file.
Error not_a_trace_file(const std::string& path) {
  const char* kind = special_file_kind(path);
  return Error{path + ": not a regular file" + (kind ? std::string(" (it is ") + kind + ")" : std::string()) +
               "; a trace is a file"};
}

constexpr uint64_t kWord = sizeof(capnp::word);
// Bytes read ahead per refill: many small step messages per system call.
constexpr uint64_t kReadAhead = uint64_t{256} << 10;
constexpr size_t kMaxNotes = 100;

// A constraint of the schema that the bytes violate. Thrown inside decoding only; caught at the boundary of
// every public method and turned into an Error.
struct Malformed {
  std::string what;
};

[[noreturn]] void malformed(std::string what) { throw Malformed{std::move(what)}; }

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// A text of the header other than the configuration (a path, a version, an environment value): at most
// 64 KiB, which any a recording writes is far below. Each is printed by show, replay and diff, and a crafted
// one of megabytes would flood the terminal and the report.
inline constexpr size_t kMaxHeaderText = size_t{64} << 10;
std::string short_text(capnp::Text::Reader t, const std::string& what) {
  if (t.size() > kMaxHeaderText)
    malformed("the header's " + what + " is " + std::to_string(t.size()) + " bytes long, more than " +
              std::to_string(kMaxHeaderText) + " (what a recording writes there is far shorter)");
  return text(t);
}

// The first words (`max_words` at most) that Cap'n Proto's packed encoding in `b` unpacks to, up to where `b`
// stops: the start of a message that may be cut short. A tag byte has one bit per nonzero byte of the word,
// and those bytes follow; tag 0 is followed by a count of further zero words, tag 0xff by a count of words
// copied verbatim. A word `b` holds only part of is left out.
std::vector<uint64_t> unpack_prefix(std::span<const uint8_t> b, size_t max_words) {
  std::vector<uint64_t> words;
  size_t p = 0;
  while (words.size() < max_words && p < b.size()) {
    const uint8_t tag = b[p++];
    uint64_t w = 0;
    bool whole = true;
    for (int i = 0; i < 8 && whole; ++i) {
      if (!((tag >> i) & 1)) continue;
      if (p >= b.size())
        whole = false;
      else
        w |= uint64_t{b[p++]} << (8 * i);
    }
    if (!whole) break;
    words.push_back(w);
    if (tag != 0 && tag != 0xff) continue;
    if (p >= b.size()) break;
    const size_t run = b[p++];  // zero words after a 0 tag, verbatim words after a 0xff tag
    for (size_t r = 0; r < run && words.size() < max_words; ++r) {
      if (tag == 0) {
        words.push_back(0);
        continue;
      }
      if (p + 8 > b.size()) break;
      uint64_t v;
      std::memcpy(&v, &b[p], 8);
      words.push_back(v);
      p += 8;
    }
  }
  return words;
}

// A string from the trace quoted in a message: at most 64 bytes of it, so a name of megabytes cannot flood
// the message (the printer escapes control characters).
std::string clipped(const std::string& s) {
  return s.size() <= 64 ? s : s.substr(0, 64) + "... (" + std::to_string(s.size()) + " bytes)";
}

// The interning state of the file up to the current message (see trace.capnp, Names). A run names each
// parameter, metric, op site and kernel once: a table past these bounds is a crafted file, which would
// otherwise grow the reader's memory message by message (each message within its own limits).
inline constexpr uint64_t kMaxNames = uint64_t{1} << 20;
inline constexpr uint64_t kMaxNameBytes = uint64_t{256} << 20;
// One name: a site, stream, parameter, metric or kernel name (a GPU kernel's, demangled, is the longest a run
// writes, some kilobytes). Names hold no control bytes: layer names refuse them, and ops, streams, metrics
// and kernels have none.
inline constexpr uint64_t kMaxNameLength = uint64_t{64} << 10;
// A message's events copy their names out of the table, a name per site or stream: the copies one message
// makes in all. A step of a recording copies kilobytes, a GPU step's kernel records some megabytes; a crafted
// message that names a long name from millions of events would otherwise take gigabytes to decode.
inline constexpr uint64_t kMaxCopiedNameBytes = uint64_t{64} << 20;
// Entries of one message's lists, each checked before anything is reserved for it: a recording's step holds
// some hundreds of events, a GPU step some thousands of kernel launches, an epoch a few logs. Cap'n Proto
// lets a list's elements take no bytes at all, and a decoded event takes some hundred bytes.
inline constexpr uint64_t kMaxEventsPerStep = uint64_t{1} << 18;
inline constexpr uint64_t kMaxLaunchesPerStep = uint64_t{1} << 20;
inline constexpr uint64_t kMaxCollectivesPerStep = uint64_t{1} << 16;
inline constexpr uint64_t kMaxNamedValues = uint64_t{1} << 16;

template <class List>
void at_most(const List& list, uint64_t most, const std::string& what) {
  if (list.size() > most)
    malformed(what + " has " + std::to_string(list.size()) + " entries, more than " + std::to_string(most) +
              " (what a run writes there, with room to spare)");
}

struct NameTable {
  std::vector<std::string> names;
  std::vector<uint32_t> metric, param, grad;
  uint64_t bytes = 0;  // of all names defined

  mutable uint64_t copied = 0;  // bytes of names at() handed out since the message began (begin_message)

  void begin_message() const { copied = 0; }

  const std::string& at(uint32_t id) const {
    if (id >= names.size())
      malformed("name id " + std::to_string(id) + " is not < the name count " + std::to_string(names.size()));
    copied += names[id].size();
    if (copied > kMaxCopiedNameBytes)
      malformed("the names this message's entries name come to more than " +
                std::to_string(kMaxCopiedNameBytes >> 20) + " MiB");
    return names[id];
  }

  void apply(schema::Names::Reader n, bool whole) {
    if (whole && n.getFirst() != 0) malformed("a checkpoint's name table must start at 0");
    if (n.getFirst() != names.size())
      malformed("names start at id " + std::to_string(n.getFirst()) + " but " + std::to_string(names.size()) +
                " are defined");
    if (whole) names.clear(), bytes = 0;
    if (names.size() + n.getNames().size() > kMaxNames)
      malformed("the name table would hold " + std::to_string(names.size() + n.getNames().size()) +
                " names, more than " + std::to_string(kMaxNames) +
                " (a run names each parameter, metric, site and kernel once)");
    for (auto t : n.getNames()) {
      const uint32_t id = static_cast<uint32_t>(names.size());
      if (t.size() > kMaxNameLength)
        malformed("name id " + std::to_string(id) + " is " + std::to_string(t.size()) +
                  " bytes long, more than " + std::to_string(kMaxNameLength) +
                  " (a name a run writes is some kilobytes at most)");
      for (const char c : t)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          malformed("name id " + std::to_string(id) + " holds the control byte " +
                    std::to_string(static_cast<unsigned>(static_cast<unsigned char>(c))) +
                    " (no name a run writes holds one)");
      names.push_back(text(t));
      bytes += names.back().size();
      if (bytes > kMaxNameBytes)
        malformed("the names defined hold more than " + std::to_string(kMaxNameBytes >> 20) + " MiB");
    }
    auto ids = [&](capnp::List<uint32_t>::Reader in, std::vector<uint32_t>& out) {
      out.clear();
      for (uint32_t id : in) {
        at(id);
        out.push_back(id);
      }
    };
    ids(n.getMetricNames(), metric);
    ids(n.getParamNames(), param);
    ids(n.getGradNames(), grad);
  }
};

ProbeLevel from_schema(schema::Level l) {
  switch (l) {
    case schema::Level::STEP: return ProbeLevel::step;
    case schema::Level::LAYER: return ProbeLevel::layer;
    case schema::Level::OP: return ProbeLevel::op;
  }
  malformed("unknown probe level " + std::to_string(static_cast<unsigned>(l)));
}

Phase from_schema(schema::Phase p) {
  switch (p) {
    case schema::Phase::FORWARD: return Phase::forward;
    case schema::Phase::BACKWARD: return Phase::backward;
    case schema::Phase::UPDATE: return Phase::update;
  }
  malformed("unknown phase " + std::to_string(static_cast<unsigned>(p)));
}

template <class T>
std::vector<T> to_vector(typename capnp::List<T>::Reader in) {
  std::vector<T> out;
  out.reserve(in.size());  // bounded: the list lies within a message no larger than the file
  for (T v : in) out.push_back(v);
  return out;
}

// Why `values` is not a permutation of 0..n-1 (n its length), "" when it is: the rows, tasks or batches it
// orders are served to the engine as indices, so each must be in range and none may repeat. `field` names the
// list in the message.
std::string not_a_permutation(std::span<const uint32_t> values, const std::string& field) {
  std::vector<bool> seen(values.size());  // bounded: the list lies within a message no larger than the file
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t v = values[i];
    const bool outside = v >= values.size();
    if (!outside && !seen[v]) {
      seen[v] = true;
      continue;
    }
    return field + "[" + std::to_string(i) + "] = " + std::to_string(v) +
           (outside ? " is not < " + std::to_string(values.size()) + ", its length"
                    : " repeats an earlier entry") +
           ": it must order the indices 0.." + std::to_string(values.size() - 1) + ", each once";
  }
  return "";
}

std::vector<std::pair<std::string, double>> named_values(capnp::List<schema::NamedValue>::Reader in,
                                                         const std::string& what) {
  at_most(in, kMaxNamedValues, what);
  std::vector<std::pair<std::string, double>> out;
  out.reserve(in.size());
  for (auto v : in) out.emplace_back(text(v.getName()), v.getValue());
  return out;
}

RngDraw read_draw(schema::RngDraw::Reader r, const NameTable& names) {
  RngDraw d;
  d.site = names.at(r.getSite());
  d.stream = names.at(r.getStream());
  d.key = r.getKey();
  d.counter = r.getCounter();
  d.count = r.getCount();
  return d;
}

// Decodes one event; nullopt for a kind this reader does not know.
std::optional<Event> read_event(schema::Event::Reader e, const NameTable& names) {
  switch (e.which()) {
    case schema::Event::RNG_DRAW: {
      auto r = e.getRngDraw();
      return RngDrawEvent{read_draw(r, names), r.getDigest()};
    }
    case schema::Event::SPLIT: {
      auto r = e.getSplit();
      SplitEvent s{names.at(r.getSite()), to_vector<uint32_t>(r.getTrain()),
                   to_vector<uint32_t>(r.getTest())};
      // Every row of the data goes to one side or the other: together the two lists order the rows 0..n-1.
      std::vector<uint32_t> rows = s.train;
      rows.insert(rows.end(), s.test.begin(), s.test.end());
      if (std::string why = not_a_permutation(rows, "split rows (train, then test)"); !why.empty())
        malformed(why);
      return s;
    }
    case schema::Event::SHUFFLE: {
      auto r = e.getShuffle();
      ShuffleEvent s;
      s.site = names.at(r.getSite());
      s.epoch = r.getEpoch();
      if (s.epoch < 0) malformed("shuffle epoch must be >= 0");
      s.length = r.getLength();
      s.digest = r.getDigest();
      if (r.hasDraw()) s.draw = read_draw(r.getDraw(), names);
      s.permutation = to_vector<uint32_t>(r.getPermutation());
      if (!s.permutation.empty()) {
        if (s.permutation.size() != s.length)
          malformed("shuffle permutation has " + std::to_string(s.permutation.size()) + " rows, length says " +
                    std::to_string(s.length));
        if (digest(std::span<const uint32_t>(s.permutation)) != s.digest)
          malformed("shuffle permutation does not match its digest");
        if (std::string why = not_a_permutation(s.permutation, "shuffle permutation"); !why.empty())
          malformed(why);
      } else if (!s.draw && s.length != 0) {
        malformed("shuffle has neither a draw nor a permutation");
      }
      // A permutation of n rows is made from n - 1 words (engine/random.h, permutation_from_words).
      if (s.draw && s.draw->count != (s.length > 1 ? s.length - 1 : 0))
        malformed("shuffle draw count " + std::to_string(s.draw->count) + " must be " +
                  std::to_string(s.length > 1 ? s.length - 1 : 0) + ": a permutation of " +
                  std::to_string(s.length) + " rows draws one word fewer than it has rows");
      return s;
    }
    case schema::Event::BATCH_ORDER: {
      int64_t b = e.getBatchOrder();
      if (b < 0) malformed("batch order must be >= 0");
      return BatchOrderEvent{b};
    }
    case schema::Event::KERNEL_CHOICE: {
      auto r = e.getKernelChoice();
      KernelChoice k;
      k.site = names.at(r.getSite());
      k.op = text(r.getOp());
      for (auto c : r.getCandidates()) k.candidates.push_back(text(c));
      k.chosen = text(r.getChosen());
      k.reason = text(r.getReason());
      k.timings_us = to_vector<double>(r.getTimingsUs());
      if (!k.timings_us.empty() && k.timings_us.size() != k.candidates.size())
        malformed("kernel choice timings must be empty or one per candidate");
      if (r.hasBlasLt()) {
        auto algos = r.getBlasLt();
        if (algos.size() > k.candidates.size()) malformed("kernel choice with more cuBLASLt algorithms than candidates");
        k.blaslt_version = r.getBlasLtVersion();
        for (uint32_t i = 0; i < algos.size(); ++i) {
          auto a = algos[i];
          BlasLtAlgo algo;
          auto words = a.getData();
          if (words.size() != algo.data.size()) malformed("cuBLASLt algorithm data must hold 8 words");
          for (uint32_t w = 0; w < words.size(); ++w) algo.data[w] = words[w];
          algo.id = a.getAlgoId();
          algo.tile = a.getTile();
          algo.split_k = a.getSplitK();
          if (algo.split_k < 1) malformed("cuBLASLt algorithm split-K must be >= 1");
          algo.reduction = a.getReductionScheme();
          algo.swizzle = a.getSwizzle();
          algo.custom = a.getCustomOption();
          algo.stages = a.getStages();
          algo.inner_shape = a.getInnerShape();
          algo.cluster_shape = a.getClusterShape();
          algo.workspace = a.getWorkspaceBytes();
          algo.waves = a.getWaves();
          k.blaslt.push_back(algo);
        }
      }
      if (r.hasCudnn()) {
        auto engines = r.getCudnn();
        if (engines.size() > k.candidates.size()) malformed("kernel choice with more cuDNN engines than candidates");
        k.cudnn_version = r.getCudnnVersion();
        for (uint32_t i = 0; i < engines.size(); ++i) {
          auto e = engines[i];
          CudnnEngine engine;
          engine.global_index = e.getGlobalIndex();
          if (engine.global_index < 0) malformed("cuDNN engine index must be >= 0");
          auto types = e.getKnobTypes();
          auto values = e.getKnobValues();
          if (types.size() != values.size()) malformed("cuDNN engine knob types and values differ in length");
          for (uint32_t j = 0; j < types.size(); ++j) engine.knobs.push_back({types[j], values[j]});
          engine.numerical_notes = to_vector<int32_t>(e.getNumericalNotes());
          engine.behavior_notes = to_vector<int32_t>(e.getBehaviorNotes());
          engine.workspace = e.getWorkspaceBytes();
          k.cudnn.push_back(std::move(engine));
        }
      }
      // The ids name the algorithms and engines: a trace cannot label one with another's id
      // (engine/kernels/conv_sites.h has the layouts).
      if (std::string bad = gpu_choice_lists_error(k); !bad.empty()) malformed(bad);
      k.plan_json = text(r.getPlanJson());
      k.tf32 = r.getTf32();
      if (r.hasLaunch()) {
        auto l = r.getLaunch();
        LaunchShape shape{l.getGridX(), l.getGridY(), l.getGridZ(), l.getBlockX(), l.getBlockY(), l.getBlockZ(),
                          l.getSharedBytes()};
        if (!shape.grid_x || !shape.grid_y || !shape.grid_z || !shape.block_x || !shape.block_y || !shape.block_z)
          malformed("kernel choice launch shape has a dimension of 0");
        k.launch = shape;
      }
      return k;
    }
    case schema::Event::PROBE: {
      auto r = e.getProbe();
      ProbeEvent p;
      p.site = names.at(r.getSite());
      p.phase = from_schema(r.getPhase());
      p.fingerprint.digest = r.getDigest();
      Summary& s = p.fingerprint.summary;
      s.count = r.getCount();
      s.sum = r.getSum();
      s.sum_sq = r.getSumSq();
      s.min = r.getMin();
      s.max = r.getMax();
      s.non_finite = r.getNonFinite();
      if (s.non_finite > s.count) malformed("probe nonFinite must be <= count");
      return p;
    }
    case schema::Event::ACCUMULATION_ORDER: {
      auto r = e.getAccumulationOrder();
      AccumulationOrderEvent a{names.at(r.getSite()), to_vector<uint32_t>(r.getOrder())};
      if (std::string why = not_a_permutation(a.order, "accumulation order at " + clipped(a.site));
          !why.empty())
        malformed(why);
      return a;
    }
  }
  return std::nullopt;
}

template <class V>
std::vector<std::pair<std::string, V>> zip_names(const std::vector<uint32_t>& ids,
                                                 typename capnp::List<V>::Reader values, const NameTable& names,
                                                 const char* what) {
  if (values.size() != ids.size())
    malformed(std::string(what) + " has " + std::to_string(values.size()) + " values for " +
              std::to_string(ids.size()) + " names");
  std::vector<std::pair<std::string, V>> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out.emplace_back(names.at(ids[i]), values[i]);
  return out;
}

// Runs `body`, turning every failure inside into an Error that names the file and offset.
template <class State, class F>
auto guarded(State& impl, uint64_t offset, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Malformed& m) {
    return impl.error_at(offset, m.what);
  } catch (const kj::Exception& e) {
    return impl.error_at(offset, std::string("malformed message: ") + e.getDescription().cStr());
  } catch (const std::bad_alloc&) {
    return impl.error_at(offset, "out of memory while decoding");
  } catch (const std::exception& e) {
    return impl.error_at(offset, e.what());
  }
}

}  // namespace

struct TraceReader::Impl {
  std::string name;
  ReaderLimits limits;
  int fd = -1;
  std::span<const uint8_t> memory;  // the source when fd < 0
  uint64_t size = 0;

  // Read-ahead window over the packed bytes of the file, and the current message unpacked.
  kj::Array<kj::byte> window;
  uint64_t window_offset = 0;
  uint64_t window_bytes = 0;
  kj::Array<capnp::word> unpacked;

  uint64_t pos = 0;  // offset of the next message
  std::optional<Error> stopped;
  std::optional<ReadStop> stop;  // `stopped`, in parts
  uint64_t error_offset = 0;     // of the last error_at, for `stop`
  std::string error_what;
  bool at_end = false;
  bool after_footer = false;
  bool truncated_tail = false;  // the last frame_at error was a cut, not a bad frame
  std::string zeros_words;      // the zero bytes read_header() found ending the file, read as a cut, in words
  std::optional<uint64_t> unvouched_offset;  // a message handed out that no message after it vouched for
  uint64_t truncated_need = 0;  // the bytes from its start that the message cut there needs, at least
  NameTable names;
  // Checkpoint tensor bytes decompressed so far (ReaderLimits::inflate_free).
  uint64_t inflated = 0;
  // Counts since the header, for the footer's checks; valid only while reading from the start.
  bool from_start = true;
  int64_t last_step = -1;  // the index of the last step read; -1: none since the header or the seek
  // What the messages read so far say comes next, for each message to be checked against (damage where one
  // does not follow): the index of the next step; the epochs ended and the steps read of the current one;
  // the parameter digests the last step recorded, which a checkpoint after it must hold. Unknown (nullopt)
  // after a seek to a message other than a checkpoint, until one re-anchors them.
  std::optional<int64_t> next_step = 0;
  std::optional<int64_t> epochs_ended = 0;
  int64_t steps_in_epoch = 0;
  // The last step read did not end: it holds events after the steps (TraceStep), not a step done.
  bool step_unended = false;
  std::optional<std::vector<std::pair<std::string, uint64_t>>> params_before;
  int64_t steps_seen = 0;
  int64_t complete_steps_seen = 0;        // steps that ended
  std::optional<uint64_t> shuffled_rows;  // the first shuffle's length: the training rows of an epoch
  uint64_t events_seen = 0;
  std::vector<CheckpointRef> checkpoints_seen;
  // Format 3 chains the messages: each holds the digest of the one before it. `previous` is the digest of
  // the message just read.
  bool chained = false;
  std::optional<uint32_t> previous;
  // The tensors checkpoints must hold (TraceReader::expect_tensors): names and shapes.
  std::optional<std::map<std::string, Shape>> expected_tensors;
  // The model tensors (names without '/') of the first checkpoint read, and its step: every checkpoint holds
  // the same (check_checkpoint_shapes).
  std::optional<std::pair<int64_t, std::map<std::string, Shape>>> first_model_shapes;
  // From the header: what a step's kernel records must keep to, and which checkpoints its recording wrote.
  ProbeLevel level = ProbeLevel::step;
  int64_t checkpoint_every = 0;
  // The step of the last message read when it is a checkpoint off the header's schedule: the final state,
  // which only the footer may follow.
  std::optional<int64_t> final_checkpoint;
  bool kernels_recorded = false;
  bool moving_statistics = false;
  ZSTD_DCtx* dctx = nullptr;

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (dctx) ZSTD_freeDCtx(dctx);
  }

  // Why zstd frames (a checkpoint tensor's chunks, an embedded data file) cannot decompress to exactly `raw`
  // bytes, from their frame headers alone; "" when they can. `total` names that size in messages.
  static std::string check_frames(capnp::List<capnp::Data>::Reader chunks, uint64_t raw, const char* total) {
    uint64_t declared = 0;
    for (auto ch : chunks) {
      unsigned long long n = ZSTD_getFrameContentSize(ch.begin(), ch.size());
      if (n == ZSTD_CONTENTSIZE_UNKNOWN || n == ZSTD_CONTENTSIZE_ERROR) return "a chunk is not a sized zstd frame";
      if (ZSTD_findFrameCompressedSize(ch.begin(), ch.size()) != ch.size())
        return "a chunk is not exactly one zstd frame";
      if (n > raw - declared) return std::string("chunks decompress to more than ") + total;
      declared += n;
    }
    if (declared != raw) return std::string("chunks decompress to less than ") + total;
    return "";
  }

  // Decompresses frames that check_frames() accepted into `dst`; "" or why it failed.
  std::string inflate_frames(capnp::List<capnp::Data>::Reader chunks, uint8_t* dst) {
    uint64_t at = 0;
    if (!dctx) dctx = ZSTD_createDCtx();
    for (auto ch : chunks) {
      uint64_t n = ZSTD_getFrameContentSize(ch.begin(), ch.size());
      size_t got = ZSTD_decompressDCtx(dctx, dst + at, n, ch.begin(), ch.size());
      // A frame whose header reads well (check_frames) but whose data does not match its checksum was
      // changed after it was written.
      if (ZSTD_getErrorCode(got) == ZSTD_error_checksum_wrong)
        return std::string("its compressed bytes do not match their checksum (zstd: ") +
               ZSTD_getErrorName(got) +
               "): they were changed after they were written (the file is damaged, not cut)";
      if (ZSTD_isError(got)) return std::string("zstd: ") + ZSTD_getErrorName(got);
      if (got != n) return "a chunk decompressed to fewer bytes than it declares";
      at += n;
    }
    return "";
  }

  Error error_at(uint64_t offset, const std::string& what) {
    error_offset = offset;
    error_what = what;
    return Error{name + ": byte " + std::to_string(offset) + ": " + what};
  }

  // message_digest() of the `n` packed bytes at `offset`, which a frame was just read from; nullopt if they
  // cannot be read again (the next message's check is then skipped, and reading stops there anyway).
  std::optional<uint32_t> digest_at(uint64_t offset, uint64_t n) {
    auto bytes = bytes_at(offset, n);
    if (!bytes) return std::nullopt;
    return message_digest({*bytes, n});
  }

  // Compares the digest that the message at `next` holds with that of the message at `offset`, just read
  // (`previous`). A next message that cannot be framed or decoded is left for the next read to report.
  Status check_against_next(uint64_t offset, uint64_t next) {
    if (!previous || after_footer) return {};  // nothing may follow a footer: next() says so
    if (next >= size) {  // the file ends after this message: nothing after it holds its digest
      unvouched_offset = offset;
      return {};
    }
    auto frame = frame_at(next);
    // A file that ends inside the next message is a recording cut there: this one was written whole. Any
    // other failure to read the next message leaves this one unvouched for, and a changed byte in its framing
    // looks just like that (the next message then starts at the wrong byte).
    auto unvouched = [&](const std::string& why) {
      return error_at(offset, "the message after this one (at byte " + std::to_string(next) +
                                  ") cannot be read (" + why +
                                  "): that message, or the bytes that frame this one, were changed after they "
                                  "were written (the file is damaged, not cut)");
    };
    if (!frame) {
      if (!truncated_tail) return unvouched(error_what);
      // Cut short, the next message may still hold enough of its start to vouch for this one, or to show
      // that it is no message at all: a changed byte in this message's framing puts the next message's start
      // at a wrong byte, and what follows can look like a message that runs past the end of the file.
      const uint64_t cut_offset = error_offset;
      const std::string cut_what = error_what;
      if (std::string why = cut_message_disowns(next, *previous); !why.empty()) {
        truncated_tail = false;
        return error_at(offset,
                        "the message after this one (at byte " + std::to_string(next) +
                            ") is cut short by the end of the file, and " + why +
                            ": this message, or the bytes that frame it, were changed after they were "
                            "written (the file is damaged, not cut)");
      }
      // Where its start cannot tell (the digest it holds lies past the words there), the end of the file
      // can: a file that ends with an intact footer was not cut, so the next message is no message and this
      // one has nothing to vouch for it. Judged now, before this message is handed out, not when the next
      // read reaches the "cut".
      if (auto footer = intact_footer_after(next)) {
        truncated_tail = false;
        return error_at(offset,
                        "the message after this one (at byte " + std::to_string(next) +
                            ") reads as running past the end of the file, but the file ends with an intact "
                            "footer (at byte " +
                            std::to_string(*footer) +
                            "): this message, or the bytes that frame it, were changed after they were "
                            "written (the file is damaged, not cut)");
      }
      error_offset = cut_offset, error_what = cut_what;
      // The message cut short vouches for this one only where the digest it holds is among the bytes left.
      const PartialRoot start = partial_root(next, 4096);
      if (start.no_message || !data_field(start, previous_slot(), 32)) unvouched_offset = offset;
      return {};
    }
    if (!*frame) return {};
    peeked = std::pair<uint64_t, Frame>(next, **frame);
    std::optional<uint32_t> held;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   capnp::FlatArrayMessageReader message((*frame)->words, options_for((*frame)->words));
                   held = message.getRoot<schema::Message>().getPrevious();
                 })) {
      return unvouched(e->getDescription().cStr());
    }
    if (held && *held != *previous)
      return error_at(offset, "this message, or the digest of it that the next message (at byte " +
                                  std::to_string(next) +
                                  ") holds, was changed after it was written (the file is damaged, not cut)");
    return {};
  }

  // The words packed from `offset` until the end of the file or `max_words` (unpack_prefix above).
  std::vector<uint64_t> unpack_prefix_at(uint64_t offset, uint64_t max_words) {
    if (offset >= size) return {};
    const uint64_t n = std::min(size - offset, max_words * 9 + 2);  // a word takes at most a tag and 8 bytes
    auto b = bytes_at(offset, n);
    if (!b) return {};
    return unpack_prefix({*b, n}, max_words);
  }

  // The start of a message at `at`, decoded from the words the file has there (`max_words` at most): the
  // words of its root struct's data section that are there (`data`, possibly fewer than `data_words`), or
  // `no_message` with why the words cannot start a message (its root is not a struct inside its first
  // segment).
  struct PartialRoot {
    bool decoded = false;  // the root pointer was there
    bool no_message = false;
    std::string why;
    uint64_t data_words = 0;
    std::vector<uint64_t> data;
  };
  PartialRoot partial_root(uint64_t at, uint64_t max_words) {
    PartialRoot out;
    const std::vector<uint64_t> w = unpack_prefix_at(at, max_words);
    if (w.empty()) return out;
    const uint64_t segments = (w[0] & 0xffffffffu) + 1, first_segment = w[0] >> 32;
    const uint64_t table_words = (segments + 2) / 2;
    if (w.size() <= table_words) return out;
    const uint64_t root = w[table_words];
    out.decoded = true;
    out.no_message = true;
    if (segments > limits.max_segments) {
      out.why = "its segment table declares " + std::to_string(segments) + " segments";
      return out;
    }
    if ((root & 3) != 0) {
      out.why = "its root pointer is not a struct pointer";
      return out;
    }
    const int64_t start = 1 + (static_cast<int32_t>(static_cast<uint32_t>(root)) >> 2);
    out.data_words = (root >> 32) & 0xffff;
    const uint64_t pointer_words = root >> 48;
    if (start < 0 || static_cast<uint64_t>(start) + out.data_words + pointer_words > first_segment) {
      out.why = "its root struct lies outside its first segment";
      return out;
    }
    out.no_message = false;
    const uint64_t first = table_words + static_cast<uint64_t>(start);
    for (uint64_t i = first; i < first + out.data_words && i < w.size(); ++i) out.data.push_back(w[i]);
    return out;
  }

  // A field of the root's data section, `bits` wide at `offset` (in units of `bits`): nullopt where the words
  // that hold it are not there; its default, 0, past the data section.
  static std::optional<uint64_t> data_field(const PartialRoot& r, unsigned offset, unsigned bits) {
    if (!r.decoded || r.no_message) return std::nullopt;
    const uint64_t bit = uint64_t{offset} * bits;
    if (bit + bits > r.data_words * 64) return 0;
    if (bit / 64 >= r.data.size()) return std::nullopt;
    return (r.data[bit / 64] >> (bit % 64)) & ((uint64_t{1} << bits) - 1);
  }

  // Where Message.previous lies in the root's data section (in units of 32 bits).
  static unsigned previous_slot() {
    static const unsigned slot =
        capnp::Schema::from<schema::Message>().getFieldByName("previous").getProto().getSlot().getOffset();
    return slot;
  }

  // The digest the message at `at` holds of the one before it (Message.previous), read from its first words,
  // so whether or not the file holds all of it: nullopt where those words do not tell.
  std::optional<uint64_t> previous_held_at(uint64_t at) {
    const PartialRoot r = partial_root(at, 4096);
    if (r.no_message) return std::nullopt;
    return data_field(r, previous_slot(), 32);
  }

  // Why the message at `next`, which the file cuts short, cannot be the one written after a message of digest
  // `expected`: it cannot start a message, or the digest it holds is another. "" when it holds `expected`, or
  // when the file stops before that field, so that nothing can be said (a cut inside a message's first
  // words).
  std::string cut_message_disowns(uint64_t next, uint32_t expected) {
    const PartialRoot r = partial_root(next, 4096);
    if (r.no_message) return r.why;
    const std::optional<uint64_t> held = data_field(r, previous_slot(), 32);
    if (!held || *held == expected) return "";
    return "the digest it holds of this message (" + std::to_string(*held) + ") is not this message's (" +
           std::to_string(expected) + ")";
  }

  // A message that the file cuts short, at `offset`, may instead be one whose framing was changed so that it
  // runs past the end of a complete file. A complete file ends with its footer, whose values carry their own
  // check: the start of an intact footer that ends the file, found within the last kFooterScanBytes after
  // `offset`, or nullopt (a cut, as far as can be told).
  static constexpr uint64_t kFooterScanBytes = uint64_t{1} << 20;
  // The last answer of intact_footer_after, by offset: a cut is asked about twice (before the message before
  // it is handed out, then when reading reaches it), and each scan may read the last MiB of the file.
  std::optional<std::pair<uint64_t, std::optional<uint64_t>>> footer_scan;
  std::optional<uint64_t> intact_footer_after(uint64_t offset) {
    if (!chained) return std::nullopt;  // footers of earlier formats carry no check
    if (footer_scan && footer_scan->first == offset) return footer_scan->second;
    std::optional<uint64_t> found = scan_for_intact_footer(offset);
    footer_scan.emplace(offset, found);
    return found;
  }
  std::optional<uint64_t> scan_for_intact_footer(uint64_t offset, uint64_t window = kFooterScanBytes) {
    static const unsigned which_offset =
        capnp::Schema::from<schema::Message>().getProto().getStruct().getDiscriminantOffset();
    const uint64_t lowest = std::max(offset + 1, size > window ? size - window : 0);
    for (uint64_t at = size; at-- > lowest;) {
      const PartialRoot r = partial_root(at, 64);
      if (r.no_message) continue;
      const std::optional<uint64_t> which = data_field(r, which_offset, 16);
      if (!which || *which != static_cast<uint64_t>(schema::Message::FOOTER)) continue;
      const uint64_t saved_offset = error_offset;
      const std::string saved_what = error_what;
      const bool saved_cut = truncated_tail;
      const uint64_t saved_need = truncated_need;
      auto frame = frame_at(at);
      error_offset = saved_offset, error_what = saved_what, truncated_tail = saved_cut,
      truncated_need = saved_need;
      if (!frame || !*frame || (*frame)->bytes != size - at) continue;
      bool intact = false;
      kj::runCatchingExceptions([&]() {
        capnp::FlatArrayMessageReader message((*frame)->words, options_for((*frame)->words));
        intact = footer_vouched_for(message.getRoot<schema::Message>());
      });
      if (intact) return at;
    }
    return std::nullopt;
  }

  // Whether `root` is a footer whose values match its check.
  static bool footer_vouched_for(schema::Message::Reader root) {
    if (root.which() != schema::Message::FOOTER) return false;
    auto f = root.getFooter();
    return f.getCheck() != 0 && f.getCheck() == footer_digest(footer_values(f));
  }

  // Whether `bytes` are one packed message, ending with them, that is an intact footer.
  bool is_intact_footer(const std::vector<uint8_t>& bytes) const {
    bool intact = false;
    kj::runCatchingExceptions([&]() {
      kj::ArrayInputStream in(kj::arrayPtr(bytes.data(), bytes.size()));
      capnp::ReaderOptions o;
      // A footer unpacks to a few times its packed size; a changed segment size asks for far more, and is
      // refused before anything that large is allocated.
      o.traversalLimitInWords = bytes.size() * 8 + 64;
      o.nestingLimit = limits.nesting_limit;
      capnp::PackedMessageReader message(in, o);
      intact = in.tryGetReadBuffer().size() == 0 && footer_vouched_for(message.getRoot<schema::Message>());
    });
    return intact;
  }

  // Whether packed `bytes` frame as one message that ends with them: its segment table's sizes are the words
  // the packed stream holds. Cheaper than decoding it, which follows only where this holds.
  static bool frames_to_end(const std::vector<uint8_t>& bytes) {
    uint64_t words = 0, want = 1;  // the table's first word, then what it declares
    bool table_read = false;
    uint8_t first[8] = {};
    for (size_t p = 0; p < bytes.size();) {
      if (words >= want) return false;
      const uint8_t tag = bytes[p++];
      uint64_t run = 1;
      if (tag == 0) {
        if (p >= bytes.size()) return false;
        run = uint64_t{1} + bytes[p++];
      } else {
        for (int i = 0; i < 8; ++i)
          if ((tag >> i) & 1) {
            if (p >= bytes.size()) return false;
            if (words == 0) first[i] = bytes[p];
            ++p;
          }
        if (tag == 0xff) {
          if (p >= bytes.size()) return false;
          const uint64_t raw = bytes[p++];
          if (raw * kWord > bytes.size() - p) return false;
          p += raw * kWord;
          run += raw;
        }
      }
      words += run;
      if (!table_read && words >= 1) {
        table_read = true;
        uint32_t count = 0, first_size = 0;
        std::memcpy(&count, first, 4);
        std::memcpy(&first_size, first + 4, 4);
        if (count != 0) return false;  // a footer is one segment
        want = uint64_t{1} + first_size;
      }
    }
    return table_read && words == want;
  }

  // The packed bytes from the start of `bytes` up to the end of unpacked word `word`.
  static size_t packed_end_of_word(const std::vector<uint8_t>& bytes, uint64_t word) {
    uint64_t words = 0;
    size_t p = 0;
    while (p < bytes.size() && words <= word) {
      const uint8_t tag = bytes[p++];
      if (tag == 0) {
        words += uint64_t{1} + (p < bytes.size() ? bytes[p] : 0);
        ++p;
        continue;
      }
      p += static_cast<size_t>(std::popcount(tag));
      ++words;
      if (tag == 0xff && p < bytes.size()) {
        words += bytes[p];
        p += 1 + size_t{bytes[p]} * kWord;
      }
    }
    return std::min(p, bytes.size());
  }

  // A footer with one bit changed may read as a message that runs past the end of the file (a bit of its
  // framing), or as a message of another kind (a bit of its kind, or of the root pointer that leads to it).
  // No cut leaves the footer's every byte: where changing one bit of what the file holds from `offset` back
  // makes an intact footer that ends the file, that bit (its byte offset and its number) was changed. Only a
  // short tail is tried, as a footer is, and only the bits that can have made it read so: those of its first
  // words, through the one that holds the message's kind (the segment table, the root pointer, the kind), and
  // where the kind reads as a footer's, the bytes that frame the rest of the packed stream: its tags and run
  // counts (the bytes before a changed one frame as they did, so a changed tag is read as a tag).
  static constexpr uint64_t kFooterRepairBytes = 4096;
  std::optional<std::pair<uint64_t, int>> footer_one_bit_away(uint64_t offset) {
    if (!chained || offset >= size || size - offset > kFooterRepairBytes) return std::nullopt;
    static const unsigned which_offset =
        capnp::Schema::from<schema::Message>().getProto().getStruct().getDiscriminantOffset();
    const std::optional<uint64_t> which = data_field(partial_root(offset, 64), which_offset, 16);
    const bool reads_as_footer = which && *which == static_cast<uint64_t>(schema::Message::FOOTER);
    auto src = bytes_at(offset, size - offset);
    if (!src) return std::nullopt;
    std::vector<uint8_t> bytes(*src, *src + (size - offset));
    // As a footer is written: the table word, the root pointer, then the root's data section.
    const size_t head = packed_end_of_word(bytes, 2 + uint64_t{which_offset} * 16 / 64);
    std::vector<size_t> tried;
    for (size_t p = 0; p < head; ++p) tried.push_back(p);
    if (reads_as_footer)
      for (size_t p = 0; p < bytes.size();) {
        const uint8_t tag = bytes[p];
        if (p >= head) tried.push_back(p);
        ++p;
        if (tag == 0) {
          if (p >= head && p < bytes.size()) tried.push_back(p);
          ++p;
          continue;
        }
        p += static_cast<size_t>(std::popcount(tag));
        if (tag != 0xff || p >= bytes.size()) continue;
        if (p >= head) tried.push_back(p);
        p += 1 + size_t{bytes[p]} * kWord;
      }
    for (size_t i : tried)
      for (int bit = 0; bit < 8; ++bit) {
        bytes[i] ^= static_cast<uint8_t>(1u << bit);
        const bool intact = frames_to_end(bytes) && is_intact_footer(bytes);
        bytes[i] ^= static_cast<uint8_t>(1u << bit);
        if (intact) return std::pair<uint64_t, int>(offset + i, bit);
      }
    return std::nullopt;
  }

  std::string changed_footer_words(const std::pair<uint64_t, int>& bit) {
    return "with bit " + std::to_string(bit.second) + " of byte " + std::to_string(bit.first) +
           " changed back, what the file holds from here is an intact footer that ends it: that bit was "
           "changed after the footer was written (the file is damaged, not cut)";
  }

  // The stop for a message at `offset` that the file cuts short (frame_at's error `cut`): damage where the
  // file ends with an intact footer, or where the "message" is the footer with a bit of it changed; the cut
  // otherwise.
  Error cut_or_damage(uint64_t offset, Error cut) {
    if (auto footer = intact_footer_after(offset)) {
      truncated_tail = false;
      return error_at(offset,
                      "this message reads as running past the end of the file, but the file ends with "
                      "an intact footer (at byte " +
                          std::to_string(*footer) +
                          "): the bytes that frame this message were changed after they were written "
                          "(the file is damaged, not cut)");
    }
    if (auto bit = footer_one_bit_away(offset)) {
      truncated_tail = false;
      return error_at(offset, "this message reads as running past the end of the file, but " +
                                  changed_footer_words(*bit));
    }
    return cut;
  }

  // Where the run of zero bytes that ends the file starts (`size` where it ends in another byte).
  uint64_t zero_tail_start() {
    // A hole in a sparse file reads as zeros and holds none on the disk: the scan starts where the file's
    // last data ends (SEEK_DATA, SEEK_HOLE), not at its size, which a truncate can make terabytes.
    uint64_t at = size;
    if (fd >= 0) {
      const off_t saved = ::lseek(fd, 0, SEEK_CUR);  // the file's position, put back below
      uint64_t data_end = 0;
      bool known = saved >= 0;
      for (off_t pos = 0; known;) {
        const off_t d = ::lseek(fd, pos, SEEK_DATA);
        if (d < 0) {
          known = errno == ENXIO;  // no data past pos; another error: the file system cannot say
          break;
        }
        const off_t h = ::lseek(fd, d, SEEK_HOLE);
        if (h < 0 || h <= d) {
          known = false;
          break;
        }
        data_end = static_cast<uint64_t>(h);
        pos = h;
      }
      if (saved >= 0) ::lseek(fd, saved, SEEK_SET);
      if (known) at = std::min(at, data_end);
    }
    while (at > 0) {
      const uint64_t n = std::min<uint64_t>(at, 4096);
      auto bytes = bytes_at(at - n, n);
      if (!bytes) return size;
      uint64_t i = n;
      while (i > 0 && (*bytes)[i - 1] == 0) --i;
      at -= n - i;
      if (i > 0) break;
    }
    return at;
  }

  // Reading stops for good at the last error_at.
  Error stop_at(Error e) {
    if (truncated_tail && !zeros_words.empty()) {
      error_what += "; " + zeros_words;
      e = Error{e.message + "; " + zeros_words};
    }
    stopped = e;
    stop = ReadStop{error_offset, truncated_tail, error_what};
    return e;
  }

  // `n` bytes at `offset` (offset + n <= size), valid until the next call.
  Result<const uint8_t*> bytes_at(uint64_t offset, uint64_t n) {
    if (fd < 0) return memory.data() + offset;
    if (offset >= window_offset && offset + n <= window_offset + window_bytes)
      return reinterpret_cast<const uint8_t*>(window.begin()) + (offset - window_offset);
    // Read ahead of the bytes asked for; a request just below the window (a scan backwards from the end, one
    // byte at a time) reads the window that ends with them instead, so that the scan reads each byte once.
    uint64_t start = offset;
    if (window_bytes > 0 && offset < window_offset && offset + n >= window_offset && n < kReadAhead)
      start = offset + n > kReadAhead ? offset + n - kReadAhead : 0;
    uint64_t want = std::min(std::max(n + (offset - start), kReadAhead), size - start);
    if (window.size() < want) {
      window = nullptr;  // release before growing: never hold two large buffers
      window = kj::heapArray<kj::byte>(want);
    }
    uint8_t* dst = window.begin();
    uint64_t done = 0;
    while (done < want) {
      ssize_t r = ::pread(fd, dst + done, want - done, static_cast<off_t>(start + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return error_at(start + done, std::string("read failed: ") + std::strerror(errno));
      if (r == 0) break;
      done += static_cast<uint64_t>(r);
    }
    if (done < (offset - start) + n) {
      window_bytes = 0;
      return error_at(start + done, "the file shrank while being read");
    }
    window_offset = start;
    window_bytes = done;
    return static_cast<const uint8_t*>(dst) + (offset - start);
  }

  // Walks Cap'n Proto's packed encoding from `p` until it has produced `want` words, the way the packer
  // wrote them: a tag byte (one bit per nonzero byte of the word), the nonzero bytes; tag 0 is followed by
  // a count of further zero words, tag 0xff by a count of words copied verbatim. With `out`, the words are
  // unpacked there; without, they are only counted, which checks that the file holds them before anything
  // is allocated for them. Returns the position after them. A run may not cross `want`: the packer starts
  // afresh at every piece of a message.
  Result<uint64_t> walk_packed(uint64_t p, uint64_t want, uint8_t* out, uint64_t message_offset) {
    uint64_t produced = 0;
    auto need = [&](uint64_t at, uint64_t n) -> Result<const uint8_t*> {
      if (n > size - std::min(at, size)) return truncated(message_offset, at + n - message_offset);
      return bytes_at(at, n);
    };
    auto run_fits = [&](uint64_t run) {
      if (run > want - produced) malformed("a packed run crosses the end of a segment table or message");
    };
    while (produced < want) {
      auto tag = need(p, 2);  // every tag is followed by at least one byte: a value or a count
      if (!tag) return tag.error();
      const uint8_t t = (*tag)[0];
      ++p;
      if (t == 0) {
        const uint64_t run = uint64_t{1} + (*tag)[1];
        ++p;
        run_fits(run);
        if (out) std::memset(out + produced * kWord, 0, run * kWord);
        produced += run;
        continue;
      }
      const int n = std::popcount(t);
      auto b = need(p, t == 0xff ? 9 : n);
      if (!b) return b.error();
      if (out) {
        uint8_t* w = out + produced * kWord;
        for (int i = 0, k = 0; i < 8; ++i) w[i] = (t >> i) & 1 ? (*b)[k++] : 0;
      }
      p += n;
      ++produced;
      if (t != 0xff) continue;
      const uint64_t run = (*b)[8];
      ++p;
      run_fits(run);
      if (out && run) {
        auto raw = need(p, run * kWord);
        if (!raw) return raw.error();
        std::memcpy(out + produced * kWord, *raw, run * kWord);
      } else if (run * kWord > size - p) {
        return truncated(message_offset, p + run * kWord - message_offset);
      }
      p += run * kWord;
      produced += run;
    }
    return p;
  }

  Error truncated(uint64_t offset, uint64_t need) {
    truncated_tail = true;
    truncated_need = need;
    return error_at(offset, "truncated: the message needs at least " + std::to_string(need) + " bytes, " +
                                std::to_string(size - offset) + " remain (the recording did not end cleanly)");
  }

  // One message in the file: its words, unpacked, and the bytes it takes in the file.
  struct Frame {
    kj::ArrayPtr<const capnp::word> words;
    uint64_t bytes = 0;
  };

  // The packed message at `offset`. Its size comes from the segment table, checked against the limits, and
  // the file must hold all of it before the words are allocated and unpacked (by Cap'n Proto's unpacker).
  // nullopt: end of file.
  // The frame a check of the next message's digest unpacked already (its words are still in `unpacked`).
  std::optional<std::pair<uint64_t, Frame>> peeked;

  Result<std::optional<Frame>> frame_at(uint64_t offset) {
    if (peeked) {
      const auto [at, frame] = *peeked;
      peeked.reset();
      if (at == offset) return std::optional<Frame>(frame);
    }
    if (offset == size) return std::optional<Frame>();
    truncated_tail = false;
    return guarded(*this, offset, [&]() -> Result<std::optional<Frame>> {
      uint32_t table_head[2];
      auto after_first = walk_packed(offset, 1, reinterpret_cast<uint8_t*>(table_head), offset);
      if (!after_first) return after_first.error();
      const uint64_t segments = uint64_t{table_head[0]} + 1;
      if (segments > limits.max_segments)
        return error_at(offset, "message declares " + std::to_string(segments) + " segments (limit " +
                                    std::to_string(limits.max_segments) + ")");
      // The table: the count, one size per segment, padded to whole words.
      const uint64_t table_words = (segments + 2) / 2;
      std::vector<uint32_t> table(table_words * 2);
      table[0] = table_head[0], table[1] = table_head[1];
      auto after_table = table_words > 1 ? walk_packed(*after_first, table_words - 1,
                                                       reinterpret_cast<uint8_t*>(table.data() + 2), offset)
                                         : after_first;
      if (!after_table) return after_table.error();
      uint64_t segment_words = 0;
      for (uint64_t i = 0; i < segments; ++i) segment_words += table[1 + i];  // <= 512 * 2^32: no overflow
      const uint64_t total = (table_words + segment_words) * kWord;
      if (total > limits.max_message_bytes)
        return error_at(offset, "message declares " + std::to_string(total) + " bytes (limit " +
                                    std::to_string(limits.max_message_bytes) + ")");
      auto end = walk_packed(*after_table, segment_words, nullptr, offset);
      if (!end) return end.error();
      const uint64_t packed = *end - offset;
      const uint64_t ratio = std::max<uint64_t>(limits.max_unpacked_per_packed_byte, 1);
      if (total > kUnpackedFree && (total - kUnpackedFree) / ratio > packed)
        return error_at(offset, "message unpacks to " + std::to_string(total) + " bytes from " +
                                    std::to_string(packed) + " in the file, more than " +
                                    std::to_string(ratio) +
                                    " times as many (limit): runs of zero words that no recording writes");
      // Every size is checked and the bytes are there: unpack.
      const uint64_t words = table_words + segment_words;
      if (unpacked.size() < words) {
        unpacked = nullptr;
        unpacked = kj::heapArray<capnp::word>(words);
      }
      auto src = bytes_at(offset, packed);
      if (!src) return src.error();
      kj::ArrayInputStream in(kj::arrayPtr(*src, packed));
      capnp::_::PackedInputStream unpacker(in);
      auto* dst = reinterpret_cast<kj::byte*>(unpacked.begin());
      unpacker.read(dst, kWord);
      if (table_words > 1) unpacker.read(dst + kWord, (table_words - 1) * kWord);
      if (segment_words) unpacker.read(dst + table_words * kWord, segment_words * kWord);
      if (in.tryGetReadBuffer().size() != 0) malformed("the packed message does not end where its table says");
      return std::optional(Frame{kj::arrayPtr(unpacked.begin(), words), packed});
    });
  }

  capnp::ReaderOptions options_for(kj::ArrayPtr<const capnp::word> words) const {
    capnp::ReaderOptions o;
    // Every field is read once, so traversal stays near the message size; the factor leaves room for
    // Cap'n Proto's own accounting and blocks pointer-reuse amplification.
    o.traversalLimitInWords = words.size() * 4 + 1024;
    o.nestingLimit = limits.nesting_limit;
    return o;
  }

  TraceHeader read_header(schema::Header::Reader h) {
    if (h.getMagic() != kMagic) malformed("not a trainrr trace (bad magic)");
    if (h.getMinReaderVersion() > kReaderVersion)
      malformed("trace needs reader version " + std::to_string(h.getMinReaderVersion()) + ", this is version " +
                std::to_string(kReaderVersion));
    TraceHeader out;
    out.format_version = h.getFormatVersion();
    if (out.format_version < 1) malformed("formatVersion must be >= 1");
    out.min_reader_version = h.getMinReaderVersion();
    out.writer_version = short_text(h.getWriterVersion(), "writerVersion");
    out.config = text(h.getConfig());
    out.config_path = short_text(h.getConfigPath(), "configPath");
    for (auto o : h.getConfigOverrides())
      out.config_overrides.push_back(short_text(o, "a configOverrides entry"));
    out.seed = h.getSeed();
    out.seed_from_entropy = h.getSeedFromEntropy();
    out.level = from_schema(h.getLevel());
    out.checkpoint_every = h.getCheckpointEvery();
    if (out.checkpoint_every < 0) malformed("checkpointEvery must be >= 0");
    out.rank = h.getRank();
    out.world_size = h.getWorldSize();
    out.run_id = short_text(h.getRunId(), "runId");
    if (out.world_size < 0 || out.rank < 0 || (out.world_size == 0 && out.rank != 0) ||
        (out.world_size > 0 && out.rank >= out.world_size))
      malformed("rank " + std::to_string(out.rank) + " of worldSize " + std::to_string(out.world_size) +
                ": rank must be < worldSize (and 0 when worldSize is 0)");
    out.kernels_recorded = h.getKernelsRecorded();
    out.kernels_not_recorded = short_text(h.getKernelsNotRecorded(), "kernelsNotRecorded");
    if (out.kernels_recorded && !out.kernels_not_recorded.empty())
      malformed("the header says GPU kernels were recorded and gives a reason why they were not ('" +
                clipped(out.kernels_not_recorded) + "')");
    out.moving_statistics = h.getMovingStatistics();
    level = out.level;
    checkpoint_every = out.checkpoint_every;
    kernels_recorded = out.kernels_recorded;
    moving_statistics = out.moving_statistics;
    // One value per key: with two, show would present one and replay compare the other.
    std::map<std::string, std::string> environment;
    for (auto kv : h.getEnvironment()) {
      std::string key = short_text(kv.getKey(), "an environment key"),
                  value = short_text(kv.getValue(), "environment value of " + clipped(key));
      if (auto [at, fresh] = environment.emplace(key, value); !fresh)
        malformed("the header's environment holds the key '" + clipped(key) + "' twice ('" +
                  clipped(at->second) + "' and '" + clipped(value) +
                  "'): a recording writes each key once, so the header was changed after it was written (the "
                  "file is damaged)");
      out.environment.emplace_back(std::move(key), std::move(value));
    }
    for (auto d : h.getDatasets()) {
      DatasetInfo info;
      info.name = text(d.getName());
      // The name picks the configuration key the file replaces on replay; it never reaches a path.
      if (!is_known_dataset_name(info.name))
        malformed("data set name '" + clipped(info.name) + "' is not one of " + known_dataset_names());
      for (const DatasetInfo& earlier : out.datasets)
        if (earlier.name == info.name) malformed("data set '" + info.name + "' appears twice");
      info.path = short_text(d.getPath(), "data set '" + info.name + "''s path");
      info.size_bytes = d.getSize();
      info.digest = {d.getDigestLow(), d.getDigestHigh()};
      auto chunks = d.getEmbedded();
      if (chunks.size() > 0) {
        uint64_t total = 0;
        for (auto c : chunks) total += c.size();
        if (total != info.size_bytes)
          malformed("data set '" + info.name + "': embedded bytes (" + std::to_string(total) +
                    ") differ from its size (" + std::to_string(info.size_bytes) + ")");
        if (limits.embedded_data) {
          info.embedded.reserve(total);  // bounded: the chunks lie within this message
          for (auto c : chunks) info.embedded.insert(info.embedded.end(), c.begin(), c.end());
          if (digest128_bytes(info.embedded) != info.digest)
            malformed("data set '" + info.name + "': embedded bytes do not match its digest");
        } else {
          info.embedded_not_read = total > 0;
        }
      }
      auto frames = d.getEmbeddedZstd();
      if (frames.size() > 0) {
        auto fail = [&](const std::string& why) { malformed("data set '" + info.name + "': " + why); };
        if (chunks.size() > 0) fail("both embedded and embeddedZstd are set");
        if (info.size_bytes > limits.max_embedded_bytes)
          fail(std::to_string(info.size_bytes) + " bytes exceed the limit of " +
               std::to_string(limits.max_embedded_bytes) + " for embedded data");
        if (std::string why = check_frames(frames, info.size_bytes, "its size"); !why.empty()) fail(why);
        if (limits.embedded_data) {
          info.embedded.resize(info.size_bytes);  // bounded by the limit checked above
          if (std::string why = inflate_frames(frames, info.embedded.data()); !why.empty()) fail(why);
          if (digest128_bytes(info.embedded) != info.digest) fail("embedded bytes do not match its digest");
        } else {
          info.embedded_not_read = info.size_bytes > 0;
        }
      }
      out.datasets.push_back(std::move(info));
    }
    return out;
  }

  // A recording writes its steps in order, each index one more than the last, from 0; the steps of an
  // epoch, then the end of that epoch; a checkpoint where the steps before it leave the run. A message that
  // breaks this order was changed, moved, repeated or left out after it was written: damage at that message.
  static constexpr const char* kChanged =
      ": messages were moved, repeated, left out or changed after they were written (the file is damaged)";
  static constexpr const char* kLevelChanged =
      ": the header or the step was changed after it was written (the file is damaged)";
  static std::string epoch_str(int64_t epoch) { return "epoch " + std::to_string(epoch + 1); }

  // A recording writes the initial state, one checkpoint every checkpointEvery steps (none when it is 0), and
  // the final state just before the footer. A checkpoint off that schedule is the final state: `what` (the
  // message after it, not the footer) is damage.
  bool scheduled(int64_t step) const {
    return step == 0 || (checkpoint_every > 0 && step % checkpoint_every == 0);
  }
  void check_not_after_final(const std::string& what) {
    if (!final_checkpoint) return;
    malformed(
        what + " follows the checkpoint at step " + std::to_string(*final_checkpoint) +
        ", which the header's checkpointEvery (" + std::to_string(checkpoint_every) + ": " +
        (checkpoint_every > 0 ? "one every " + std::to_string(checkpoint_every) + " steps"
                              : std::string("no periodic checkpoints")) +
        ") does not schedule: a checkpoint off that schedule is the final state, which only the footer "
        "follows; the header's checkpointEvery or the messages were changed after they were written (the "
        "file is damaged)");
  }

  void check_follows(const TraceStep& step) {
    const std::string at = "step " + std::to_string(step.index);
    if (next_step && step.index != *next_step)
      malformed(at +
                (last_step >= 0 ? " follows step " + std::to_string(last_step)
                 : from_start
                     ? " is the first step"
                     : " follows the checkpoint taken after " + std::to_string(*next_step) + " steps") +
                ", where step " + std::to_string(*next_step) + " was due: step indices go up by one from 0" +
                kChanged);
    if (step.end && epochs_ended && step.epoch != *epochs_ended)
      malformed(at + " says it is in " + epoch_str(step.epoch) + ", but after " +
                std::to_string(*epochs_ended) + " ended epoch" + (*epochs_ended == 1 ? "" : "s") +
                " the steps are in " + epoch_str(*epochs_ended) + kChanged);
  }

  void check_epoch_end(const TraceEpoch& e) {
    const std::string at = "the end of " + epoch_str(e.epoch);
    if (epochs_ended) {
      if (e.epoch != *epochs_ended)
        malformed(at + " follows " +
                  (*epochs_ended == 0 ? std::string("no ended epoch")
                                      : "the end of " + epoch_str(*epochs_ended - 1)) +
                  ", where the end of " + epoch_str(*epochs_ended) + " was due" + kChanged);
      if (steps_in_epoch == 0) malformed(at + " follows no step of that epoch" + kChanged);
    }
    epochs_ended = e.epoch + 1;
    steps_in_epoch = 0;
  }

  // Before a checkpoint's tensors are read: its step, epoch and batch against the messages before it.
  // Returns whether its parameters are to be checked against the step before it.
  bool check_checkpoint_place(const TraceCheckpoint& c) {
    const std::string at = "checkpoint at step " + std::to_string(c.step) + " (taken after " +
                           std::to_string(c.step) + " steps)";
    if (const std::optional<int64_t> due =
            next_step ? std::optional(*next_step - (step_unended ? 1 : 0)) : std::nullopt;
        due && c.step != *due)
      malformed(at +
                (last_step >= 0 ? " follows step " + std::to_string(last_step)
                                : std::string(" precedes every step")) +
                ": a checkpoint there is at step " + std::to_string(*due) + kChanged);
    if (epochs_ended && (c.epoch != *epochs_ended || c.batch_in_epoch != steps_in_epoch))
      malformed(at + " says " + std::to_string(c.epoch) + " epochs ended and " +
                std::to_string(c.batch_in_epoch) +
                " batches of the next done, where the messages before it say " +
                std::to_string(*epochs_ended) + " and " + std::to_string(steps_in_epoch) + kChanged);
    return c.step > 0 && params_before && last_step == c.step - 1;
  }

  // Whether a step recorded what its header's level records: at level step no probe and one digest over
  // all parameters; above it the level's probes (at least one that only this level records) and one digest
  // per parameter; never a probe of another level.
  void check_level(const TraceStep& step) {
    const std::string at = "step " + std::to_string(step.index);
    const std::string lv = std::string("level ") + probe_level_name(level);
    bool own = false;  // a probe that only this level records
    for (const Event& e : step.events) {
      const auto* p = std::get_if<ProbeEvent>(&e);
      if (!p) continue;
      if (!probe_recorded_at(p->site, level) || (!moving_statistics && is_moving_statistics_probe(p->site)))
        malformed(at + " holds a probe of " + clipped(p->site) + ", which a trace recorded at " + lv +
                  " (as its header says) does not hold" + kLevelChanged);
      own = own || level == ProbeLevel::layer || p->site.find('/') != std::string::npos;
    }
    if (level != ProbeLevel::step && !own)
      malformed(at + " holds none of the probes a trace recorded at " + lv + " (as its header says) holds" +
                kLevelChanged);
    const auto& params = step.end->params;
    if (!params.empty() && is_combined(params) != (level == ProbeLevel::step))
      malformed(at + " holds " +
                (is_combined(params) ? "one digest over all parameters" : "a digest per parameter") +
                ", which a trace recorded at " + lv + " (as its header says) does not" + kLevelChanged);
  }

  TraceStep read_step(schema::Step::Reader s, std::vector<std::string>& notes, uint64_t offset) {
    TraceStep out;
    out.index = s.getIndex();
    out.epoch = s.getEpoch();
    out.batch = s.getBatch();
    if (out.index < 0 || out.epoch < 0 || out.batch < 0) malformed("step index, epoch and batch must be >= 0");
    if (out.index <= last_step)
      malformed("step " + std::to_string(out.index) + " follows step " + std::to_string(last_step) +
                ": indices must increase");
    // Names first: the step's events may use names the step introduces.
    if (s.hasNewNames()) names.apply(s.getNewNames(), false);
    auto events = s.getEvents();
    at_most(events, kMaxEventsPerStep, "step " + std::to_string(out.index) + "'s event list");
    at_most(s.getCollectives(), kMaxCollectivesPerStep,
            "step " + std::to_string(out.index) + "'s allreduce list");
    out.events.reserve(events.size() + 1);
    if (s.getHasBatchOrder()) {
      if (s.getBatchOrder() < 0) malformed("batch order must be >= 0");
      out.events.push_back(BatchOrderEvent{s.getBatchOrder()});
    }
    for (auto e : events) {
      std::optional<Event> ev;
      try {
        ev = read_event(e, names);
      } catch (const Malformed& m) {
        malformed("step " + std::to_string(out.index) + ": " + m.what);
      }
      if (ev) {
        out.events.push_back(std::move(*ev));
      } else if (notes.size() < kMaxNotes) {
        notes.push_back(name + ": byte " + std::to_string(offset) + ": step " + std::to_string(out.index) +
                        ": skipped an event of unknown kind " + std::to_string(static_cast<unsigned>(e.which())) +
                        " (written by a newer trainrr)");
      }
    }
    for (auto c : s.getCollectives()) {
      CollectiveCall call;
      call.step = out.index;
      call.bucket = c.getBucket();
      call.offset = c.getOffset();
      call.count = c.getCount();
      call.variant = text(c.getVariant());
      call.forced = c.getForced();
      call.algorithm = text(c.getAlgorithm());
      call.algorithm_inferred = c.getAlgorithmInferred();
      call.ranks = c.getRanks();
      call.shards = c.getShards();
      call.first_shard = c.getFirstShard();
      for (uint64_t d : c.getShardRows()) call.shard_rows.push_back(d);
      for (uint64_t d : c.getShardDigests()) call.shard_digests.push_back(d);
      call.input_digest = c.getInputDigest();
      call.result_digest = c.getResultDigest();
      for (uint32_t r : c.getOrder()) call.order.push_back(r);
      if (call.bucket < 0 || call.offset < 0 || call.count < 0) malformed("collective: bucket, offset and count must be >= 0");
      if (call.ranks < 1 || call.shards < 1 || call.shards % call.ranks != 0)
        malformed("collective: shards must be a positive multiple of ranks");
      if (call.first_shard < 0 || call.first_shard + static_cast<int64_t>(call.shard_digests.size()) > call.shards)
        malformed("collective: firstShard + the shard digests must be <= shards");
      if (call.shard_rows.size() != call.shard_digests.size())
        malformed("collective: shardRows and shardDigests must have one entry per shard of the rank");
      for (uint32_t r : call.order)
        if (r >= static_cast<uint32_t>(call.ranks)) malformed("collective: an order names a rank >= ranks");
      out.collectives.push_back(std::move(call));
    }
    if (s.hasKernels()) {
      if (!kernels_recorded)
        malformed("step " + std::to_string(out.index) +
                  " has kernel records, but the header says GPU kernels were not recorded");
      auto k = s.getKernels();
      StepKernels kernels;
      kernels.count = k.getCount();
      kernels.digest = k.getDigest();
      kernels.unattributed = k.getUnattributed();
      kernels.dropped = k.getDropped();
      auto launches = k.getLaunches();
      at_most(launches, kMaxLaunchesPerStep, "step " + std::to_string(out.index) + "'s kernel launch list");
      kernels.launches.reserve(launches.size());
      for (auto l : launches) {
        KernelLaunch launch;
        launch.site = names.at(l.getSite());
        launch.name = names.at(l.getName());
        launch.grid_x = l.getGridX(), launch.grid_y = l.getGridY(), launch.grid_z = l.getGridZ();
        launch.block_x = l.getBlockX(), launch.block_y = l.getBlockY(), launch.block_z = l.getBlockZ();
        launch.static_shared = l.getStaticShared();
        launch.dynamic_shared = l.getDynamicShared();
        launch.duration_ns = l.getDurationNs();
        kernels.launches.push_back(std::move(launch));
      }
      if (std::string why = check_step_kernels(kernels, level); !why.empty()) malformed(why);
      out.kernels = std::move(kernels);
    }
    if (s.getEnded()) {
      StepEnd end;
      end.loss = s.getLoss();
      end.metrics = zip_names<double>(names.metric, s.getMetrics(), names, "metrics");
      end.params = zip_names<uint64_t>(names.param, s.getParams(), names, "params");
      end.grads = zip_names<uint64_t>(names.grad, s.getGrads(), names, "grads");
      out.end = std::move(end);
    } else if (s.getMetrics().size() || s.getParams().size() || s.getGrads().size()) {
      malformed("a step that did not end has metrics or digests");
    }
    check_follows(out);
    if (out.end) check_level(out);
    last_step = out.index;
    next_step = out.index + 1;
    step_unended = !out.end;
    if (out.end) {
      ++steps_in_epoch;
      params_before = out.end->params;
    } else {
      params_before.reset();
    }
    ++steps_seen;
    complete_steps_seen += out.end.has_value();
    // Every epoch shuffles the run's training rows: the first shuffle read says how many, and the others
    // order as many.
    for (const Event& e : out.events)
      if (const auto* sh = std::get_if<ShuffleEvent>(&e)) {
        if (!shuffled_rows) shuffled_rows = sh->length;
        if (sh->length != *shuffled_rows)
          malformed(
              "step " + std::to_string(out.index) + ": epoch " + std::to_string(int64_t{sh->epoch} + 1) +
              "'s shuffle orders " + std::to_string(sh->length) + " rows, an earlier epoch's " +
              std::to_string(*shuffled_rows) + ": every epoch of a run shuffles the same training rows");
      }
    events_seen += events.size() + (s.getHasBatchOrder() ? 1 : 0);
    return out;
  }

  // The shapes of a checkpoint's tensors, from the names and shapes alone, before anything is decompressed.
  // An optimizer's state "<slot>/<parameter>" ("m/dense_1.kernel") is updated elementwise beside its
  // parameter, a model tensor (a name without '/') of the same checkpoint: it has the parameter's shape. And
  // a run's model keeps its tensors and their shapes from checkpoint to checkpoint: every checkpoint holds
  // those the first one read holds. So no tensor's size is larger than the model's, which the steps check.
  void check_checkpoint_shapes(schema::Checkpoint::Reader c, int64_t step) {
    std::map<std::string, Shape> shapes, model_shapes;
    for (auto t : c.getTensors()) {
      std::string name = text(t.getName());
      Shape shape;
      for (int64_t d : t.getShape()) shape.push_back(d);
      if (name.find('/') == std::string::npos) model_shapes.emplace(name, shape);
      if (!shapes.emplace(std::move(name), std::move(shape)).second)
        malformed("checkpoint at step " + std::to_string(step) + ": it holds tensor '" +
                  clipped(text(t.getName())) + "' twice");
    }
    if (!first_model_shapes) first_model_shapes.emplace(step, model_shapes);
    const auto& [first_step, first] = *first_model_shapes;
    for (const auto& [name, shape] : model_shapes) {
      const auto it = first.find(name);
      if (it == first.end())
        malformed("checkpoint tensor '" + clipped(name) + "': the checkpoint at step " +
                  std::to_string(first_step) + " holds no such tensor, and a run's model keeps its tensors");
      if (it->second != shape)
        malformed("checkpoint tensor '" + clipped(name) + "': has shape " + shape_str(shape) +
                  ", the checkpoint at step " + std::to_string(first_step) + " " + shape_str(it->second) +
                  ": a run's model keeps the shapes of its tensors");
    }
    for (const auto& [name, shape] : first)
      if (!model_shapes.count(name))
        malformed("checkpoint at step " + std::to_string(step) + ": it lacks tensor '" + clipped(name) +
                  "', which the checkpoint at step " + std::to_string(first_step) +
                  " holds, and a run's model keeps its tensors");
    for (const auto& [name, shape] : shapes) {
      const size_t slash = name.find('/');
      if (slash == std::string::npos) continue;
      const std::string param = name.substr(slash + 1);
      const auto it = model_shapes.find(param);
      if (it == model_shapes.end())
        malformed("checkpoint tensor '" + clipped(name) + "': the optimizer state of a parameter '" +
                  clipped(param) + "' that the checkpoint does not hold");
      if (it->second != shape)
        malformed("checkpoint tensor '" + clipped(name) + "': has shape " + shape_str(shape) +
                  ", its parameter " + clipped(param) + " " + shape_str(it->second) +
                  ": an optimizer's state holds one value per value of its parameter");
    }
  }

  TraceCheckpoint read_checkpoint(schema::Checkpoint::Reader c) {
    TraceCheckpoint out;
    out.step = c.getStep();
    out.epoch = c.getEpoch();
    out.batch_in_epoch = c.getBatchInEpoch();
    if (out.step < 0 || out.epoch < 0 || out.batch_in_epoch < 0)
      malformed("checkpoint step, epoch and batch must be >= 0");
    const bool check_params = check_checkpoint_place(out);
    std::vector<std::pair<std::string, uint64_t>> model;  // digests of its model tensors, to check
    out.seed = c.getSeed();
    at_most(c.getTensors(), kMaxCheckpointTensors, "a checkpoint's tensor list");
    if (!c.hasNames()) malformed("checkpoint without its name table");
    NameTable fresh;
    fresh.apply(c.getNames(), true);
    // Read on from the messages before it, the reader holds the whole interning state the checkpoint carries:
    // another one would name the steps after it otherwise (their digests under other parameters' names).
    if (epochs_ended && (fresh.names != names.names || fresh.metric != names.metric ||
                         fresh.param != names.param || fresh.grad != names.grad))
      malformed("checkpoint at step " + std::to_string(out.step) +
                ": its name table is not the one the messages before it built" + kChanged);
    check_checkpoint_shapes(c, out.step);
    uint64_t total = 0;
    for (auto t : c.getTensors()) {
      NamedTensor nt;
      nt.name = text(t.getName());
      auto fail = [&](const std::string& why) {
        malformed("checkpoint tensor '" + clipped(nt.name) + "': " + why);
      };
      // Bounded before anything is decompressed: see `inflated`.
      auto inflating = [&](uint64_t bytes) {
        const uint64_t allowed = limits.inflate_free + limits.inflate_per_file_byte * size;
        if (bytes > allowed - std::min(allowed, inflated))
          fail("the checkpoints read would decompress to more than " + std::to_string(allowed) + " bytes (" +
               std::to_string(limits.inflate_per_file_byte) + " times the file's " + std::to_string(size) +
               " bytes, past the first " + std::to_string(limits.inflate_free) +
               "): no recording's tensors compress so far");
        inflated += bytes;
      };
      uint64_t raw = t.getRawBytes();
      if (raw > limits.max_tensor_bytes)
        fail(std::to_string(raw) + " bytes exceed the limit of " + std::to_string(limits.max_tensor_bytes));
      if (raw > limits.max_checkpoint_bytes - total)
        fail("the checkpoint exceeds the limit of " + std::to_string(limits.max_checkpoint_bytes) + " bytes");
      total += raw;
      auto shape = t.getShape();
      bool empty = false;
      for (int64_t d : shape) {
        if (d < 0) fail("negative dimension");
        empty |= d == 0;
        nt.value.shape.push_back(d);
      }
      // The product is kept <= raw / 4 at every step, so it cannot overflow into a small, matching value.
      uint64_t elements = empty ? 0 : 1;
      for (int64_t d : shape) {
        if (empty) break;
        if (elements > raw / 4 / static_cast<uint64_t>(d)) fail("shape product times 4 must equal rawBytes");
        elements *= static_cast<uint64_t>(d);
      }
      if (elements * 4 != raw) fail("shape product times 4 must equal rawBytes");
      if (expected_tensors) {
        auto it = expected_tensors->find(nt.name);
        if (it == expected_tensors->end()) fail("is no tensor of the model the configuration builds");
        if (it->second != nt.value.shape)
          fail("has shape " + shape_str(nt.value.shape) + ", the model the configuration builds " +
               shape_str(it->second));
      }
      auto chunks = t.getChunks();
      // The frames' headers declare what they decompress to: checked against rawBytes before anything is.
      if (std::string why = check_frames(chunks, raw, "rawBytes"); !why.empty()) fail(why);
      if (limits.tensor_values) {
        // Every size is checked: allocating now is bounded by the limits (and the model, where it is known).
        inflating(raw);
        nt.value.data.resize(elements);
        if (std::string why = inflate_frames(chunks, reinterpret_cast<uint8_t*>(nt.value.data.data()));
            !why.empty())
          fail(why);
        if (check_params && nt.name.find('/') == std::string::npos)
          model.emplace_back(nt.name, digest(nt.value));
      } else if (check_params && nt.name.find('/') == std::string::npos) {
        // Decompressed for its digest only, one tensor at a time (bounded by max_tensor_bytes).
        inflating(raw);
        std::vector<float> values(elements);
        if (std::string why = inflate_frames(chunks, reinterpret_cast<uint8_t*>(values.data())); !why.empty())
          fail(why);
        model.emplace_back(nt.name, digest(std::span<const float>(values)));
      }
      out.tensors.push_back(std::move(nt));
    }
    for (auto r : c.getRngOffsets()) out.rng_offsets.emplace_back(text(r.getStream()), r.getOffset());
    out.permutation = to_vector<uint32_t>(c.getPermutation());
    out.batches_done = to_vector<uint32_t>(c.getBatchesDone());
    const std::string at = "checkpoint at step " + std::to_string(out.step) + ": ";
    if (std::string why = not_a_permutation(out.permutation, "permutation"); !why.empty())
      malformed(at + why);
    // The batches handed out, each once; that each is < the epoch's batch count the engine checks, which
    // knows the count.
    std::vector<uint32_t> done = out.batches_done;
    std::sort(done.begin(), done.end());
    if (auto twice = std::adjacent_find(done.begin(), done.end()); twice != done.end())
      malformed(at + "batchesDone names batch " + std::to_string(*twice) + " twice");
    out.scalars = named_values(c.getScalars(), "a checkpoint's scalars");
    if (check_params)
      if (std::string why = parameters_disagree(model, *params_before); !why.empty())
        malformed(at + "its parameters are not those step " + std::to_string(last_step) +
                  " recorded after its update (" + why +
                  "): the checkpoint or the step was changed after it was written (the file is damaged)");
    next_step = out.step;
    step_unended = false;
    epochs_ended = out.epoch;
    steps_in_epoch = out.batch_in_epoch;
    names = std::move(fresh);
    return out;
  }

  // The footer's values as written, unchecked.
  static TraceFooter footer_values(schema::Footer::Reader f) {
    TraceFooter out;
    out.completed = f.getCompleted();
    out.end_reason = text(f.getEndReason());
    out.step_count = f.getStepCount();
    out.event_count = f.getEventCount();
    for (auto r : f.getCheckpoints()) out.checkpoints.push_back(CheckpointRef{r.getStep(), r.getOffset()});
    return out;
  }

  TraceFooter read_footer(schema::Footer::Reader f, uint64_t offset, const TraceHeader& header,
                          uint64_t header_size) {
    TraceFooter out = footer_values(f);
    for (size_t i = 0; i < out.checkpoints.size(); ++i) {
      const uint64_t at = out.checkpoints[i].offset;
      if (at < header_size || at >= offset || (i > 0 && at <= out.checkpoints[i - 1].offset))
        malformed("footer: checkpoint offset " + std::to_string(at) + " is not a message offset");
    }
    if (!chained && f.getCheck() != 0)
      malformed(
          "the footer carries a check of its values, which only traces of format 3 and later carry: the "
          "header's formatVersion or the footer was changed after it was written (the file is damaged)");
    // A writer of format 3 writes a check that is never 0: a footer without one had the bits that hold it
    // changed (read as the field's default, the check is 0, and vouches for nothing).
    if (chained && f.getCheck() == 0)
      malformed(
          "the footer was changed after it was written: it holds no check of its values, which every footer "
          "of format 3 holds (the file is damaged, not cut)");
    if (chained && f.getCheck() != footer_digest(out))
      malformed(
          "the footer was changed after it was written: its values do not match its check (the file is "
          "damaged, not cut)");
    // A recording that completes its schedule ends with "completed"; any other end gives another reason.
    if (out.completed != (out.end_reason == "completed"))
      malformed(std::string("footer.completed is ") + (out.completed ? "true" : "false") +
                " but its endReason is " +
                (out.end_reason.empty()          ? std::string("empty")
                 : out.end_reason == "completed" ? out.end_reason
                                                 : "'" + clipped(out.end_reason) + "'") +
                ": a recording writes endReason completed exactly when the run completed, so the footer was "
                "changed after it was written (the file is damaged)");
    if (from_start) {
      if (out.step_count != steps_seen)
        malformed("footer counts " + std::to_string(out.step_count) + " steps, the file holds " +
                  std::to_string(steps_seen));
      if (out.event_count != events_seen)
        malformed("footer counts " + std::to_string(out.event_count) + " events, the file holds " +
                  std::to_string(events_seen));
      if (out.checkpoints != checkpoints_seen) malformed("footer checkpoint index differs from the file");
      // "Completed" is a claim about the schedule the configuration gives: the file must hold all of it.
      if (out.completed && shuffled_rows)
        if (std::optional<Schedule> s = recorded_schedule(header, *shuffled_rows);
            s && s->steps() != complete_steps_seen)
          malformed("the footer says the run completed its schedule, but the file holds " +
                    std::to_string(complete_steps_seen) + " complete step" +
                    (complete_steps_seen == 1 ? "" : "s") + " of the " +
                    (s->steps() ? std::to_string(*s->steps())
                                : "more than " + std::to_string(std::numeric_limits<int64_t>::max())) +
                    " its configuration schedules (" + std::to_string(s->epochs) + " epoch" +
                    (s->epochs == 1 ? "" : "s") + " of " + std::to_string(s->batches_per_epoch) + " batch" +
                    (s->batches_per_epoch == 1 ? "" : "es") +
                    "): the footer or the steps were changed after they were written (the file is damaged)");
      // The final state: every recording that completes writes it after its last step, before the footer.
      if (out.completed && complete_steps_seen > 0 &&
          (checkpoints_seen.empty() || checkpoints_seen.back().step != complete_steps_seen))
        malformed("footer.completed is true, but the file holds no final state (a checkpoint at step " +
                  std::to_string(complete_steps_seen) + ", after its " + std::to_string(complete_steps_seen) +
                  " complete step" + (complete_steps_seen == 1 ? "" : "s") + "): its last checkpoint is " +
                  (checkpoints_seen.empty() ? std::string("none")
                                            : "at step " + std::to_string(checkpoints_seen.back().step)) +
                  ", and a recording that completes writes the state after its last step before the footer: "
                  "the footer or the checkpoints were changed after they were written (the file is damaged)");
    }
    return out;
  }
};

namespace {

// Visits every message in [from, until) without decoding more than `visit` asks for. Stops at the end of the
// file; with `exact`, `until` must fall on a message boundary.
template <class F>
Status scan(TraceReader::Impl& m, uint64_t from, uint64_t until, bool exact, F&& visit) {
  uint64_t offset = from;
  while (offset < until) {
    auto frame = m.frame_at(offset);
    if (!frame) return frame.error();
    if (!*frame) break;
    kj::ArrayPtr<const capnp::word> words = (*frame)->words;
    const uint64_t bytes = (*frame)->bytes;
    Status st = guarded(m, offset, [&]() -> Status {
      capnp::FlatArrayMessageReader message(words, m.options_for(words));
      visit(offset, message.getRoot<schema::Message>());
      return {};
    });
    if (!st) return st;
    offset += bytes;
  }
  if (exact && offset != until) return m.error_at(until, "not the start of a message");
  return {};
}

// Whether the packed bytes at the start of a file unpack, within their first words, to the trace's magic
// (the header's first field, a few words in): a trace whose header is cut or damaged still starts like a
// trace; a CSV file or a text does not. `b` may end anywhere.
bool starts_with_magic(std::span<const uint8_t> b) {
  for (uint64_t w : unpack_prefix(b, 16))
    if (w == kMagic) return true;
  return false;
}

// Whether `b`, too short to hold the magic, is the start of a header as trainrr writes one: a segment table,
// then the words every header message starts with (the root pointer, the message's data, the pointer to its
// header, the magic), as far as `b` holds them. A trace cut this early is a cut trace, not another file.
bool starts_like_a_header(std::span<const uint8_t> b) {
  if (b.empty() || b[0] == 0) return false;
  const std::vector<uint64_t> words = unpack_prefix(b, 16);
  // Not one whole word: a segment table's tag for one segment (its count's bytes zero, its size's not).
  if (words.empty()) return (b[0] & 0x0f) == 0 && b.size() <= 4;
  // One segment, as the start of every header but the largest (several segments) is: a table of one word,
  // whose segment size is not 0.
  if ((words[0] & 0xffffffffu) != 0 || (words[0] >> 32) == 0) return false;
  const uint64_t segments = 1;
  static const std::vector<uint64_t> expected = [] {
    capnp::MallocMessageBuilder message;
    message.initRoot<schema::Message>().initHeader().setMagic(kMagic);
    const kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
    std::vector<uint64_t> out;
    for (size_t i = 1; i < std::min<size_t>(flat.size(), 5); ++i) {
      uint64_t w;
      std::memcpy(&w, &flat[i], sizeof w);
      out.push_back(w);
    }
    return out;
  }();
  const size_t table_words = (segments + 2) / 2;
  for (size_t i = table_words; i < words.size(); ++i) {
    if (i - table_words >= expected.size()) return false;  // the magic would be whole: not a prefix
    if (words[i] != expected[i - table_words]) return false;
  }
  return true;
}

}  // namespace

Result<bool> starts_like_a_trace(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Error{path + ": cannot open: " + std::strerror(errno)};
  // What is not a regular file is no trace, and a pipe or a device could keep the read below waiting.
  if (struct stat st; ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return false;
  }
  uint8_t head[256];
  size_t n = 0;
  while (n < sizeof head) {
    const ssize_t got = ::read(fd, head + n, sizeof head - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int e = errno;
      ::close(fd);
      return Error{path + ": cannot read: " + std::strerror(e)};
    }
    if (got == 0) break;
    n += static_cast<size_t>(got);
  }
  ::close(fd);
  if (starts_with_magic({head, n})) return true;
  // Unpacked (format 1): the magic lies in the first words as they are.
  for (size_t at = 0; at + sizeof(uint64_t) <= n; at += sizeof(uint64_t)) {
    uint64_t w;
    std::memcpy(&w, head + at, sizeof w);
    if (w == kMagic) return true;
  }
  return false;
}

TraceReader::TraceReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TraceReader::~TraceReader() = default;

uint64_t TraceReader::file_size() const { return impl_->size; }

const std::optional<ReadStop>& TraceReader::stopped() const { return impl_->stop; }
std::optional<uint64_t> TraceReader::unvouched() const { return impl_->unvouched_offset; }

Result<std::unique_ptr<TraceReader>> TraceReader::open(const std::string& path, const ReaderLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  impl->limits = limits;
  // O_NONBLOCK: the open of a named pipe (a rank's trace in a run folder someone sent, say) does not wait for
  // a writer that never comes; it is refused below, as anything that is not a regular file is.
  impl->fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (impl->fd < 0) return Error{path + ": cannot open trace: " + std::strerror(errno)};
  struct stat st;
  if (::fstat(impl->fd, &st) != 0) return Error{path + ": cannot stat trace: " + std::strerror(errno)};
  if (!S_ISREG(st.st_mode)) return not_a_trace_file(path);
  // Reads of a regular file never wait; the flag is cleared all the same, so that nothing downstream sees it.
  if (const int flags = ::fcntl(impl->fd, F_GETFL);
      flags < 0 || ::fcntl(impl->fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
    return Error{path + ": cannot open trace: " + std::strerror(errno)};
  return open_file(std::move(impl));
}

Result<std::unique_ptr<TraceReader>> TraceReader::reopen(const TraceReader& same,
                                                         const ReaderLimits& limits) {
  const Impl& from = *same.impl_;
  if (from.fd < 0) return open_memory(from.memory, from.name, limits);
  auto impl = std::make_unique<Impl>();
  impl->name = from.name;
  impl->limits = limits;
  impl->fd = ::fcntl(from.fd, F_DUPFD_CLOEXEC, 0);
  if (impl->fd < 0) return Error{from.name + ": cannot open trace again: " + std::strerror(errno)};
  return open_file(std::move(impl));
}

Result<std::unique_ptr<TraceReader>> TraceReader::open_file(std::unique_ptr<Impl> impl) {
  const std::string path = impl->name;
  // Asked before the size is taken: a writer done by then has written all it will, and one that is not
  // leaves a message in progress at the end of the size taken, or none.
  // One waiting to replace the file writes another: the file is read as what it is, whole, cut or damaged.
  const std::optional<pid_t> writer = waits_to_replace(impl->fd) ? std::nullopt : writer_of(impl->fd);
  struct stat st;
  if (::fstat(impl->fd, &st) != 0) return Error{path + ": cannot stat trace: " + std::strerror(errno)};
  if (!S_ISREG(st.st_mode)) return not_a_trace_file(path);
  impl->size = static_cast<uint64_t>(st.st_size);
  std::unique_ptr<TraceReader> reader(new TraceReader(std::move(impl)));
  if (writer) reader->still_recording_ = trace::still_recording(path, *writer);
  if (Status s = reader->read_header(); !s) return s.error();
  // A file that ends with an intact footer was written whole: the writer that holds it is a new recording
  // waiting to replace it, not one writing it.
  if (writer && reader->impl_->intact_footer_after(reader->header_size_)) reader->still_recording_.reset();
  return reader;
}

Result<std::unique_ptr<TraceReader>> TraceReader::open_memory(std::span<const uint8_t> bytes, std::string name,
                                                              const ReaderLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(name);
  impl->limits = limits;
  impl->memory = bytes;
  impl->size = bytes.size();
  std::unique_ptr<TraceReader> reader(new TraceReader(std::move(impl)));
  if (Status s = reader->read_header(); !s) return s.error();
  return reader;
}

Status TraceReader::read_header() {
  // A crash or a power loss can leave a file whose size reached the disk before its last bytes did, with
  // zeros in their place: the file is read as cut where they begin, and a note says so, unless what comes
  // before them ends with the trace's footer (then they follow it, which reading says).
  Impl& m = *impl_;
  const uint64_t whole = m.size;
  const uint64_t zeros = m.zero_tail_start();
  if (whole - zeros >= 16) m.size = zeros;
  Status read = read_header_message();
  // A header the zeros cut is read from the whole file, whose words about itself (its size) are the true
  // ones.
  if (m.size != whole && !read) {
    m.size = whole;
    read = read_header_message();
  }
  if (m.size != whole) {
    if (read && m.intact_footer_after(header_size_)) {
      m.size = whole;
      m.footer_scan.reset();
    } else {
      m.zeros_words =
          "the file ends in " + std::to_string(whole - zeros) + " zero bytes, from byte " +
          std::to_string(zeros) +
          ", where a crash or a power loss left the last bytes the recording wrote unwritten: it is "
          "read as cut there";
    }
  }
  if (read) return read;
  // A header that cannot be read, in a file that ends with an intact footer, was changed after it was
  // written: the file is whole, not cut short, and nothing it says of itself (a version, a size) can be taken
  // as it stands, except a reader version a newer trainrr may ask for.
  std::string why = read.error().message;
  std::erase(why, '\0');
  if (why.rfind(m.name + ": ", 0) == 0) why = why.substr(m.name.size() + 2);
  const size_t version_at = why.find("needs reader version ");
  const bool newer =
      version_at != std::string::npos && std::strtoull(why.c_str() + version_at + 21, nullptr, 10) <= 0xFFFF;
  // Words that say the file was changed already are its reader's own: they stand.
  const bool said = why.find("changed after it was written") != std::string::npos ||
                    why.find("damaged") != std::string::npos;
  // Files only: a trace in memory (a test's, the fuzzer's) says what its reader found.
  if (newer || said || m.size == 0 || m.fd < 0) return Error{m.name + ": " + why};
  // The footer of a run of a couple of hundred checkpoints lies in the last 4 KiB: a larger one is not looked
  // for here, where every file whose header does not read would be scanned byte by byte.
  if (const std::optional<uint64_t> footer = m.scan_for_intact_footer(0, uint64_t{4} << 10)) {
    if (why.rfind("byte 0: ", 0) == 0) why = why.substr(8);
    const std::string cut = " (the recording was killed or cut before it had written its header)";
    if (const size_t at = why.find(cut); at != std::string::npos) why.erase(at, cut.size());
    const std::string truncated = "truncated inside its header: ";
    if (why.rfind(truncated, 0) == 0) why = "its framing says that " + why.substr(truncated.size());
    return Error{m.name +
                 ": byte 0: the header was changed after it was written (the file ends with an intact "
                 "footer, at byte " +
                 std::to_string(*footer) + ", so it was not cut short): " + why};
  }
  return Error{m.name + ": " + why};
}

Status TraceReader::read_header_message() {
  Impl& m = *impl_;
  // A packed message never starts with a zero byte (its first word, the segment table's head, is never
  // zero); an unpacked one of a single segment always does.
  if (m.size > 0 && m.zero_tail_start() == 0)
    return Error{
        m.name + ": it holds only zero bytes (" + std::to_string(m.size) +
        "), not a trainrr trace (a crash can leave a file so before any of its bytes reach the disk)"};
  if (m.size >= kWord) {
    auto head = m.bytes_at(0, kWord);
    // (A first segment of no words holds no message: zeros, which a crash can leave, are no trace of any
    // format.)
    if (head && (*head)[0] == 0 && (*head)[1] == 0 && (*head)[2] == 0 && (*head)[3] == 0 &&
        ((*head)[4] | (*head)[5] | (*head)[6] | (*head)[7]) != 0)
      return Error{m.name + ": an unpacked trace of format 1 (trainrr 0.1); this reader (version " +
                   std::to_string(kReaderVersion) +
                   ") reads packed traces of format 2 and later: record the run again"};
  }
  auto frame = m.frame_at(0);
  if (!frame) {
    // A file that is no trace says only that; a trace whose header is cut (a recording killed as it began)
    // or damaged says which.
    const bool cut = m.truncated_tail;
    const uint64_t need = m.truncated_need;
    const std::string why = m.error_what;
    const uint64_t n = std::min<uint64_t>(m.size, 256);
    auto head = m.bytes_at(0, n);
    if (!head || !(starts_with_magic({*head, n}) || (cut && starts_like_a_header({*head, n}))))
      return Error{m.name + ": not a trainrr trace (it does not start with a trace header)"};
    if (cut)
      return Error{m.name + ": truncated inside its header: the header needs at least " + std::to_string(need) +
                   " bytes, the file holds " + std::to_string(m.size) +
                   " (the recording was killed or cut before it had written its header): nothing in it can be read"};
    return Error{m.name + ": byte 0: the trace's header cannot be read (" + why + "): the file is damaged"};
  }
  if (!*frame) return Error{m.name + ": empty file, not a trainrr trace"};
  kj::ArrayPtr<const capnp::word> words = (*frame)->words;
  const uint64_t bytes = (*frame)->bytes;
  Status read = guarded(m, 0, [&]() -> Status {
    capnp::FlatArrayMessageReader message(words, m.options_for(words));
    auto root = message.getRoot<schema::Message>();
    if (root.which() != schema::Message::HEADER)
      malformed("not a trainrr trace (the first message is no header)");
    // A header that asks for a newer reader is one this reader cannot read; but where the message after it
    // holds a digest of the header (format 3 on) that is not this header's, the header is not as it was
    // written, and that is what is said.
    if (const auto h = root.getHeader();
        h.getMagic() == kMagic && h.getMinReaderVersion() > kReaderVersion && bytes < m.size) {
      const std::optional<uint64_t> held = m.previous_held_at(bytes);
      const std::optional<uint32_t> own = m.digest_at(0, bytes);
      if (held && own && *held != 0 && *held != *own)
        malformed("the header says the trace needs reader version " +
                  std::to_string(h.getMinReaderVersion()) + " (this is version " +
                  std::to_string(kReaderVersion) + "), but the message after it (at byte " +
                  std::to_string(bytes) + ") holds a digest of another header (" + std::to_string(*held) +
                  ", this one's is " + std::to_string(*own) +
                  "): the header was changed after it was written (the file is damaged), or the trace comes "
                  "from a newer trainrr that digests otherwise");
    }
    header_ = m.read_header(root.getHeader());
    if (root.getPrevious() != 0)
      malformed("the header holds a digest of a message before it: it must hold 0");
    header_size_ = bytes;
    m.pos = header_size_;
    m.chained = header_.format_version >= 3;
    // A trace of format 2 holds no digests: a first message that holds the header's says the header's
    // formatVersion was changed, which would turn every later check of the chain off.
    if (!m.chained && bytes < m.size)
      if (std::optional<uint64_t> held = m.previous_held_at(bytes); held && *held != 0)
        malformed("the header says format " + std::to_string(header_.format_version) +
                  ", which chains no messages, but the message after it (at byte " + std::to_string(bytes) +
                  ") holds a digest of the one before it (Message.previous, from format 3): the header's "
                  "formatVersion was changed after it was written (the file is damaged)");
    if (m.chained) {
      m.previous = m.digest_at(0, bytes);
      // The first message vouches for the header, as each message does for the one before it.
      if (Status vouched = m.check_against_next(0, bytes); !vouched) return vouched;
    }
    return {};
  });
  // A header that starts as trainrr writes one but does not decode was changed after it was written.
  if (!read && m.error_offset == 0 && m.error_what.rfind("malformed message: ", 0) == 0) {
    const uint64_t n = std::min<uint64_t>(m.size, 256);
    if (auto head = m.bytes_at(0, n); head && starts_with_magic({*head, n}))
      return Error{m.name + ": byte 0: the trace's header cannot be read (" + m.error_what +
                   "): the file is damaged"};
  }
  return read;
}

Result<std::optional<TraceRecord>> TraceReader::next() {
  Impl& m = *impl_;
  for (;;) {
    if (m.stopped) return *m.stopped;
    if (m.at_end) return std::optional<TraceRecord>();
    uint64_t offset = m.pos;
    if (m.after_footer && offset < m.size) {
      m.truncated_tail = false;
      return m.stop_at(m.error_at(offset, std::to_string(m.size - offset) +
                                              (m.size - offset == 1 ? " byte follows" : " bytes follow") +
                                              " the footer"));
    }
    auto frame = m.frame_at(offset);
    // A trace still being recorded ends, when it is read, inside the message being written: the end of
    // what is there so far, as a cut is the end of a killed recording.
    // Where the zeros that end the file begin after a whole message, the file is cut there all the same.
    if (frame && !*frame && !m.zeros_words.empty()) {
      m.truncated_tail = true;
      return m.stop_at(m.error_at(offset, "truncated: the recording did not end cleanly"));
    }
    if ((!frame && m.truncated_tail && still_recording_) || (frame && !*frame)) {
      m.at_end = true;
      return std::optional<TraceRecord>();
    }
    if (!frame) return m.stop_at(m.truncated_tail ? m.cut_or_damage(offset, frame.error()) : frame.error());
    kj::ArrayPtr<const capnp::word> words = (*frame)->words;
    const uint64_t size = (*frame)->bytes;
    bool skipped = false;
    // Notes of what this message holds that the reader does not know stand only once the message is vouched
    // for: a changed byte can read as an unknown kind.
    const size_t notes_before = notes_.size();
    auto record = guarded(m, offset, [&]() -> Result<std::optional<TraceRecord>> {
      capnp::FlatArrayMessageReader message(words, m.options_for(words));
      auto root = message.getRoot<schema::Message>();
      TraceRecord rec{offset, size, TraceEpoch{}};
      m.names.begin_message();
      if (!m.chained && root.getPrevious() != 0)
        malformed(
            "this message holds a digest of the one before it (Message.previous), which only traces of "
            "format 3 and later carry, but the header says format " +
            std::to_string(header_.format_version) +
            ": the header or this message was changed after it was written (the file is damaged)");
      switch (root.which()) {
        case schema::Message::HEADER:
          malformed("a second header");
        case schema::Message::STEP:
          m.check_not_after_final("step " + std::to_string(root.getStep().getIndex()));
          rec.value = m.read_step(root.getStep(), notes_, offset);
          break;
        case schema::Message::CHECKPOINT: {
          m.check_not_after_final("the checkpoint at step " + std::to_string(root.getCheckpoint().getStep()));
          TraceCheckpoint c = m.read_checkpoint(root.getCheckpoint());
          m.checkpoints_seen.push_back({c.step, offset});
          if (!m.scheduled(c.step)) m.final_checkpoint = c.step;
          rec.value = std::move(c);
          break;
        }
        case schema::Message::EPOCH_END: {
          auto e = root.getEpochEnd();
          TraceEpoch ep{e.getEpoch(), named_values(e.getLogs(), "an epoch's logs")};
          m.check_not_after_final("the end of " + Impl::epoch_str(ep.epoch));
          if (ep.epoch < 0) malformed("epoch must be >= 0");
          m.check_epoch_end(ep);
          rec.value = std::move(ep);
          break;
        }
        case schema::Message::FOOTER: {
          TraceFooter f = m.read_footer(root.getFooter(), offset, header_, header_size_);
          footer_ = f;
          m.after_footer = true;
          rec.value = std::move(f);
          break;
        }
        default:
          // Nothing after the last message vouches for it: one of unknown kind there may be the footer with
          // a bit of its kind changed.
          if (offset + size == m.size)
            if (auto bit = m.footer_one_bit_away(offset))
              malformed("this message, of unknown kind " +
                        std::to_string(static_cast<unsigned>(root.which())) + ", ends the file, but " +
                        m.changed_footer_words(*bit));
          if (notes_.size() < kMaxNotes)
            notes_.push_back(m.name + ": byte " + std::to_string(offset) + ": skipped a message of unknown kind " +
                             std::to_string(static_cast<unsigned>(root.which())) + " (written by a newer trainrr)");
          skipped = true;
          return std::optional<TraceRecord>();
      }
      return std::optional<TraceRecord>(std::move(rec));
    });
    if (!record) {
      notes_.resize(notes_before);
      return m.stop_at(record.error());
    }
    if (m.chained) {
      m.previous = m.digest_at(offset, size);
      // A message is handed out only once the next one vouches for it: a changed message never reaches the
      // caller as if it were recorded. (The footer, last, has no next message; its counts are checked.)
      if (Status vouched = m.check_against_next(offset, offset + size); !vouched) {
        notes_.resize(notes_before);
        return m.stop_at(vouched.error());
      }
    }
    m.pos = offset + size;
    if (!skipped) return record;
  }
}

Status TraceReader::seek(uint64_t offset) {
  Impl& m = *impl_;
  if (offset < header_size_ || offset >= m.size)
    return m.error_at(offset, "cannot seek there: not a message offset of this file");
  bool at_checkpoint = false;
  Status kind = scan(*impl_, offset, offset + 1, false, [&](uint64_t, schema::Message::Reader root) {
    at_checkpoint = root.which() == schema::Message::CHECKPOINT;
  });
  if (!kind) return kind;
  NameTable names;
  if (!at_checkpoint) {
    Status scanned = scan(m, header_size_, offset, true, [&](uint64_t, schema::Message::Reader root) {
      if (root.which() == schema::Message::STEP && root.getStep().hasNewNames())
        names.apply(root.getStep().getNewNames(), false);
      else if (root.which() == schema::Message::CHECKPOINT)
        names = NameTable(), names.apply(root.getCheckpoint().getNames(), true);
    });
    if (!scanned) return scanned.error();
  }
  m.names = std::move(names);
  m.pos = offset;
  m.stopped.reset();
  m.stop.reset();
  m.at_end = false;
  m.after_footer = false;
  m.from_start = false;
  m.last_step = -1;
  m.next_step.reset();
  m.epochs_ended.reset();
  m.steps_in_epoch = 0;
  m.step_unended = false;
  m.params_before.reset();
  m.final_checkpoint.reset();
  m.previous.reset();
  m.peeked.reset();
  return {};
}

Status read_through(const std::string& path, uint64_t offset,
                    const std::function<void(const TraceRecord&)>& each) {
  auto reader = TraceReader::open(path, without_payloads());
  if (!reader) return reader.error();
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec) return rec.error();
    if (!*rec) return Error{path + ": the trace ends before byte " + std::to_string(offset)};
    if ((*rec)->offset >= offset) return {};
    if (each) each(**rec);
  }
}

Result<std::vector<CheckpointRef>> TraceReader::checkpoint_index() {
  Impl& m = *impl_;
  if (footer_ && m.from_start) return footer_->checkpoints;  // checked against the file as it was read
  std::vector<CheckpointRef> out;
  bool at_footer = false;
  Status scanned = scan(m, header_size_, m.size, false, [&](uint64_t offset, schema::Message::Reader root) {
    if (at_footer) malformed("data follows the footer");
    if (root.which() == schema::Message::CHECKPOINT) {
      int64_t step = root.getCheckpoint().getStep();
      if (step < 0) malformed("checkpoint step must be >= 0");
      out.push_back({step, offset});
    }
    at_footer = root.which() == schema::Message::FOOTER;
  });
  // A cut tail is what a killed recording leaves: the checkpoints before it are good. Damage leaves those
  // before it too, as a replay compares the steps before it: whoever takes one reads the trace from its start
  // to it (read_through), or reads it with the message after it, which vouches for it, so damage before it,
  // or in it, is found there; damage after it is said where the steps after it are read.
  (void)scanned;
  return out;
}

void TraceReader::expect_tensors(std::map<std::string, Shape> shapes) {
  impl_->expected_tensors = std::move(shapes);
}

Result<TraceCheckpoint> TraceReader::read_checkpoint(uint64_t offset) {
  if (Status st = seek(offset); !st) return st.error();
  auto record = next();
  if (!record) return record.error();
  if (!*record || !std::holds_alternative<TraceCheckpoint>((*record)->value))
    return impl_->error_at(offset, "no checkpoint at this offset");
  return std::get<TraceCheckpoint>(std::move((*record)->value));
}

}  // namespace trainrr::trace
