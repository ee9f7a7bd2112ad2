// `trainrr export FILE --step N -o DIR`: the checkpoint at or before step N as one .npy file per tensor and
// a manifest.json (names, shapes, files, where the run stood, and the batch order of the steps that follow
// up to the next checkpoint), so a run can be inspected in numpy.

#include <cctype>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include "engine/data/npy.h"
#include "engine/fingerprint.h"
#include "tools/commands.h"
#include "tools/export_folder.h"
#include "tools/trace_text.h"
#include "traces/run_set.h"
#include "traces/trace_reader.h"

namespace trainrr::cli {
namespace {

struct ExportArgs {
  std::string file;
  int64_t step = 0;
  std::string dir;
};

// A file name for a tensor name. Names come from the trace, which is untrusted: only a safe alphabet is
// kept, so no name can leave DIR or clash with the manifest. A long name is cut (a file name has at most 255
// bytes) and ends with the digest of the whole name, so names that differ only past the cut keep apart; the
// manifest maps each name to its file.
std::string file_name_for(const std::string& name, size_t index, std::set<std::string>& used) {
  constexpr size_t kMaxBase = 160;  // room for "_<digest>", "_<n>" and ".npy" within 255 bytes
  std::string base;
  for (char c : name) {
    if (c == '/')
      base += "__";
    else if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')
      base += c;
    else
      base += '_';
  }
  if (base.empty() || base[0] == '.') base = "tensor_" + std::to_string(index) + "_" + base;
  if (base.size() > kMaxBase)
    base = base.substr(0, kMaxBase) + "_" + hex64(digest_bytes(name.data(), name.size()));
  std::string file = base + ".npy";
  for (int n = 2; used.count(file); ++n) file = base + "_" + std::to_string(n) + ".npy";
  used.insert(file);
  return file;
}

namespace fs = std::filesystem;

struct FollowingStep {
  int64_t step = 0;
  int epoch = 0;
  std::vector<int64_t> batches;  // the batch events of the step (one, from the loader)
};

int run_export(const ExportArgs& a) {
  if (trace::is_run_folder(a.file)) {
    print_error(a.file + " is the folder of a data-parallel run: export reads one rank's trace (" +
                trace::rank_trace_path(a.file, 0) + ")");
    return kBadInput;
  }
  if (a.step < 0) {
    std::fprintf(stderr, "trainrr: --step %lld: a step is a count of steps, 0 or more\n",
                 static_cast<long long>(a.step));
    return kBadInput;
  }
  if (a.dir.empty()) {
    print_error("-o needs a folder path, got an empty one");
    return kBadInput;
  }
  // Absolute and without "." or "..": "-o ." names the current folder, which can be renamed by its name.
  std::error_code ec;
  fs::path target = fs::absolute(fs::path(a.dir), ec).lexically_normal();
  if (ec) {
    print_error(a.dir + ": cannot tell which folder this is: " + ec.message());
    return kBadInput;
  }
  if (!target.has_filename()) target = target.parent_path();  // "ck/", "."
  if (Status s = check_export_target(target, a.file); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  // The checkpoint's tensors are what is exported; the embedded data is not.
  trace::ReaderLimits limits = trace::without_payloads();
  limits.tensor_values = true;
  auto opened = trace::TraceReader::open(a.file, limits);
  if (!opened) {
    print_error(opened.error().message);
    return kBadInput;
  }
  trace::TraceReader& r = **opened;
  // The index is built from message framing, so it works on a trace whose recording was killed.
  auto index = r.checkpoint_index();
  if (!index) {
    print_error(index.error().message);
    return kBadInput;
  }
  const trace::CheckpointRef* chosen = nullptr;
  for (const auto& c : *index)
    if (c.step <= a.step && (!chosen || c.step >= chosen->step)) chosen = &c;
  if (!chosen) {
    std::string have;
    for (const auto& c : *index) have += (have.empty() ? "" : ", ") + std::to_string(c.step);
    // Every recording writes its initial state first: a trace without it is cut or damaged before it ends.
    std::string why = "checkpoints are at steps " + have;
    if (have.empty()) {
      why = "the trace holds no whole checkpoint";
      if (auto whole = trace::TraceReader::reopen(r, trace::without_payloads()))
        for (;;) {
          auto rec = (*whole)->next();
          if (!rec) {
            why += ": reading stopped before its initial state was whole: " + rec.error().message;
            break;
          }
          if (!*rec) break;
        }
    }
    std::fprintf(stderr, "trainrr: %s: no checkpoint at or before step %lld; %s\n", a.file.c_str(),
                 static_cast<long long>(a.step), why.c_str());
    return kBadInput;
  }
  const uint64_t offset = chosen->offset;

  // The trace is read from its start to the checkpoint, without decompressing what is not needed: the
  // reader checks each message against those before it, so a checkpoint out of place, or one whose
  // parameters are not those the step before it recorded, is damage, and nothing is exported. Then the steps
  // after it, up to the next checkpoint or the end of what can be read.
  std::vector<FollowingStep> following;
  std::string until = "end of trace";
  // The file the index was read from, even where another has since been put at its path.
  auto scanned = trace::TraceReader::reopen(r, trace::without_payloads());
  if (!scanned) {
    print_error(scanned.error().message);
    return kBadInput;
  }
  trace::TraceReader& scan = **scanned;
  for (bool reached = false; !reached;) {
    auto rec = scan.next();
    if (!rec || !*rec) {
      print_error(
          (rec ? a.file + ": the trace ends before byte " + std::to_string(offset) : rec.error().message) +
          ": the checkpoint at step " + std::to_string(chosen->step) + " (byte " + std::to_string(offset) +
          ") cannot be exported");
      return kBadInput;
    }
    reached = (*rec)->offset >= offset;
  }
  auto state = r.read_checkpoint(offset);
  if (!state) {
    print_error(state.error().message);
    return kBadInput;
  }
  bool later_checkpoint = false;  // else the scan read to the end, and knows the trace's last step
  std::string grown;              // a later checkpoint at or before --step, written meanwhile (a live trace)
  std::string damage;             // where the scan stopped at a message changed after it was written
  for (;;) {
    auto rec = scan.next();
    if (!rec) {
      until = "reading stopped: " + rec.error().message;
      if (const auto& at = scan.stopped(); at && !at->truncated) damage = rec.error().message;
      break;
    }
    if (!*rec) break;
    const trace::TraceRecord& m = **rec;
    if (const auto* c = std::get_if<trace::TraceCheckpoint>(&m.value)) {
      until = "checkpoint at step " + std::to_string(c->step);
      later_checkpoint = true;
      // A trace still being recorded gained it while the index was read: it is at or before --step too.
      if (c->step <= a.step)
        grown =
            "the checkpoint at step " + std::to_string(c->step) +
            ", at or before --step too, was whole only once this export had chosen the one before it (the "
            "trace is still being recorded)";
      break;
    }
    const auto* s = std::get_if<trace::TraceStep>(&m.value);
    if (!s || !s->end) continue;
    FollowingStep f{s->index, s->epoch, {}};
    for (const auto& e : s->events)
      if (const auto* b = std::get_if<trace::BatchOrderEvent>(&e)) f.batches.push_back(b->batch);
    following.push_back(std::move(f));
  }

  // A step past the trace's end takes its last checkpoint (the final weights of a run that completed), as
  // --to-step and dump --steps go as far as the trace does; a note says so, and what the trace holds.
  // A trace damaged after the checkpoint is read no further: what lies past the damage is not known, and no
  // end is claimed for it.
  std::string past_the_end;
  // (A trace without its final state does not hold the state after its last step either.)
  if (const int64_t last = following.empty() ? chosen->step : following.back().step + 1;
      !later_checkpoint && (a.step > last || (a.step == last && chosen->step != last)))
    past_the_end =
        !damage.empty()
            ? (last > 0 ? "the trace is damaged after step " + std::to_string(last - 1)
                        : std::string("the trace is damaged before its first step ended")) +
                  " (" + damage + "): the checkpoint at step " + std::to_string(chosen->step) +
                  ", before the damage, was exported, and nothing past the damage was read"
            : "--step " + std::to_string(a.step) + " is past the trace's end: " +
                  (last > 0 ? "it has steps 0.." + std::to_string(last - 1) : std::string("it has no step")) +
                  (scan.ended_cleanly()     ? ""
                   : scan.still_recording() ? " so far (still being recorded)"
                   : chosen->step == last
                       ? " (it did not end cleanly: no footer says whether its run ended there)"
                       : " (it did not end cleanly: its final state is not in it)") +
                  "; its last checkpoint was exported";

  // A write that fails in the folder the export is made in leaves nothing: the path asked for is as it was.
  const std::string nothing_exported = "; nothing was exported (" + printable(a.dir) + " is as it was)";
  auto staging = ExportStaging::create(target);
  if (!staging) {
    print_error(staging.error().message + nothing_exported);
    return kBadInput;
  }
  // SIGINT, SIGTERM or SIGHUP: the export stops before its next file; the staging folder goes with it.
  const auto stopped = [&]() -> std::optional<int> {
    const int sig = ExportStaging::interrupted();
    if (!sig) return std::nullopt;
    const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP";
    std::fprintf(stderr, "trainrr: interrupted (%s): nothing was exported (%s is as it was)\n", name,
                 printable(a.dir).c_str());
    return 128 + sig;
  };
  const fs::path dir = staging->path();
  std::set<std::string> used{"manifest.json"};
  std::string tensors = "[";
  for (size_t i = 0; i < state->tensors.size(); ++i) {
    const NamedTensor& t = state->tensors[i];
    if (auto code = stopped()) return *code;
    const std::string file = file_name_for(t.name, i, used);
    if (Status s = write_npy((dir / file).string(), t.value); !s) {
      print_error(s.error().message + nothing_exported);
      return kBadInput;
    }
    append_item(tensors, i, ",",
                JsonObject()
                    .str("name", t.name)
                    .raw("shape", json_array(std::span<const int64_t>(t.value.shape)))
                    .str("file", file)
                    .str("digest", hex64(digest(t.value)))
                    .done());
  }
  tensors += "]";

  std::string order = "[";
  for (size_t i = 0; i < following.size(); ++i) {
    const FollowingStep& f = following[i];
    JsonObject o;
    o.integer("step", f.step).integer("epoch", f.epoch + 1);  // counted from 1, as training prints it
    if (f.batches.size() == 1)
      o.integer("batch", f.batches[0]);
    else if (f.batches.empty())
      o.null("batch");
    else
      o.raw("batch", json_array(std::span<const int64_t>(f.batches)));
    append_item(order, i, ",", o.done());
  }
  order += "]";

  const std::string manifest =
      JsonObject()
          .str("trace", a.file)
          .integer("requested_step", a.step)
          .integer("step", state->step)
          .integer("epochs_done", state->epoch)
          .integer("batch_in_epoch", state->batch_in_epoch)
          .uinteger("seed", state->seed)
          .uinteger("checkpoint_offset", offset)
          .raw("tensors", tensors)
          .raw("rng_offsets", json_map(state->rng_offsets, false))
          .raw("scalars", json_map(state->scalars))
          .raw("permutation", json_array(std::span<const uint32_t>(state->permutation)))
          .raw("batches_done", json_array(std::span<const uint32_t>(state->batches_done)))
          .raw("batch_order", order)
          .str("batch_order_until", until)
          .done();
  const std::string manifest_path = (dir / "manifest.json").string();
  std::ofstream out(manifest_path, std::ios::binary);
  out << manifest << "\n";
  out.close();
  if (!out) {
    print_error(manifest_path + ": cannot write the manifest" + nothing_exported);
    return kBadInput;
  }
  if (auto code = stopped()) return *code;
  if (Status s = staging->put_in_place(target, a.file); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  // A checkpoint's step is the count of steps done: the one with step 5 holds the state after steps 0..4,
  // before step 5. The last one of a trace has no step after it.
  const long long done = state->step;
  const std::string where = following.empty() && !later_checkpoint && done > 0 && damage.empty()
                                ? "after the trace's last step, " + std::to_string(done - 1)
                                : "before step " + std::to_string(done);
  auto plural = [](long long n) { return n == 1 ? "" : "s"; };
  std::printf(
      "exported the checkpoint %s (%lld step%s done: %d epoch%s and %lld batch%s) to %s: %zu tensor%s, "
      "manifest.json with the batch order of %zu following step%s (until %s)\n",
      where.c_str(), done, plural(done), state->epoch, plural(state->epoch),
      static_cast<long long>(state->batch_in_epoch), state->batch_in_epoch == 1 ? "" : "es",
      inline_text(a.dir).c_str(), state->tensors.size(),
      plural(static_cast<long long>(state->tensors.size())), following.size(),
      plural(static_cast<long long>(following.size())), inline_text(until).c_str());
  // As show and dump say it: the trace holds what its recording has written so far.
  if (const auto& live = r.still_recording()) std::printf("note: %s\n", live->c_str());
  if (!grown.empty()) std::printf("note: %s\n", grown.c_str());
  if (!past_the_end.empty()) std::printf("note: %s\n", past_the_end.c_str());
  return kOk;
}

}  // namespace

void add_export_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Write the checkpoint at or before step N as .npy files (one per tensor) and a manifest.json\n"
      "with shapes, the run's position and the batch order of the following steps.\n"
      "Every recording keeps the initial state (--step 0: the initial weights) and the final one.\n"
      "Steps count from 0; epochs count from 1, as training and Keras print them (the manifest's\n"
      "epochs_done is the count of epochs completed).\n"
      "Exit codes: 0 written, 2 bad input (no such checkpoint, not a trace, cannot write),\n"
      "130, 143 or 129 interrupted by SIGINT, SIGTERM or SIGHUP (nothing written, no file left).");
  cmd->add_option("file", args->file,
                  "Trace file (of a run recorded under mpirun: one rank's, FOLDER/rankR.trr)")
      ->required();
  cmd->add_option("--step", args->step,
                  "Step N: the last checkpoint taken after at most N steps (past the trace's end: its last,\n"
                  "the final weights of a run that completed)")
      ->required();
  cmd->add_option(
         "-o,--output", args->dir,
         "Folder to write: created (in a folder that exists), or an empty folder or an earlier export\n"
         "(its manifest.json and the .npy files it lists, nothing else) replaced whole, with its permissions")
      ->required();
  cmd->callback(
      [args, &exit_code] { exit_code = refused_under_mpirun("export") ? kBadInput : run_export(*args); });
}

}  // namespace trainrr::cli
