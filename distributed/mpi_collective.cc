#include "distributed/mpi_collective.h"

#include <mpi.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace trainrr {

namespace {

// The library's control variables through MPI_T: fn(index, name, type) for each, until it returns true.
template <class F>
void each_cvar(F&& fn) {
  int count = 0;
  if (MPI_T_cvar_get_num(&count) != MPI_SUCCESS) return;
  for (int i = 0; i < count; ++i) {
    char name[256], desc[8];
    int name_len = sizeof name, desc_len = sizeof desc, verbosity = 0, binding = 0, scope = 0;
    MPI_Datatype type;
    MPI_T_enum enumtype;
    if (MPI_T_cvar_get_info(i, name, &name_len, &verbosity, &type, &enumtype, desc, &desc_len, &binding,
                            &scope) != MPI_SUCCESS)
      continue;
    if (fn(i, static_cast<const char*>(name), type)) return;
  }
}

// A control variable of the library through MPI_T, or `fallback` where it has none.
int64_t read_cvar(const char* wanted, int64_t fallback) {
  int64_t value = fallback;
  each_cvar([&](int i, const char* name, MPI_Datatype type) {
    if (std::strcmp(name, wanted) != 0) return false;
    MPI_T_cvar_handle handle;
    int n = 0;
    if (MPI_T_cvar_handle_alloc(i, nullptr, &handle, &n) != MPI_SUCCESS) return true;
    alignas(8) unsigned char buf[64] = {};
    if (n == 1 && MPI_T_cvar_read(handle, buf) == MPI_SUCCESS) {
      if (type == MPI_C_BOOL)
        value = *reinterpret_cast<bool*>(buf);
      else if (type == MPI_INT)
        value = *reinterpret_cast<int*>(buf);
      else if (type == MPI_UNSIGNED)
        value = *reinterpret_cast<unsigned*>(buf);
      else if (type == MPI_LONG)
        value = *reinterpret_cast<long*>(buf);
      else if (type == MPI_UNSIGNED_LONG)
        value = static_cast<int64_t>(*reinterpret_cast<unsigned long*>(buf));
      else if (type == MPI_UNSIGNED_LONG_LONG)
        value = static_cast<int64_t>(*reinterpret_cast<unsigned long long*>(buf));
      else if (type == MPI_LONG_LONG)
        value = *reinterpret_cast<long long*>(buf);
    }
    MPI_T_cvar_handle_free(&handle);
    return true;
  });
  return value;
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string(what) + ": " + std::string(msg, len));
  }
}

// A string control variable of the library through MPI_T, or "" where it has none.
std::string read_cvar_string(const char* wanted) {
  std::string value;
  each_cvar([&](int i, const char* name, MPI_Datatype type) {
    if (std::strcmp(name, wanted) != 0) return false;
    if (type != MPI_CHAR) return true;
    MPI_T_cvar_handle handle;
    int n = 0;
    if (MPI_T_cvar_handle_alloc(i, nullptr, &handle, &n) != MPI_SUCCESS) return true;
    value.assign(static_cast<size_t>(std::max(n, 0)) + 1, '\0');
    if (MPI_T_cvar_read(handle, value.data()) != MPI_SUCCESS) value.clear();
    MPI_T_cvar_handle_free(&handle);
    value = value.substr(0, value.find('\0'));
    return true;
  });
  return value;
}

// The priorities of the collective components that can run a blocking allreduce on MPI_COMM_WORLD in place of
// coll/tuned (CollectiveSettings::priorities): every coll_<name>_priority but those of components that never
// do (self: one process; inter: intercommunicators; libnbc and adapt: no blocking allreduce; sync, monitoring
// and cuda: they pass it on to the component below them), and of those that decline a communicator laid out
// as this one is (han one within a single node, sm one across nodes). coll/tuned's first.
std::string read_coll_priorities(bool one_node) {
  static const char* const kNever[] = {"self", "inter", "libnbc", "adapt", "sync", "monitoring", "cuda"};
  std::string tuned, others;
  each_cvar([&](int, const char* name, MPI_Datatype) {
    const std::string n(name);
    constexpr std::string_view head = "coll_", tail = "_priority";
    if (n.size() <= head.size() + tail.size() || !n.starts_with(head) || !n.ends_with(tail)) return false;
    const std::string component = n.substr(head.size(), n.size() - head.size() - tail.size());
    if (component.find('_') != std::string::npos)
      return false;  // a setting of one component, not its priority
    if (std::find(std::begin(kNever), std::end(kNever), component) != std::end(kNever)) return false;
    if ((component == "han" && one_node) || (component == "sm" && !one_node)) return false;
    const std::string entry = component + "=" + std::to_string(read_cvar(name, 0));
    if (component == "tuned")
      tuned = entry;
    else
      others += (others.empty() ? "" : " ") + entry;
    return false;
  });
  if (tuned.empty()) return "";
  return others.empty() ? tuned : tuned + " " + others;
}

}  // namespace

Result<std::unique_ptr<MpiCollective>> MpiCollective::init() {
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
    return Error{"MPI_Init failed"};
  std::unique_ptr<MpiCollective> c(new MpiCollective());
  MPI_Comm_rank(MPI_COMM_WORLD, &c->rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &c->size_);
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string v(version, len);
  c->settings_.library = v.substr(0, v.find_first_of("\r\n"));
  int tprovided = 0;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &tprovided) == MPI_SUCCESS) {
    c->settings_.dynamic_rules = read_cvar("coll_tuned_use_dynamic_rules", 0) != 0;
    c->settings_.forced_algorithm = static_cast<int>(read_cvar("coll_tuned_allreduce_algorithm", 0));
    c->settings_.segment_bytes = read_cvar("coll_tuned_allreduce_algorithm_segmentsize", 0);
    c->settings_.components = read_cvar_string("coll");
    c->settings_.rules_file = read_cvar_string("coll_tuned_dynamic_rules_filename");
    // Whether the ranks are all on this node, as Open MPI tells each of them (the same answer on every rank):
    // read from its variables, with no collective call, which ranks whose allreduce settings differ (refused
    // later, by an allgather) could not make together.
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const bool one_node = local && std::strtol(local, nullptr, 10) == c->size_;
    c->settings_.priorities = read_coll_priorities(one_node);
    MPI_T_finalize();
  }
  return c;
}

MpiCollective::~MpiCollective() { MPI_Finalize(); }

uint64_t MpiCollective::broadcast(uint64_t value) {
  check(MPI_Bcast(&value, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return value;
}

std::vector<uint32_t> MpiCollective::broadcast(std::vector<uint32_t> values) {
  uint64_t n = broadcast(static_cast<uint64_t>(values.size()));
  values.resize(n);
  if (n) check(MPI_Bcast(values.data(), static_cast<int>(n), MPI_UINT32_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return values;
}

std::vector<float> MpiCollective::allgather(const std::vector<float>& mine) {
  std::vector<float> all(mine.size() * size_);
  check(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, all.data(), static_cast<int>(mine.size()),
                      MPI_FLOAT, MPI_COMM_WORLD),
        "MPI_Allgather");
  return all;
}

void MpiCollective::barrier() { MPI_Barrier(MPI_COMM_WORLD); }

void MpiCollective::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

int MpiCollective::max(int value) {
  int out = value;
  check(MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return out;
}

std::vector<std::string> MpiCollective::gather(const std::string& mine) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_), offsets(size_);
  check(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Gather");
  int total = 0;
  for (int r = 0; r < size_; ++r) offsets[r] = total, total += lens[r];
  std::vector<char> all(rank_ == 0 ? std::max(total, 1) : 1);
  check(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD),
        "MPI_Gatherv");
  std::vector<std::string> out;
  if (rank_ == 0)
    for (int r = 0; r < size_; ++r) out.emplace_back(all.data() + offsets[r], lens[r]);
  return out;
}

std::vector<std::string> MpiCollective::allgather(const std::string& mine) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_), offsets(size_);
  check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  int total = 0;
  for (int r = 0; r < size_; ++r) offsets[r] = total, total += lens[r];
  std::vector<char> all(std::max(total, 1));
  check(MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR,
                       MPI_COMM_WORLD),
        "MPI_Allgatherv");
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) out.emplace_back(all.data() + offsets[r], lens[r]);
  return out;
}

void MpiCollective::allreduce(std::string_view variant, const std::vector<std::span<const float>>& shards,
                              std::span<float> out, CollectiveCall& call) {
  const int n = static_cast<int>(out.size());
  // Scratch kept from call to call: fresh pages on every call cost more than the sums (page faults, and the
  // transport's registration of new buffers).
  if (local_.size() < static_cast<size_t>(n)) local_.resize(n), theirs_.resize(n);
  std::span<float> local(local_.data(), n);
  tree_sum(shards, local);
  if (variant == kAllreduceTree) {
    call.algorithm = tree_description(size_ * static_cast<int>(shards.size()), size_);
    call.forced = true;
    if (std::has_single_bit(static_cast<unsigned>(size_))) {
      // Rabenseifner's schedule: recursive halving (partners r ^ 1, r ^ 2, ...) leaves each rank the sum of a
      // window of the vector, grouped as the tree across ranks, then recursive doubling gathers the windows.
      // The same grouping as exchanging whole vectors, at about half the traffic.
      std::span<float> theirs(theirs_.data(), n);
      std::vector<std::pair<int, int>> windows;
      int lo = 0, cnt = n;
      for (int mask = 1; mask < size_; mask <<= 1) {
        const int partner = rank_ ^ mask, half = cnt / 2;
        const bool lower = rank_ < partner;
        const int keep_lo = lower ? lo : lo + half, keep_cnt = lower ? half : cnt - half;
        const int send_lo = lower ? lo + half : lo, send_cnt = cnt - keep_cnt;
        check(MPI_Sendrecv(local.data() + send_lo, send_cnt, MPI_FLOAT, partner, 17, theirs.data() + keep_lo, keep_cnt,
                           MPI_FLOAT, partner, 17, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
              "MPI_Sendrecv");
        for (int i = keep_lo; i < keep_lo + keep_cnt; ++i) local[i] = local[i] + theirs[i];
        windows.emplace_back(lo, cnt);
        lo = keep_lo, cnt = keep_cnt;
      }
      for (int mask = size_ >> 1; mask >= 1; mask >>= 1) {
        const int partner = rank_ ^ mask;
        const auto [plo, pcnt] = windows.back();
        windows.pop_back();
        const int other_lo = lo == plo ? plo + cnt : plo, other_cnt = pcnt - cnt;
        check(MPI_Sendrecv(local.data() + lo, cnt, MPI_FLOAT, partner, 19, local.data() + other_lo, other_cnt,
                           MPI_FLOAT, partner, 19, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
              "MPI_Sendrecv");
        lo = plo, cnt = pcnt;
      }
      std::memcpy(out.data(), local.data(), n * sizeof(float));
    } else {
      std::vector<float> all(static_cast<size_t>(n) * size_);
      check(MPI_Allgather(local.data(), n, MPI_FLOAT, all.data(), n, MPI_FLOAT, MPI_COMM_WORLD), "MPI_Allgather");
      std::vector<std::span<const float>> parts;
      for (int r = 0; r < size_; ++r) parts.emplace_back(all.data() + static_cast<size_t>(r) * n, n);
      tree_sum(parts, out);
    }
  } else if (variant == kAllreduceExact) {
    call.algorithm = kExactDescription;
    call.forced = true;
    // Rank d sums slice d of the elements exactly over every shard of the run, then every rank gathers the
    // rounded slices: each shard's floats cross the network once (4 bytes per shard and element, where a
    // 384-bit accumulator per element would move 56), and the exact sums are split among the ranks.
    const int per = static_cast<int>(shards.size()), p = size_;
    std::vector<int> slice_lo(p + 1);
    for (int d = 0; d <= p; ++d) slice_lo[d] = static_cast<int>(static_cast<int64_t>(n) * d / p);
    std::vector<int> send_counts(p), send_offsets(p), recv_counts(p), recv_offsets(p);
    std::vector<float>& send = send_;
    send.clear();
    send.reserve(static_cast<size_t>(per) * n);
    for (int d = 0; d < p; ++d) {
      send_offsets[d] = static_cast<int>(send.size());
      for (const auto& sh : shards) send.insert(send.end(), sh.begin() + slice_lo[d], sh.begin() + slice_lo[d + 1]);
      send_counts[d] = static_cast<int>(send.size()) - send_offsets[d];
    }
    const int mine = slice_lo[rank_ + 1] - slice_lo[rank_];
    for (int r = 0; r < p; ++r) recv_counts[r] = per * mine, recv_offsets[r] = r * per * mine;
    std::vector<float>& recv = recv_;
    if (recv.size() < static_cast<size_t>(p) * per * mine) recv.resize(static_cast<size_t>(p) * per * mine);
    check(MPI_Alltoallv(send.data(), send_counts.data(), send_offsets.data(), MPI_FLOAT, recv.data(),
                        recv_counts.data(), recv_offsets.data(), MPI_FLOAT, MPI_COMM_WORLD),
          "MPI_Alltoallv");
    std::vector<std::span<const float>> parts;
    for (int k = 0; k < p * per; ++k) parts.emplace_back(recv.data() + static_cast<size_t>(k) * mine, mine);
    std::span<float> summed(theirs_.data(), mine);  // scratch of n >= mine elements
    if (mine > 0) exact_sum(parts, summed);
    std::vector<int> counts(p), offsets(p);
    for (int d = 0; d < p; ++d) counts[d] = slice_lo[d + 1] - slice_lo[d], offsets[d] = slice_lo[d];
    check(MPI_Allgatherv(summed.data(), mine, MPI_FLOAT, out.data(), counts.data(), offsets.data(), MPI_FLOAT,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
  } else if (variant == kAllreduceMpi) {
    describe_mpi_algorithm(settings_, size_, static_cast<int64_t>(n) * 4, call);
    check(MPI_Allreduce(local.data(), out.data(), n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  } else if (variant == kAllreduceArrival) {
    call.algorithm = kArrivalDescription;
    call.forced = true;
    // Rank 0 adds each rank's sum as it arrives (or in the order given), as coll/adapt reduces in its
    // receive callbacks; then broadcasts the sum and the order.
    std::vector<uint32_t> order(size_);
    if (rank_ == 0) {
      std::vector<std::vector<float>> in(size_, std::vector<float>(n));
      std::vector<MPI_Request> reqs(size_, MPI_REQUEST_NULL);
      for (int r = 1; r < size_; ++r)
        check(MPI_Irecv(in[r].data(), n, MPI_FLOAT, r, 18, MPI_COMM_WORLD, &reqs[r]), "MPI_Irecv");
      in[0].assign(local.begin(), local.end());
      const bool forced = call.order.size() == static_cast<size_t>(size_);
      std::vector<float> acc;
      if (forced) {
        order = call.order;
        for (int k = 0; k < size_; ++k) {
          const int r = static_cast<int>(order[k]);
          if (r != 0) check(MPI_Wait(&reqs[r], MPI_STATUS_IGNORE), "MPI_Wait");
          if (k == 0) acc = in[r];
          else
            for (int i = 0; i < n; ++i) acc[i] = acc[i] + in[r][i];
        }
      } else {
        order[0] = 0;
        acc.assign(local.begin(), local.end());
        for (int k = 1; k < size_; ++k) {
          int idx = 0;
          check(MPI_Waitany(size_, reqs.data(), &idx, MPI_STATUS_IGNORE), "MPI_Waitany");
          order[k] = static_cast<uint32_t>(idx);
          for (int i = 0; i < n; ++i) acc[i] = acc[i] + in[idx][i];
        }
      }
      std::memcpy(out.data(), acc.data(), n * sizeof(float));
    } else {
      check(MPI_Send(local.data(), n, MPI_FLOAT, 0, 18, MPI_COMM_WORLD), "MPI_Send");
    }
    check(MPI_Bcast(out.data(), n, MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast");
    check(MPI_Bcast(order.data(), size_, MPI_UINT32_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
    call.order = order;
  } else {
    throw std::runtime_error("unknown allreduce variant " + std::string(variant));
  }
}

}  // namespace trainrr
