// libFuzzer target for the replay path of an untrusted trace: a header (configuration text, its path, data
// sets with names, paths and embedded bytes) goes through rebuild_config and the replay's set-up
// (make_replay_side: the trace read back, the data loaded, the model built), in a sandbox folder. Besides
// the sanitizers' findings, the target aborts when anything is left or written outside the scratch
// folder: after each input the sandbox holds exactly what it held before, and TMPDIR is empty.
//
// Input: parts separated by "\n----\n": the configuration, its recorded path, then three parts per data
// set: name, recorded path, contents. Contents starting with '@' are a data set that is not embedded, of
// the size that follows; any other contents are embedded. Seeds: replayer/fuzz_corpus/.
//
// The target runs in its sandbox folder (it changes the working folder at start): give it absolute paths
// for corpora and -artifact_prefix, as scripts/test.sh does.

#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "replayer/replayer.h"
#include "replayer/scratch.h"
#include "traces/trace.h"
#include "traces/trace_writer.h"

namespace fs = std::filesystem;
using namespace trainrr;

namespace {

fs::path g_sandbox;

std::set<std::string> entries(const fs::path& root) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec))
    out.insert(fs::relative(it->path(), root).string());
  return out;
}

std::set<std::string> g_before;

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  constexpr std::string_view kSep = "\n----\n";
  for (;;) {
    const size_t at = s.find(kSep);
    parts.push_back(s.substr(0, at));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + kSep.size());
  }
  return parts;
}

// Set-up only for runs of a size a fuzzer can afford per input; bigger ones are the engine's own limits'
// business (tests/bad_input_test.cc), not this target's.
bool small(const RunConfig& c) {
  if (c.data.samples > 4096) return false;
  for (const auto& l : c.layers)
    if (l.units > 1024 || l.filters > 256 || l.kernel_size[0] * l.kernel_size[1] > 64) return false;
  return c.train.batch_size <= 4096;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/trainrr-replay-fuzz-XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  g_sandbox = tmpl;
  fs::create_directories(g_sandbox / "tmp");
  fs::create_directories(g_sandbox / "work");
  fs::create_directories(g_sandbox / "data");
  // Things a trace may name: a pipe (never opened for long), a folder, a small data file.
  ::mkfifo((g_sandbox / "data" / "fifo").c_str(), 0600);
  std::FILE* f = std::fopen((g_sandbox / "data" / "d.csv").c_str(), "w");
  std::fputs("y,a,b\n0,1,2\n1,3,4\n0,5,6\n1,7,8\n", f);
  std::fclose(f);
  ::setenv("TMPDIR", (g_sandbox / "tmp").c_str(), 1);
  if (::chdir((g_sandbox / "work").c_str()) != 0) std::abort();
  g_before = entries(g_sandbox);
  // The sandbox goes when the fuzzer ends normally; after a finding it stays, for a look.
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(g_sandbox, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = split({reinterpret_cast<const char*>(data), size});
  trace::TraceHeader h;
  h.config = std::string(parts[0]);
  h.config_path = parts.size() > 1 ? std::string(parts[1]) : "fuzz.toml";
  h.environment = {{"host", "fuzz"}};
  for (size_t i = 2; i + 2 < parts.size(); i += 3) {
    trace::DatasetInfo d;
    d.name = std::string(parts[i]);
    d.path = std::string(parts[i + 1]);
    const std::string_view contents = parts[i + 2];
    if (!contents.empty() && contents[0] == '@') {
      d.size_bytes = std::strtoull(std::string(contents.substr(1)).c_str(), nullptr, 10);
    } else {
      d.embedded.assign(contents.begin(), contents.end());
      d.size_bytes = d.embedded.size();
      d.digest = trace::digest128_bytes(d.embedded);
    }
    h.datasets.push_back(std::move(d));
  }
  {
    auto scratch = ScratchDir::create("trainrr-replay");
    if (!scratch) std::abort();
    auto rebuilt = rebuild_config(h, {}, "", true, *scratch);
    if (rebuilt && small(rebuilt->config)) {
      // The header as a trace file, read back by the replay's own set-up. Only known names are written:
      // the reader refuses the others, as tested elsewhere.
      const std::string trace_path = (g_sandbox / "tmp" / "fuzz.trr").string();
      bool known = true;
      for (const auto& d : h.datasets) known = known && trace::is_known_dataset_name(d.name);
      if (known) {
        auto writer = trace::TraceWriter::create(trace_path, h);
        if (writer) {
          (void)(*writer)->finish({});
          writer->reset();
          KernelRegistry registry;
          register_cpu_kernels(registry);
          (void)make_replay_side(trace_path, rebuilt->config, registry, ForceSet::all(), {}, h.level, true, 0);
        }
        fs::remove(trace_path);
      }
    }
  }
  // The scratch folder is gone and nothing else appeared anywhere in the sandbox.
  if (entries(g_sandbox) != g_before) {
    std::fprintf(stderr, "replay_setup_fuzz: the sandbox changed:\n");
    for (const auto& e : entries(g_sandbox))
      if (!g_before.count(e)) std::fprintf(stderr, "  new: %s\n", e.c_str());
    std::abort();
  }
  return 0;
}
