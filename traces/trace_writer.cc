#include "traces/trace_writer.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <type_traits>

#include "engine/fingerprint.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "trace.capnp.h"
#include "traces/trace_lock.h"
#include "traces/trace_reader.h"

namespace trainrr::trace {

static_assert(std::endian::native == std::endian::little, "tensor payloads are stored little-endian");
static_assert(schema::MAGIC == kMagic, "trace.h and trace.capnp disagree on the magic");

namespace {

// Raw bytes per zstd frame of embedded data (a Data blob holds < 2^29 bytes; a frame of incompressible bytes
// is barely larger than its content).
constexpr size_t kEmbedFrame = size_t{64} << 20;
// Embedded data is compressed once, when the header is written: a stronger level than the checkpoints' pays.
constexpr int kEmbedZstdLevel = 3;
// Raw bytes per zstd frame of a tensor: a reader decompresses (and checks) one frame at a time.
constexpr size_t kTensorChunk = size_t{64} << 20;
constexpr int kZstdLevel = 1;  // checkpoints sit on the training path; float data gains little from more
// Steps are small: one reusable first segment holds a whole step message without any allocation.
constexpr size_t kFirstSegmentWords = 2048;

// `bytes` as independent zstd frames of at most `frame` raw bytes each, each with its content size and a
// content checksum.
Result<std::vector<std::vector<uint8_t>>> zstd_frames(std::span<const uint8_t> bytes, size_t frame, int level) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return Error{"zstd: cannot create a compression context"};
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  std::vector<std::vector<uint8_t>> frames;
  for (size_t begin = 0; begin < bytes.size(); begin += frame) {
    const size_t len = std::min(frame, bytes.size() - begin);
    std::vector<uint8_t> out(ZSTD_compressBound(len));
    const size_t z = ZSTD_compress2(cctx.get(), out.data(), out.size(), bytes.data() + begin, len);
    if (ZSTD_isError(z)) return Error{"zstd: " + std::string(ZSTD_getErrorName(z))};
    out.resize(z);
    frames.push_back(std::move(out));
  }
  return frames;
}

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

schema::Level to_schema(ProbeLevel l) {
  switch (l) {
    case ProbeLevel::step: return schema::Level::STEP;
    case ProbeLevel::layer: return schema::Level::LAYER;
    case ProbeLevel::op: return schema::Level::OP;
  }
  return schema::Level::STEP;
}

schema::Phase to_schema(Phase p) {
  switch (p) {
    case Phase::forward: return schema::Phase::FORWARD;
    case Phase::backward: return schema::Phase::BACKWARD;
    case Phase::update: return schema::Phase::UPDATE;
  }
  return schema::Phase::FORWARD;
}

template <class T>
void set_list(typename capnp::List<T>::Builder out, const std::vector<T>& values) {
  for (size_t i = 0; i < values.size(); ++i) out.set(i, values[i]);
}

void set_named_values(capnp::List<schema::NamedValue>::Builder out,
                      const std::vector<std::pair<std::string, double>>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    out[i].setName(values[i].first);
    out[i].setValue(values[i].second);
  }
}

// A byte buffer Cap'n Proto's packer writes into, kept from message to message.
class PackedBuffer final : public kj::BufferedOutputStream {
 public:
  void clear() { fill_ = 0; }
  const kj::byte* data() const { return bytes_.data(); }
  size_t size() const { return fill_; }

  kj::ArrayPtr<kj::byte> getWriteBuffer() override {
    if (bytes_.size() - fill_ < kMinFree) bytes_.resize(std::max(bytes_.size() * 2, fill_ + kMinFree));
    return kj::arrayPtr(bytes_.data() + fill_, bytes_.size() - fill_);
  }
  void write(const void* src, size_t n) override {
    if (src == bytes_.data() + fill_) {  // filled in place through getWriteBuffer()
      fill_ += n;
      return;
    }
    if (bytes_.size() - fill_ < n) bytes_.resize(std::max(bytes_.size() * 2, fill_ + n));
    std::memcpy(bytes_.data() + fill_, src, n);
    fill_ += n;
  }

 private:
  static constexpr size_t kMinFree = 4096;
  std::vector<kj::byte> bytes_;
  size_t fill_ = 0;
};

}  // namespace

struct TraceWriter::Interner {
  std::unordered_map<std::string, uint32_t, SvHash, std::equal_to<>> ids;
  std::vector<std::string> names;
  size_t written = 0;  // names[0, written) have been written to the file
  std::vector<uint32_t> metric, param, grad;  // the name lists as last written
  std::vector<uint32_t> next_metric, next_param, next_grad;
  kj::Array<capnp::word> first_segment = kj::heapArray<capnp::word>(kFirstSegmentWords);
  PackedBuffer packed;  // each message is packed here, then written
  uint32_t previous = 0;  // message_digest() of the last message written; 0 before the header

  Interner() { std::memset(first_segment.begin(), 0, first_segment.size() * sizeof(capnp::word)); }

  uint32_t id(std::string_view name) {
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    auto id = static_cast<uint32_t>(names.size());
    names.emplace_back(name);
    ids.emplace(names.back(), id);
    return id;
  }

  template <class V>
  void ids_of(const std::vector<std::pair<std::string, V>>& named, std::vector<uint32_t>& out) {
    out.clear();
    for (const auto& [name, value] : named) out.push_back(id(name));
  }

  bool lists_changed() const { return next_metric != metric || next_param != param || next_grad != grad; }

  // Writes the names not yet written and the current lists; `whole` writes the entire state.
  void write(schema::Names::Builder out, bool whole) {
    size_t first = whole ? 0 : written;
    out.setFirst(static_cast<uint32_t>(first));
    auto list = out.initNames(static_cast<unsigned>(names.size() - first));
    for (size_t i = first; i < names.size(); ++i) list.set(i - first, names[i]);
    set_list<uint32_t>(out.initMetricNames(metric.size()), metric);
    set_list<uint32_t>(out.initParamNames(param.size()), param);
    set_list<uint32_t>(out.initGradNames(grad.size()), grad);
  }
};

namespace {

void write_draw(schema::RngDraw::Builder out, const RngDraw& d, uint64_t digest, TraceWriter::Interner& names) {
  out.setSite(names.id(d.site));
  out.setStream(names.id(d.stream));
  out.setKey(d.key);
  out.setCounter(d.counter);
  out.setCount(d.count);
  out.setDigest(digest);
}

// Refuses what the reader would refuse, so that a recorder bug surfaces at the write, not at replay.
std::string check_event(const Event& e) {
  if (const auto* s = std::get_if<ShuffleEvent>(&e)) {
    if (s->epoch < 0) return "shuffle with a negative epoch";
    if (!s->permutation.empty()) {
      if (s->permutation.size() != s->length) return "shuffle permutation length differs from `length`";
      if (digest(std::span<const uint32_t>(s->permutation)) != s->digest)
        return "shuffle digest is not the digest of its permutation";
    } else if (!s->draw && s->length != 0) {
      return "shuffle with neither a draw nor a permutation";
    }
  } else if (const auto* b = std::get_if<BatchOrderEvent>(&e)) {
    if (b->batch < 0) return "negative batch in batch order";
  } else if (const auto* k = std::get_if<KernelChoice>(&e)) {
    if (!k->timings_us.empty() && k->timings_us.size() != k->candidates.size())
      return "kernel choice with timings not one per candidate";
    // The cuDNN and cuBLASLt records against the candidates (engine/kernels/conv_sites.h has the layouts).
    if (std::string e = gpu_choice_lists_error(*k); !e.empty()) return e;
    if (const auto& l = k->launch; l && (!l->grid_x || !l->grid_y || !l->grid_z || !l->block_x || !l->block_y || !l->block_z))
      return "kernel choice launch shape with a dimension of 0";
  } else if (const auto* p = std::get_if<ProbeEvent>(&e)) {
    if (p->fingerprint.summary.non_finite > p->fingerprint.summary.count) return "probe with non_finite > count";
  }
  return {};
}

void write_event(schema::Event::Builder out, const Event& event, TraceWriter::Interner& names) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, RngDrawEvent>) {
          write_draw(out.initRngDraw(), e.draw, e.digest, names);
        } else if constexpr (std::is_same_v<T, SplitEvent>) {
          auto s = out.initSplit();
          s.setSite(names.id(e.site));
          set_list<uint32_t>(s.initTrain(e.train.size()), e.train);
          set_list<uint32_t>(s.initTest(e.test.size()), e.test);
        } else if constexpr (std::is_same_v<T, ShuffleEvent>) {
          auto s = out.initShuffle();
          s.setSite(names.id(e.site));
          s.setEpoch(e.epoch);
          s.setLength(e.length);
          s.setDigest(e.digest);
          if (e.draw) write_draw(s.initDraw(), *e.draw, 0, names);
          if (!e.permutation.empty()) set_list<uint32_t>(s.initPermutation(e.permutation.size()), e.permutation);
        } else if constexpr (std::is_same_v<T, BatchOrderEvent>) {
          out.setBatchOrder(e.batch);
        } else if constexpr (std::is_same_v<T, KernelChoice>) {
          auto k = out.initKernelChoice();
          k.setSite(names.id(e.site));
          k.setOp(e.op);
          auto c = k.initCandidates(e.candidates.size());
          for (size_t i = 0; i < e.candidates.size(); ++i) c.set(i, e.candidates[i]);
          k.setChosen(e.chosen);
          k.setReason(e.reason);
          set_list<double>(k.initTimingsUs(e.timings_us.size()), e.timings_us);
          if (!e.blaslt.empty()) {
            auto algos = k.initBlasLt(e.blaslt.size());
            for (size_t i = 0; i < e.blaslt.size(); ++i) {
              const BlasLtAlgo& a = e.blaslt[i];
              auto o = algos[i];
              auto words = o.initData(a.data.size());
              for (size_t w = 0; w < a.data.size(); ++w) words.set(w, a.data[w]);
              o.setAlgoId(a.id);
              o.setTile(a.tile);
              o.setSplitK(a.split_k);
              o.setReductionScheme(a.reduction);
              o.setSwizzle(a.swizzle);
              o.setCustomOption(a.custom);
              o.setStages(a.stages);
              o.setInnerShape(a.inner_shape);
              o.setClusterShape(a.cluster_shape);
              o.setWorkspaceBytes(a.workspace);
              o.setWaves(a.waves);
            }
            k.setBlasLtVersion(e.blaslt_version);
          }
          if (!e.cudnn.empty()) {
            auto engines = k.initCudnn(e.cudnn.size());
            for (size_t i = 0; i < e.cudnn.size(); ++i) {
              const CudnnEngine& c = e.cudnn[i];
              auto o = engines[i];
              o.setGlobalIndex(c.global_index);
              auto types = o.initKnobTypes(c.knobs.size());
              auto values = o.initKnobValues(c.knobs.size());
              for (size_t j = 0; j < c.knobs.size(); ++j) types.set(j, c.knobs[j].type), values.set(j, c.knobs[j].value);
              set_list<int32_t>(o.initNumericalNotes(c.numerical_notes.size()), c.numerical_notes);
              set_list<int32_t>(o.initBehaviorNotes(c.behavior_notes.size()), c.behavior_notes);
              o.setWorkspaceBytes(c.workspace);
            }
            k.setCudnnVersion(e.cudnn_version);
          }
          if (!e.plan_json.empty()) k.setPlanJson(e.plan_json);
          k.setTf32(e.tf32);
          if (e.launch) {
            auto l = k.initLaunch();
            l.setGridX(e.launch->grid_x);
            l.setGridY(e.launch->grid_y);
            l.setGridZ(e.launch->grid_z);
            l.setBlockX(e.launch->block_x);
            l.setBlockY(e.launch->block_y);
            l.setBlockZ(e.launch->block_z);
            l.setSharedBytes(e.launch->shared_bytes);
          }
        } else if constexpr (std::is_same_v<T, ProbeEvent>) {
          auto p = out.initProbe();
          p.setSite(names.id(e.site));
          p.setPhase(to_schema(e.phase));
          const Summary& s = e.fingerprint.summary;
          p.setDigest(e.fingerprint.digest);
          p.setCount(s.count);
          p.setSum(s.sum);
          p.setSumSq(s.sum_sq);
          p.setMin(s.min);
          p.setMax(s.max);
          p.setNonFinite(s.non_finite);
        } else if constexpr (std::is_same_v<T, AccumulationOrderEvent>) {
          auto a = out.initAccumulationOrder();
          a.setSite(names.id(e.site));
          set_list<uint32_t>(a.initOrder(e.order.size()), e.order);
        }
      },
      event);
}

std::string errno_text(int err) { return std::strerror(err); }

// The file `path` names, symbolic links followed: a trace is replaced where a link points, as writing
// through the link did, and the link stays.
// A link the kernel would not follow for this process under fs.protected_symlinks (the default of most
// distributions): one in a sticky folder anyone may write (/tmp), owned by neither this process's user nor
// the folder's owner. Another user can plant such a link where a trace is to go; it is not followed, whatever
// the setting: the reason to give, or "".
std::string planted_link(const std::filesystem::path& link) {
  struct stat l, d;
  const std::filesystem::path folder = link.has_parent_path() ? link.parent_path() : ".";
  if (::lstat(link.c_str(), &l) != 0 || !S_ISLNK(l.st_mode) || ::stat(folder.c_str(), &d) != 0) return "";
  if (!(d.st_mode & S_ISVTX) || !(d.st_mode & S_IWOTH) || l.st_uid == ::geteuid() || l.st_uid == d.st_uid)
    return "";
  return link.string() + " is a symbolic link that another user (uid " + std::to_string(l.st_uid) +
         ") put in a sticky folder anyone may write (" + folder.string() +
         "): it is not followed, as the kernel follows no such link (fs.protected_symlinks)";
}

std::filesystem::path resolve_links(const std::string& path, std::string* planted = nullptr) {
  namespace fs = std::filesystem;
  fs::path p = path;
  for (int hops = 0; hops < 40; ++hops) {  // as many as the kernel follows
    std::error_code ec;
    if (!fs::is_symlink(fs::symlink_status(p, ec)) || ec) break;
    if (planted)
      if (std::string why = planted_link(p); !why.empty()) {
        *planted = std::move(why);
        break;
      }
    fs::path target = fs::read_symlink(p, ec);
    if (ec) break;
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  return p;
}

// Holds flock(LOCK_EX) on a folder for its lifetime. Every writer claims its path under it, so that one
// writer's look at the path and its rename there are one step to every other writer in the folder.
class FolderLock {
 public:
  // A folder that cannot be locked (a file system without flock) is claimed without it: the writer lock on
  // the trace still turns away a second writer in all but a race of the two renames.
  explicit FolderLock(int dir_fd) : fd_(dir_fd) {
    int rc;
    do rc = ::flock(fd_, LOCK_EX);
    while (rc != 0 && errno == EINTR);
    locked_ = rc == 0;
  }
  ~FolderLock() {
    if (locked_) ::flock(fd_, LOCK_UN);
  }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_;
  bool locked_ = false;
};

}  // namespace

TraceWriter::TraceWriter(std::string path, int fd, int dir_fd, std::string unclaimed)
    : path_(std::move(path)),
      fd_(fd),
      dir_fd_(dir_fd),
      unclaimed_(std::move(unclaimed)),
      names_(std::make_unique<Interner>()) {}

TraceWriter::~TraceWriter() {
  // A trace that never reached its path leaves nothing behind.
  // A trace that waited to replace an earlier one and did not finish stays beside it with the steps it holds
  // (a recording stopped before its end), unless it holds none or a write failed (a full disk, say); the
  // earlier trace is as it was.
  if (!unclaimed_.empty() && (replaces_.empty() || step_count_ == 0 || failed_))
    ::unlinkat(dir_fd_, unclaimed_.c_str(), 0);
  if (earlier_fd_ >= 0) ::close(earlier_fd_);
  if (fd_ >= 0) ::close(fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

// Renames the new file to `name`, unless a live writer holds the file there.
Status TraceWriter::claim(const std::string& name) {
  FolderLock folder(dir_fd_);
  if (earlier_fd_ >= 0) {  // this writer's own lock on the earlier trace is not another writer's
    ::close(earlier_fd_);
    earlier_fd_ = -1;
  }
  const int there = ::openat(dir_fd_, name.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (there >= 0) {
    const std::optional<pid_t> writer = writer_of(there);
    ::close(there);
    if (writer) return Error{recording_elsewhere(path_, *writer)};
  }
  if (::renameat(dir_fd_, unclaimed_.c_str(), dir_fd_, name.c_str()) != 0)
    return Error{path_ + ": cannot put the new trace in place: " + errno_text(errno)};
  unclaimed_.clear();
  return {};
}

// The rename is on disk once the folder is synced: the first sync of the trace's bytes (a checkpoint, the
// footer) syncs the folder too, so that a synced trace is found at its path after a crash. Some file systems
// cannot sync a folder; the trace's own bytes are synced regardless.
void TraceWriter::sync_name() {
  if (name_synced_) return;
  name_synced_ = true;
  (void)::fsync(dir_fd_);
}

Status TraceWriter::check_usable() const {
  if (finished_) return Error{path_ + ": trace already finished"};
  if (failed_) return Error{path_ + ": an earlier write failed; the trace ends at byte " + std::to_string(offset_)};
  return {};
}

Status TraceWriter::fail(const std::string& what) {
  failed_ = true;
  return Error{path_ + ": " + what + " (at byte " + std::to_string(offset_) + ")"};
}

// Packs the message (Cap'n Proto's packed encoding) and hands it to the OS with one write: a kill between
// messages never leaves a half-written one, and the page cache has the step as soon as this returns.
// Each message carries the digest of the one before it (Message.previous), and `previous` becomes its own.
static Status write_framed(int fd, capnp::MessageBuilder& message, PackedBuffer& out, uint32_t& previous,
                           uint64_t& offset, const std::string& path) {
  message.getRoot<schema::Message>().setPrevious(previous);
  out.clear();
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { capnp::writePackedMessage(out, message); })) {
    return Error{path + ": cannot pack the message at byte " + std::to_string(offset) + ": " +
                 std::string(e->getDescription().cStr())};
  }
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return Error{path + ": write failed at byte " + std::to_string(offset + done) + ": " +
                   errno_text(n < 0 ? errno : ENOSPC)};
    done += static_cast<size_t>(n);
  }
  offset += done;
  previous = message_digest({out.data(), out.size()});
  return {};
}

Result<std::unique_ptr<TraceWriter>> TraceWriter::create(const std::string& path, const TraceHeader& header) {
  if (header.checkpoint_every < 0) return Error{path + ": checkpoint_every must be >= 0"};
  if (header.kernels_recorded && !header.kernels_not_recorded.empty())
    return Error{path + ": the header says GPU kernels were recorded and gives a reason why they were not ('" +
                 header.kernels_not_recorded + "')"};
  // Nothing a reader with the default limits refuses.
  const ReaderLimits limits;
  for (const DatasetInfo& d : header.datasets) {
    if (!d.embedded.empty() && d.embedded.size() != d.size_bytes)
      return Error{path + ": data set '" + d.name + "': embedded bytes differ from size_bytes"};
    if (d.embedded.size() > limits.max_embedded_bytes)
      return Error{path + ": data set '" + d.name + "' is " + std::to_string(d.embedded.size()) +
                   " bytes, more than a trace embeds (" + std::to_string(limits.max_embedded_bytes) +
                   "): record without embedding it"};
  }
  if (path.empty()) return Error{"the trace's path is empty: a trace needs a file path"};
  // Before anything is written: a path another writer holds is refused at once (and again, for certain, at
  // the rename below).
  std::string planted;
  const std::filesystem::path target = resolve_links(path, &planted);
  if (!planted.empty()) return Error{planted + "; give the trace's own path"};
  struct stat info;
  const bool replaces = ::stat(target.c_str(), &info) == 0;
  const int stat_errno = replaces ? 0 : errno;
  // A link is followed to the earlier trace it names; one to nothing would put the new trace in whichever
  // folder it names, as -o did not, and one in a loop would be replaced by the trace.
  std::error_code link_ec;
  if (!replaces && std::filesystem::is_symlink(std::filesystem::symlink_status(path, link_ec)))
    return Error{path +
                 (stat_errno == ELOOP
                      ? std::string(": a symbolic link in a loop of links")
                      : ": a symbolic link to " + target.string() + ", which does not exist") +
                 ": a trace is written through a link only to an earlier trace; give the trace's own path"};
  if (replaces && !S_ISREG(info.st_mode))
    return Error{path + ": not a regular file; a trace needs a file path"};
  if (std::optional<pid_t> writer = writer_of(target.string())) return Error{recording_elsewhere(path, *writer)};
  const std::string folder = target.has_parent_path() ? target.parent_path().string() : ".";
  const int dir_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return Error{path + ": cannot open its folder " + folder + ": " + errno_text(errno)};
  // The new trace is written beside the old one under a name of its own, then renamed over it. It replaces
  // the earlier trace with that one's permissions (never more readable than it): until it has them, it is
  // readable by no one else.
  std::string unclaimed;
  int fd = -1;
  for (int n = 0; fd < 0 && n < 100; ++n) {
    unclaimed = ".trainrr-" + std::to_string(::getpid()) + "-" + std::to_string(n) + ".trr.part";
    fd = ::openat(dir_fd, unclaimed.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, replaces ? 0600 : 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    ::close(dir_fd);
    return Error{path + ": cannot create the trace (a new file in " + folder + "): " + errno_text(err)};
  }
  std::unique_ptr<TraceWriter> w(new TraceWriter(path, fd, dir_fd, unclaimed));
  // Through a link to a trace in another folder, the new trace waits beside that trace, not beside the link.
  const std::filesystem::path given_folder = std::filesystem::path(path).parent_path();
  if ((given_folder.empty() ? std::filesystem::path(".") : given_folder).lexically_normal() !=
      std::filesystem::path(folder).lexically_normal())
    w->folder_ = folder;
  w->target_ = target.string();
  if (replaces && ::fchmod(fd, info.st_mode & 0777) != 0)
    return Error{path +
                 ": cannot give the new trace the permissions of the one it replaces: " + errno_text(errno)};
  w->level_ = header.level;
  w->kernels_recorded_ = header.kernels_recorded;
  if (Status locked = lock_for_writing(fd, path); !locked) return locked.error();

  // Embedded data files, compressed.
  std::vector<std::vector<std::vector<uint8_t>>> embedded(header.datasets.size());
  for (size_t i = 0; i < header.datasets.size(); ++i) {
    auto frames = zstd_frames(header.datasets[i].embedded, kEmbedFrame, kEmbedZstdLevel);
    if (!frames)
      return Error{path + ": cannot compress data set '" + header.datasets[i].name + "': " + frames.error().message};
    embedded[i] = std::move(frames).value();
  }
  Status st;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    capnp::MallocMessageBuilder message;
    auto h = message.initRoot<schema::Message>().initHeader();
    h.setMagic(kMagic);
    h.setMinReaderVersion(header.min_reader_version);
    h.setFormatVersion(kFormatVersion);
    h.setWriterVersion(header.writer_version.empty() ? TRAINRR_VERSION : header.writer_version);
    h.setConfig(header.config);
    // Whole, a NUL and what follows it included: a path is stored as it was given.
    h.setConfigPath(capnp::Text::Reader(header.config_path.c_str(), header.config_path.size()));
    auto overrides = h.initConfigOverrides(header.config_overrides.size());
    for (size_t i = 0; i < header.config_overrides.size(); ++i) overrides.set(i, header.config_overrides[i]);
    h.setSeed(header.seed);
    h.setSeedFromEntropy(header.seed_from_entropy);
    h.setLevel(to_schema(header.level));
    h.setCheckpointEvery(header.checkpoint_every);
    h.setRank(header.rank);
    h.setWorldSize(header.world_size);
    h.setRunId(header.run_id);
    h.setKernelsRecorded(header.kernels_recorded);
    h.setKernelsNotRecorded(header.kernels_not_recorded);
    h.setMovingStatistics(header.moving_statistics);
    auto env = h.initEnvironment(header.environment.size());
    for (size_t i = 0; i < header.environment.size(); ++i) {
      env[i].setKey(header.environment[i].first);
      env[i].setValue(header.environment[i].second);
    }
    auto ds = h.initDatasets(header.datasets.size());
    for (size_t i = 0; i < header.datasets.size(); ++i) {
      const DatasetInfo& d = header.datasets[i];
      ds[i].setName(d.name);
      ds[i].setPath(d.path);
      ds[i].setSize(d.size_bytes);
      ds[i].setDigestLow(d.digest.low);
      ds[i].setDigestHigh(d.digest.high);
      if (!embedded[i].empty()) {
        auto frames = ds[i].initEmbeddedZstd(embedded[i].size());
        for (size_t k = 0; k < embedded[i].size(); ++k)
          frames.set(k, kj::arrayPtr(embedded[i][k].data(), embedded[i][k].size()));
      }
    }
    st = write_framed(fd, message, w->names_->packed, w->names_->previous, w->offset_, path);
  })) {
    return Error{path + ": cannot encode the header: " + std::string(e->getDescription().cStr())};
  }
  if (!st) return st.error();
  // An earlier trace is replaced once the new one is finished; until then it is locked as this writer's, so
  // that a second writer is refused as it would be at a trace being written, and readers are told that no one
  // writes it (a read-only trace is locked through a descriptor open for reading). An empty file holds
  // nothing to lose, and one this process can neither read nor write is replaced at once, as a new path is
  // claimed.
  if (::stat(target.c_str(), &info) == 0 && info.st_size > 0) {
    int earlier = ::open(target.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    const bool writable = earlier >= 0;
    if (earlier < 0) earlier = ::open(target.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (earlier >= 0 && lock_for_replacing(earlier, path, writable)) {
      w->earlier_fd_ = earlier;
      w->replaces_ = target.filename().string();
      return w;
    }
    if (earlier >= 0) ::close(earlier);
  }
  if (Status claimed = w->claim(target.filename().string()); !claimed) return claimed.error();
  return w;
}

Status TraceWriter::write_step(const TraceStep& step) {
  if (Status st = check_usable(); !st) return st;
  if (step.index < 0 || step.epoch < 0 || step.batch < 0)
    return Error{path_ + ": step " + std::to_string(step.index) + ": index, epoch and batch must be >= 0"};
  if (step.index <= last_step_)
    return Error{path_ + ": step " + std::to_string(step.index) + " after step " + std::to_string(last_step_) +
                 ": step indices must increase"};
  for (const Event& e : step.events) {
    if (std::string why = check_event(e); !why.empty())
      return Error{path_ + ": step " + std::to_string(step.index) + ": " + why};
  }
  if (step.kernels) {
    if (!kernels_recorded_)
      return Error{path_ + ": step " + std::to_string(step.index) +
                   ": kernel records in a trace whose header says GPU kernels were not recorded"};
    if (std::string why = check_step_kernels(*step.kernels, level_); !why.empty())
      return Error{path_ + ": step " + std::to_string(step.index) + ": " + why};
  }

  Interner& names = *names_;
  Status st;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    capnp::MallocMessageBuilder message(names.first_segment);
    auto s = message.initRoot<schema::Message>().initStep();
    s.setIndex(step.index);
    s.setEpoch(step.epoch);
    s.setBatch(step.batch);
    // The loader's batch order opens almost every step: it goes into its own field, which packs to a few
    // bytes, instead of a list element.
    size_t first = 0;
    if (!step.events.empty()) {
      if (const auto* b = std::get_if<BatchOrderEvent>(&step.events[0])) {
        s.setHasBatchOrder(true);
        s.setBatchOrder(b->batch);
        first = 1;
      }
    }
    if (step.events.size() > first) {
      auto events = s.initEvents(step.events.size() - first);
      for (size_t i = first; i < step.events.size(); ++i) write_event(events[i - first], step.events[i], names);
    }
    if (!step.collectives.empty()) {
      auto list = s.initCollectives(step.collectives.size());
      for (size_t i = 0; i < step.collectives.size(); ++i) {
        const CollectiveCall& c = step.collectives[i];
        auto o = list[i];
        o.setBucket(c.bucket);
        o.setOffset(c.offset);
        o.setCount(c.count);
        o.setVariant(c.variant);
        o.setForced(c.forced);
        o.setAlgorithm(c.algorithm);
        o.setAlgorithmInferred(c.algorithm_inferred);
        o.setRanks(c.ranks);
        o.setShards(c.shards);
        o.setFirstShard(c.first_shard);
        auto rows = o.initShardRows(c.shard_rows.size());
        for (size_t j = 0; j < c.shard_rows.size(); ++j) rows.set(j, c.shard_rows[j]);
        auto d = o.initShardDigests(c.shard_digests.size());
        for (size_t j = 0; j < c.shard_digests.size(); ++j) d.set(j, c.shard_digests[j]);
        o.setInputDigest(c.input_digest);
        o.setResultDigest(c.result_digest);
        auto order = o.initOrder(c.order.size());
        for (size_t j = 0; j < c.order.size(); ++j) order.set(j, c.order[j]);
      }
    }
    if (step.kernels) {
      const StepKernels& k = *step.kernels;
      auto out = s.initKernels();
      out.setCount(k.count);
      out.setDigest(k.digest);
      out.setUnattributed(k.unattributed);
      out.setDropped(k.dropped);
      if (!k.launches.empty()) {
        auto list = out.initLaunches(k.launches.size());
        for (size_t i = 0; i < k.launches.size(); ++i) {
          const KernelLaunch& l = k.launches[i];
          auto o = list[i];
          // Kernel names are interned like sites: a step repeats the names of the step before.
          o.setSite(names.id(l.site));
          o.setName(names.id(l.name));
          o.setGridX(l.grid_x);
          o.setGridY(l.grid_y);
          o.setGridZ(l.grid_z);
          o.setBlockX(l.block_x);
          o.setBlockY(l.block_y);
          o.setBlockZ(l.block_z);
          o.setStaticShared(l.static_shared);
          o.setDynamicShared(l.dynamic_shared);
          o.setDurationNs(l.duration_ns);
        }
      }
    }
    names.next_metric = names.metric, names.next_param = names.param, names.next_grad = names.grad;
    if (step.end) {
      const StepEnd& end = *step.end;
      s.setEnded(true);
      s.setLoss(end.loss);
      names.ids_of(end.metrics, names.next_metric);
      names.ids_of(end.params, names.next_param);
      names.ids_of(end.grads, names.next_grad);
      if (!end.metrics.empty()) {
        auto m = s.initMetrics(end.metrics.size());
        for (size_t i = 0; i < end.metrics.size(); ++i) m.set(i, end.metrics[i].second);
      }
      if (!end.params.empty()) {
        auto p = s.initParams(end.params.size());
        for (size_t i = 0; i < end.params.size(); ++i) p.set(i, end.params[i].second);
      }
      if (!end.grads.empty()) {
        auto g = s.initGrads(end.grads.size());
        for (size_t i = 0; i < end.grads.size(); ++i) g.set(i, end.grads[i].second);
      }
    } else {
      // Without an end the lists are empty; the current name lists stay as they are for the next step.
    }
    bool changed = names.lists_changed();
    if (names.written < names.names.size() || changed) {
      names.metric.swap(names.next_metric);
      names.param.swap(names.next_param);
      names.grad.swap(names.next_grad);
      names.write(s.initNewNames(), false);
    }
    st = write_framed(fd_, message, names_->packed, names_->previous, offset_, path_);
    if (st) names.written = names.names.size();
  })) {
    return fail("cannot encode step " + std::to_string(step.index) + ": " + e->getDescription().cStr());
  }
  if (!st) {
    failed_ = true;
    return st;
  }
  last_step_ = step.index;
  ++step_count_;
  event_count_ += step.events.size();
  return {};
}

Status TraceWriter::write_epoch(const TraceEpoch& epoch) {
  if (Status st = check_usable(); !st) return st;
  if (epoch.epoch < 0) return Error{path_ + ": epoch must be >= 0"};
  Status st;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    capnp::MallocMessageBuilder message(names_->first_segment);
    auto ep = message.initRoot<schema::Message>().initEpochEnd();
    ep.setEpoch(epoch.epoch);
    set_named_values(ep.initLogs(epoch.logs.size()), epoch.logs);
    st = write_framed(fd_, message, names_->packed, names_->previous, offset_, path_);
  })) {
    return fail(std::string("cannot encode epoch end: ") + e->getDescription().cStr());
  }
  if (!st) failed_ = true;
  return st;
}

Status TraceWriter::write_checkpoint(const TrainState& state) {
  if (Status st = check_usable(); !st) return st;
  if (state.step < 0 || state.epoch < 0 || state.batch_in_epoch < 0)
    return Error{path_ + ": checkpoint: step, epoch and batch must be >= 0"};
  // Nothing a reader with the default limits refuses.
  const ReaderLimits limits;
  if (state.tensors.size() > kMaxCheckpointTensors)
    return Error{path_ + ": checkpoint: " + std::to_string(state.tensors.size()) +
                 " tensors, more than a trace holds (" + std::to_string(kMaxCheckpointTensors) + ")"};
  uint64_t total = 0;
  for (const NamedTensor& t : state.tensors) {
    if (static_cast<int64_t>(t.value.data.size()) != shape_size(t.value.shape))
      return Error{path_ + ": checkpoint tensor '" + t.name + "': data size differs from its shape"};
    const uint64_t bytes = t.value.data.size() * sizeof(float);
    total += bytes;
    if (bytes > limits.max_tensor_bytes || total > limits.max_checkpoint_bytes)
      return Error{path_ + ": checkpoint tensor '" + t.name + "' (" + std::to_string(bytes) +
                   " bytes) takes the " + "checkpoint past what a trace holds (" +
                   std::to_string(limits.max_tensor_bytes) + " bytes a tensor, " +
                   std::to_string(limits.max_checkpoint_bytes) + " a checkpoint)"};
  }
  uint64_t at = offset_;
  Status st;
  std::string zstd_error;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    capnp::MallocMessageBuilder message;
    auto c = message.initRoot<schema::Message>().initCheckpoint();
    c.setStep(state.step);
    c.setEpoch(state.epoch);
    c.setBatchInEpoch(state.batch_in_epoch);
    c.setSeed(state.seed);
    auto tensors = c.initTensors(state.tensors.size());
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    // A checksum per frame lets the reader tell a damaged checkpoint from a good one.
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, kZstdLevel);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
    std::vector<uint8_t> scratch;
    for (size_t i = 0; i < state.tensors.size() && zstd_error.empty(); ++i) {
      const NamedTensor& t = state.tensors[i];
      auto out = tensors[i];
      out.setName(t.name);
      set_list<int64_t>(out.initShape(t.value.shape.size()), t.value.shape);
      const auto* raw = reinterpret_cast<const uint8_t*>(t.value.data.data());
      size_t raw_bytes = t.value.data.size() * sizeof(float);
      out.setRawBytes(raw_bytes);
      size_t n = (raw_bytes + kTensorChunk - 1) / kTensorChunk;
      auto chunks = out.initChunks(n);
      for (size_t k = 0; k < n; ++k) {
        size_t begin = k * kTensorChunk, len = std::min(kTensorChunk, raw_bytes - begin);
        scratch.resize(ZSTD_compressBound(len));
        size_t z = ZSTD_compress2(cctx.get(), scratch.data(), scratch.size(), raw + begin, len);
        if (ZSTD_isError(z)) {
          zstd_error = "zstd: " + std::string(ZSTD_getErrorName(z));
          break;
        }
        chunks.set(k, kj::arrayPtr(scratch.data(), z));
      }
    }
    if (!zstd_error.empty()) return;
    auto rng = c.initRngOffsets(state.rng_offsets.size());
    for (size_t i = 0; i < state.rng_offsets.size(); ++i) {
      rng[i].setStream(state.rng_offsets[i].first);
      rng[i].setOffset(state.rng_offsets[i].second);
    }
    set_list<uint32_t>(c.initPermutation(state.permutation.size()), state.permutation);
    set_list<uint32_t>(c.initBatchesDone(state.batches_done.size()), state.batches_done);
    set_named_values(c.initScalars(state.scalars.size()), state.scalars);
    names_->write(c.initNames(), true);
    st = write_framed(fd_, message, names_->packed, names_->previous, offset_, path_);
    if (st) names_->written = names_->names.size();
  })) {
    return fail(std::string("cannot encode checkpoint: ") + e->getDescription().cStr());
  }
  if (!zstd_error.empty()) return fail("cannot compress checkpoint: " + zstd_error);
  if (!st) {
    failed_ = true;
    return st;
  }
  if (::fdatasync(fd_) != 0) return fail("fdatasync after checkpoint failed: " + errno_text(errno));
  sync_name();
  checkpoints_.push_back({state.step, at});
  return {};
}

Status TraceWriter::finish(const TraceFooter& footer) {
  if (Status st = check_usable(); !st) return st;
  Status st;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    capnp::MallocMessageBuilder message;
    auto f = message.initRoot<schema::Message>().initFooter();
    f.setCompleted(footer.completed);
    f.setEndReason(footer.end_reason);
    f.setStepCount(step_count_);
    f.setEventCount(event_count_);
    auto refs = f.initCheckpoints(checkpoints_.size());
    for (size_t i = 0; i < checkpoints_.size(); ++i) {
      refs[i].setStep(checkpoints_[i].step);
      refs[i].setOffset(checkpoints_[i].offset);
    }
    f.setCheck(footer_digest(
        TraceFooter{footer.completed, footer.end_reason, step_count_, event_count_, checkpoints_}));
    st = write_framed(fd_, message, names_->packed, names_->previous, offset_, path_);
  })) {
    return fail(std::string("cannot encode footer: ") + e->getDescription().cStr());
  }
  if (!st) {
    failed_ = true;
    return st;
  }
  if (::fsync(fd_) != 0) return fail("fsync at the end failed: " + errno_text(errno));
  // The file written must still be where it was written (the path, or beside it the new trace that is to
  // replace an earlier one): a trace removed (or moved away) while it was recorded is not there, and a
  // success said for it, or a rename of what is not there, would be false. (The new trace lies in the folder
  // dir_fd_ holds: beside the path, or where a link at the path points.)
  auto stat_written = [&](struct stat& st) {
    return replaces_.empty() ? ::stat(path_.c_str(), &st) : ::fstatat(dir_fd_, unclaimed_.c_str(), &st, 0);
  };
  struct stat mine {
  }, named{};
  if (::fstat(fd_, &mine) == 0) {
    const std::string steps = std::to_string(step_count_) + (step_count_ == 1 ? " step" : " steps");
    const std::string what =
        replaces_.empty() ? path_ + ": the trace" : path_ + ": the new trace (" + unclaimed_ + ")";
    const std::string earlier = replaces_.empty() ? "" : "; " + path_ + " holds the earlier trace, as it was";
    std::optional<std::string> gone;
    if (mine.st_nlink == 0)
      gone = what + " was removed while it was recorded: its " + steps + " are lost" + earlier;
    else if (stat_written(named) != 0 || named.st_dev != mine.st_dev || named.st_ino != mine.st_ino)
      gone = what + " was moved away while it was recorded" +
             (stat_written(named) == 0 ? std::string(" and another file put at its path") : "") + ": its " +
             steps + " are wherever it was moved to" + earlier;
    if (gone) {
      gone_ = true;
      const int fd = fd_;
      fd_ = -1;
      finished_ = true;
      ::close(fd);
      return Error{*gone};
    }
  }
  if (!replaces_.empty()) {
    if (Status claimed = claim(replaces_); !claimed) {
      // The new trace is whole: it stays beside the earlier one, under its own name, which is said (a
      // writer whose writes all succeeded keeps an unclaimed trace that holds steps).
      const std::string part =
          ((folder_.empty() ? std::filesystem::path(path_).parent_path() : std::filesystem::path(folder_)) /
           unclaimed_)
              .string();
      const int fd = fd_;
      fd_ = -1;
      finished_ = true;
      ::close(fd);
      return Error{claimed.error().message + ": the new trace is whole in " + part + " (rename it to " +
                   (folder_.empty() ? std::filesystem::path(path_).filename().string() : target_) +
                   " to keep it); " + (folder_.empty() ? path_ : target_) + " holds the earlier trace"};
    }
    replaces_.clear();
  }
  sync_name();
  int fd = fd_;
  fd_ = -1;
  finished_ = true;
  if (::close(fd) != 0) return Error{path_ + ": close failed: " + errno_text(errno)};
  return {};
}

}  // namespace trainrr::trace
