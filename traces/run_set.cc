#include "traces/run_set.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "traces/trace_lock.h"
#include "traces/trace_reader.h"

namespace trainrr::trace {
namespace fs = std::filesystem;

std::string rank_trace_path(const std::string& folder, int rank) {
  return (fs::path(folder) / ("rank" + std::to_string(rank) + ".trr")).string();
}

bool is_run_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

namespace {

// A rank trace's name: rank0.trr, rank1.trr, ...
const std::regex kRank("rank([0-9]{1,6})\\.trr");

// The rank traces in `folder` by rank (rank0.trr, rank1.trr, ...), or an error when it cannot be listed.
Result<std::map<int, std::string>> rank_files(const std::string& folder) {
  std::map<int, std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, kRank)) continue;
    // One name per rank: rank00.trr beside rank0.trr would be a second trace of rank 0, read in its place or
    // not by the order the folder lists them, while every message names rank0.trr.
    if (m[1].length() > 1 && m[1].str()[0] == '0')
      return Error{folder + ": " + name + " is not the name of a rank trace (a rank's is rank" +
                   std::to_string(std::stoi(m[1].str())) +
                   ".trr, without leading zeros): move it out of the run's folder"};
    found[std::stoi(m[1].str())] = entry.path().string();
  }
  if (ec) return Error{folder + ": cannot list the folder: " + ec.message()};
  return found;
}

}  // namespace

bool holds_rank_traces(const std::string& folder) {
  // Any name of a rank trace, one with leading zeros too: opened, the folder says why that one is refused.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec))
    if (std::regex_match(entry.path().filename().string(), kRank)) return true;
  return false;
}

Result<RunSet> open_run(const std::string& folder) {
  RunSet run;
  run.folder = folder;
  auto listed = rank_files(folder);
  if (!listed) return listed.error();
  std::map<int, std::string> found = std::move(*listed);
  if (found.empty())
    return Error{folder + ": a folder without rank traces (rank0.trr, rank1.trr, ...): not a run recorded under mpirun"};
  std::map<int, TraceHeader> headers;
  for (const auto& [rank, path] : found) {
    auto reader = TraceReader::open(path);
    if (!reader) return reader.error();
    const TraceHeader& h = (*reader)->header();
    if (h.world_size == 0)
      return Error{path + ": a trace of one process, not a rank of a data-parallel run"};
    if (h.rank != rank)
      return Error{path + ": holds rank " + std::to_string(h.rank) + ", but its name says rank " + std::to_string(rank)};
    headers[rank] = h;
  }
  const TraceHeader& first = headers.begin()->second;
  // Traces of several runs: each run's traces, the run with fewer first (a stray among the others).
  std::map<std::string, std::vector<std::string>> by_run;
  for (const auto& [rank, h] : headers) by_run[h.run_id].push_back(fs::path(found[rank]).filename().string());
  if (by_run.size() > 1) {
    std::vector<std::pair<std::string, std::vector<std::string>>> runs(by_run.begin(), by_run.end());
    std::stable_sort(runs.begin(), runs.end(),
                     [](const auto& x, const auto& y) { return x.second.size() < y.second.size(); });
    std::string parts;
    for (const auto& [id, files] : runs) {
      std::string names;
      for (const std::string& f : files) names += (names.empty() ? "" : ", ") + f;
      parts += (parts.empty() ? "" : "; ") + names + (files.size() == 1 ? " is" : " are") + " of run " + id;
    }
    return Error{folder + ": a set mixed from " + std::to_string(runs.size()) + " runs: " + parts};
  }
  for (const auto& [rank, h] : headers) {
    if (h.world_size != first.world_size)
      return Error{folder + ": " + fs::path(found[rank]).filename().string() + " is one of " +
                   std::to_string(h.world_size) + " ranks, another trace one of " + std::to_string(first.world_size)};
  }
  for (int r = 0; r < first.world_size; ++r)
    if (!found.count(r))
      return Error{folder + ": rank " + std::to_string(r) + " of the " + std::to_string(first.world_size) +
                   "-rank run" + (first.run_id.empty() ? "" : " " + first.run_id) + " is missing (" +
                   rank_trace_path(folder, r) + ")"};
  for (const auto& [rank, path] : found)
    if (rank >= first.world_size)
      return Error{folder + ": " + path + " is rank " + std::to_string(rank) + " of a run of " +
                   std::to_string(first.world_size) + " ranks"};
  run.run_id = first.run_id;
  run.world_size = first.world_size;
  for (int r = 0; r < run.world_size; ++r) {
    run.paths.push_back(found[r]);
    run.headers.push_back(headers[r]);
  }
  return run;
}

std::optional<pid_t> pending_trace_pid(const std::string& name) {
  static const std::string head = ".trainrr-", tail = ".trr.part";
  if (!name.starts_with(head) || !name.ends_with(tail) || name.size() <= head.size() + tail.size()) return {};
  const std::string mid = name.substr(head.size(), name.size() - head.size() - tail.size());
  const size_t dash = mid.find('-');
  if (dash == 0 || dash == std::string::npos || dash + 1 == mid.size() || dash > 9 ||
      mid.find_first_not_of("0123456789") != dash ||
      mid.find_first_not_of("0123456789", dash + 1) != std::string::npos)
    return {};
  return static_cast<pid_t>(std::stol(mid.substr(0, dash)));
}

namespace {

// Whether process `pid` runs (it may be another's, when the id was reused: then it counts as running). A
// process that exited and that its parent has not reaped (a zombie) has closed its files: it does not.
bool process_runs(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t comm_end = line.rfind(") ");
  return comm_end == std::string::npos || comm_end + 2 >= line.size() || line[comm_end + 2] != 'Z';
}

}  // namespace

std::vector<std::string> killed_recording_traces(const std::string& folder) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    const std::string name = e.path().filename().string();
    const std::optional<pid_t> pid = pending_trace_pid(name);
    // Its writer's lock went with its process.
    if (pid && fs::is_regular_file(fs::symlink_status(e.path(), ec)) && !writer_of(e.path().string()) &&
        !process_runs(*pid))
      out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status refuse_rank_alone(const TraceHeader& h, const std::string& path, const std::string& what) {
  if (h.world_size == 0) return {};
  const std::string parent = fs::path(path).parent_path().string();
  const std::string folder = parent.empty() ? std::string(".") : parent;
  const std::string head = path + " is rank " + std::to_string(h.rank) + " of the " +
                           std::to_string(h.world_size) + "-rank run" +
                           (h.run_id.empty() ? "" : " " + h.run_id) + ": " + what + " needs every rank; ";
  // Its own folder is the run's where it holds the run's rank traces; a copy taken out of it is not.
  if (fs::path(path).filename() == fs::path(rank_trace_path(folder, h.rank)).filename() &&
      holds_rank_traces(folder))
    return Error{head + "give the run's folder (" + folder + ")"};
  return Error{head + "give the folder that holds its " + std::to_string(h.world_size) +
               " rank traces (rank0.trr .. rank" + std::to_string(h.world_size - 1) + ".trr)"};
}

}  // namespace trainrr::trace
