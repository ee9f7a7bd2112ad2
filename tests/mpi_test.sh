#!/usr/bin/env bash
# Data-parallel runs under mpirun (CTest: Mpi.*). Usage: mpi_test.sh TRAINRR SOURCE_DIR WORK_DIR WITH_MPI CASE
# Exit 77 (skipped) where trainrr was built without MPI or mpirun is not installed.
set -u
T=$1 SRC=$2 WORK=$3 WITH_MPI=$4 CASE=$5
if [ "$CASE" = absent ]; then
  # A trainrr built without MPI, started as if by mpirun (Open MPI's variables set): it says so and exits 3.
  if [ "$WITH_MPI" = 1 ]; then echo "skipped: this trainrr was built with MPI"; exit 77; fi
  out=$(OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 "$T" record "$SRC/examples/digits_mlp.toml" -o "$WORK/absent" 2>&1); rc=$?
  echo "$out"
  [ $rc = 3 ] && echo "$out" | grep -q "built without MPI" && [ ! -e "$WORK/absent" ] && { echo "all checks passed"; exit 0; }
  echo "FAIL: exit code $rc, expected 3 and a message saying trainrr was built without MPI, and no output"; exit 1
fi
if [ "$WITH_MPI" != 1 ]; then echo "skipped: trainrr was built without MPI (install libopenmpi-dev and rebuild)"; exit 77; fi
if ! command -v mpirun >/dev/null; then echo "skipped: mpirun is not installed (openmpi-bin)"; exit 77; fi
# As root Open MPI refuses to start without these; 4 ranks on 2 cores need oversubscription.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI keeps allocations until the process exits; under AddressSanitizer (scripts/test.sh) leak checks would
# report them as trainrr's. The rest of the suite checks trainrr's own leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# Loopback and shared memory only: no network interface is needed.
export OMPI_MCA_btl=self,vader
CONFIG=$SRC/examples/digits_mlp.toml
SMALL=(--set train.epochs=1 --set runtime.threads=1)
D=$WORK/$CASE
rm -rf "$D" && mkdir -p "$D" && cd "$D" || exit 2
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect CODE PATTERN -- COMMAND...: the exit code, and a line of the output (stdout and stderr) matching PATTERN.
expect() {
  local code=$1 pattern=$2; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  echo "\$ $*"; echo "$out" | grep -v '^\(-\{20,\}\|.*mpirun detected\|.*Primary job\|.*non-zero exit\|.*aborted\|.*Process name\|.*Exit code\|.*job to be terminated\|.*first process\|\s*$\)'
  [ "$rc" = "$code" ] || fail "exit code $rc, expected $code: $*"
  echo "$out" | grep -q -- "$pattern" || fail "no line matching '$pattern': $*"
}
record() {  # record N DIR ARGS...
  local n=$1 dir=$2; shift 2
  mpirun -n "$n" "$T" record "$CONFIG" -o "$dir" "${SMALL[@]}" "$@" > "$dir.log" 2>&1 || { cat "$dir.log"; fail "record -n $n $dir"; }
}

case $CASE in
tree)
  # A 4-rank trainrr_tree run replays bit for bit in one process, under mpirun -n 4 and -n 2; recorded on 2 and on
  # 1 rank it gives the same bits.
  record 4 t4 --set distributed.shards=4 --set runtime.policy=deterministic
  record 2 t2 --set distributed.shards=4 --set runtime.policy=deterministic
  record 1 t1 --set distributed.shards=4 --set runtime.policy=deterministic
  expect 0 "allreduce__trainrr_tree" -- "$T" show t4
  # Every parameter (64 x 64 + 64 + 64 x 10 + 10) in one bucket.
  expect 0 "; 1 bucket of 4810 elements$" -- "$T" show t4
  expect 0 "reproduced bit for bit: 4 ranks replayed in one process" -- "$T" replay t4
  expect 0 "reproduced bit for bit: 4 ranks replayed under mpirun" -- mpirun -n 4 "$T" replay t4
  expect 0 "reproduced bit for bit: 4 ranks replayed under mpirun -n 2, 2 per process" -- mpirun -n 2 "$T" replay t4
  # The recorded allreduce is named under mpirun as in one process.
  expect 0 "^  allreduce: allreduce__trainrr_tree, pairwise tree over 4 shards" -- "$T" replay t4
  expect 0 "^  allreduce: allreduce__trainrr_tree, pairwise tree over 4 shards" -- mpirun -n 2 "$T" replay t4
  expect 2 "or a count that divides 4" -- mpirun -n 3 "$T" replay t4
  # A replay whose schedule runs past the steps the traces hold compares those steps, as for one process.
  expect 0 "^  note: the traces stop first, after their [0-9]* steps: the replay's steps from step [0-9]* on are not compared" -- "$T" replay t4 --set train.epochs=2
  expect 0 "^reproduced bit for bit: 4 ranks replayed under mpirun -n 2" -- mpirun -n 2 "$T" replay t4 --set train.epochs=2
  # Processes that read different copies of the run (a folder per node, one cut short) are refused, not left
  # waiting for each other.
  mkdir -p nodeA nodeB && cp -r t4 nodeA/run.trr && cp -r t4 nodeB/run.trr && truncate -s 30000 nodeB/run.trr/rank2.trr
  expect 2 "process 2 reads another copy of run.trr than process 0: its rank2.trr is not process 0's (30000 bytes vs" -- \
    timeout 120 mpirun -n 2 --wdir "$PWD/nodeA" "$T" replay run.trr : -n 2 --wdir "$PWD/nodeB" "$T" replay run.trr
  expect 0 "reproduced despite the rank count (4 ranks in A, 2 in B)" -- "$T" diff t4 t2
  # Each run's epoch metrics are rank 0's shards': the log says so, and diff of two rank counts leaves them out.
  grep -q "loss: .* (loss and accuracy: rank 0's shards of each batch, of 4 ranks)" t4.log || fail "t4.log: the epoch line does not say whose rows it sums"
  # mpirun's output is a file: no progress bar is redrawn into it (a rank's own output is mpirun's terminal).
  grep -q $'\r' t4.log && fail "t4.log: the progress bar was drawn into mpirun's log file"
  expect 0 "note: each run's epoch metrics cover the rows of rank 0's shards, which differ with the rank count (4 ranks in A, 2 in B): they are not compared" -- "$T" diff t4 t2
  expect 0 "reproduced despite the rank count (4 ranks in A, 1 in B)" -- "$T" diff t4 t1
  # Ranks 2 and 3 on another instruction set (a cluster of mixed CPUs): the gradient of rank 2's shard differs
  # first, for the kernels it ran, which diff and a replay name, with the ranks' environments.
  if ! grep -q "isa generic" t4.log; then
    # Ranks 2 and 3 get TRAINRR_ISA from mpirun's second application context (-x).
    HET=(--set distributed.shards=4 --set runtime.policy=deterministic)
    mpirun -n 2 "$T" record "$CONFIG" -o het "${SMALL[@]}" "${HET[@]}" : \
      -n 2 -x TRAINRR_ISA=generic "$T" record "$CONFIG" -o het "${SMALL[@]}" "${HET[@]}" > het.log 2>&1 ||
      { cat het.log; fail "record het"; }
    expect 1 "cause: upstream of the allreduce: .*its gradient differs; the two ranks ran other kernels: .*f32_matmul__cpu_blocked_[a-z0-9]* vs f32_matmul__cpu_blocked_generic.*; their environments differ: .*isa [a-z0-9]* vs generic" -- "$T" diff t4 het
    expect 1 "cause: upstream of the allreduce: rank 2's gradient of shard 2 differs from the recording's; it ran other kernels than recorded: .*f32_matmul__cpu_blocked_[a-z0-9]* (recorded) vs f32_matmul__cpu_blocked_generic" -- \
      mpirun -n 2 "$T" replay t4 --force rng,split,shuffle,loader : -n 2 -x TRAINRR_ISA=generic "$T" replay t4 --force rng,split,shuffle,loader
    # Runs of other rank counts: each rank of the one with more is compared with the rank computing its shards.
    expect 1 "^  ranks 2, 3: isa: [a-z0-9]* (A) vs generic (B)$" -- "$T" diff t1 het
    expect 1 "^environment differences (by B's ranks, each against the rank of A that computes its shards):$" -- "$T" diff t1 het
    # With every choice forced, a recorded kernel that cannot run here is said to be why another ran.
    TRAINRR_ISA=generic expect 1 "vs f32_matmul__cpu_blocked_generic (the recorded kernels cannot run here: this machine's choice ran in their place)$" -- "$T" replay t4
    # Each rank's environment is compared with its own recording's, and with the other run's same rank: the
    # differences of ranks 2 and 3 alone are listed, with the ranks.
    expect 0 "^  ranks 2, 3: isa: generic (recorded) vs [a-z0-9]* (replayed)$" -- "$T" replay het
    # Under mpirun, rank 0 gathers every process's environment: ranks 2 and 3, replayed by other processes than
    # rank 0's, are compared too, one rank per process or two.
    expect 0 "^  ranks 2, 3: isa: generic (recorded) vs [a-z0-9]* (replayed)$" -- mpirun -n 4 "$T" replay het
    expect 0 "^  ranks 2, 3: isa: generic (recorded) vs [a-z0-9]* (replayed)$" -- mpirun -n 2 "$T" replay het
    # And each with the environment of the process that replayed it: ranks 2 and 3 on generic replay as recorded.
    expect 0 "reproduced bit for bit: 4 ranks replayed under mpirun" -- \
      mpirun -n 2 "$T" replay het : -n 2 -x TRAINRR_ISA=generic "$T" replay het
    mpirun -n 2 "$T" replay het : -n 2 -x TRAINRR_ISA=generic "$T" replay het 2>&1 | grep -q "isa:" &&
      fail "a replay whose ranks ran on the instruction sets they recorded lists an isa difference"
    expect 1 "^  ranks 2, 3: isa: [a-z0-9]* (A) vs generic (B)$" -- "$T" diff t4 het
  fi
  # Ranks started with other arguments (mpirun's MPMD form) would train two runs under one id, or wait for
  # each other in an allreduce they run two ways: refused before anything is written, the rank named.
  expect 2 "rank 1: its run differs from rank 0's (this rank: .*--set train.optimizer.learning_rate=0.5, -o mixed" -- \
    mpirun -n 1 "$T" record "$CONFIG" -o mixed "${SMALL[@]}" : -n 1 "$T" record "$CONFIG" -o mixed "${SMALL[@]}" \
    --set train.optimizer.learning_rate=0.5
  [ -e mixed ] && fail "a run refused for its ranks' arguments left its folder"
  # The same configuration on another copy of the data (one value changed): refused too, the data named.
  sed '2s/^0,/1,/' "$SRC/examples/data/digits.csv" > other.csv
  expect 2 "^trainrr: the ranks' data differs: rank 0 reads .*digits.csv ([0-9]* bytes, digest [0-9a-f]*); rank 1 reads .*other.csv (" -- \
    mpirun -n 1 "$T" record "$CONFIG" -o mixed "${SMALL[@]}" : -n 1 "$T" record "$CONFIG" -o mixed "${SMALL[@]}" \
    --set data.path="$D/other.csv"
  [ -e mixed ] && fail "a run refused for its ranks' data left its folder"
  # A rank that cannot set up its run (an instruction set it does not know) stops every rank before the first
  # allreduce, where the others waited for it: it says why, with its rank, and nothing is left.
  expect 2 "^trainrr: rank 1: TRAINRR_ISA: unknown instruction set 'bogus'" -- \
    timeout 120 mpirun -n 1 "$T" record "$CONFIG" -o mixed "${SMALL[@]}" : -n 1 -x TRAINRR_ISA=bogus "$T" record \
    "$CONFIG" -o mixed "${SMALL[@]}"
  [ -e mixed ] && fail "a run refused for a rank's setup left its folder"
  # distributed.shards left unset is one shard per rank: 4 here, as t4 sets it. The runs are the same.
  record 4 t4u --set runtime.policy=deterministic
  expect 0 "^identical: " -- "$T" diff t4 t4u
  ;;
collective)
  # Open MPI's own sum: 4 ranks vs 2 on the same 12 shards, and forced algorithm 3 vs 4.
  record 4 m4 --set distributed.shards=12 --set train.batch_size=48
  record 2 m2 --set distributed.shards=12 --set train.batch_size=48
  expect 1 "cause: collective: .*rank count 4 vs 2" -- "$T" diff m4 m2
  OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=3 \
    record 4 f3 --set distributed.shards=12 --set train.batch_size=48
  OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=4 \
    record 4 f4 --set distributed.shards=12 --set train.batch_size=48
  expect 1 "cause: collective: .*algorithm recursive_doubling vs ring" -- "$T" diff f3 f4
  # Replayed without the recorded MCA settings, Open MPI picks rabenseifner by its table; the sums are the same
  # bits, and the replay says which algorithm ran where the recording's did not.
  expect 0 "note: the recording's Open MPI ran recursive_doubling; this replay's, .* runs rabenseifner" -- \
    mpirun -n 4 "$T" replay f3
  # A rank that ran another instruction set: show of the folder says what of its environment differs.
  if grep -qw avx2 /proc/cpuinfo; then
    mpirun -n 1 "$T" record "$CONFIG" -o isa1 "${SMALL[@]}" : -n 1 -x TRAINRR_ISA=generic "$T" record "$CONFIG" \
      -o isa1 "${SMALL[@]}" > isa1.log 2>&1 || { cat isa1.log; fail "record isa1"; }
    expect 0 "its environment differs from rank 0's: .*isa generic (rank 0: " -- "$T" show isa1
  fi
  expect 0 "coll_tuned_allreduce_algorithm=4" -- "$T" show f4
  # One rank runs no allreduce algorithm (Open MPI's coll/self copies its buffer); a replay that asks for
  # another variant, with the kernels forced, is served the recorded one.
  record 1 m1 --set distributed.shards=12 --set train.batch_size=48
  expect 0 "allreduce: allreduce__mpi, none: one rank, whose buffer Open MPI's coll/self copies" -- "$T" show m1
  expect 0 "(distributed.allreduce: auto -> trainrr_exact), yet every step compared matched it: the forced choices (--force all) serve the recorded values in their place" -- "$T" replay m1 --set distributed.allreduce=trainrr_exact
  # The exact sum gives the same bits on 4 ranks and on 2, however the shards group.
  record 4 x4 --set distributed.shards=12 --set train.batch_size=48 --set distributed.allreduce=trainrr_exact
  record 2 x2 --set distributed.shards=12 --set train.batch_size=48 --set distributed.allreduce=trainrr_exact
  expect 0 "reproduced despite the rank count" -- "$T" diff x4 x2
  # Another seed draws other initial values before it shuffles other rows into each shard: the first draw is
  # named, as in a diff of one process's traces, with the configuration.
  record 2 s8 --set seed=8 --set distributed.shards=12 --set train.batch_size=48
  expect 1 "^diverged at step 0, init/dense_1.kernel (setup)$" -- "$T" diff m2 s8
  expect 1 "what: rng: draw at init/dense_1.kernel: stream init/dense_1.kernel key [0-9a-f]* counter 0 count 4096 (A)" -- "$T" diff m2 s8
  expect 1 "cause: config: the run configuration differs: seed: 7 -> 8" -- "$T" diff m2 s8
  # The allreduce variant reaches only the sum and what follows: beside another seed, the seed is the cause and
  # the variant is named in a note.
  record 2 s8v --set seed=8 --set distributed.shards=12 --set train.batch_size=48 --set distributed.allreduce=arrival
  expect 1 "cause: config: the run configuration differs: seed: 7 -> 8$" -- "$T" diff m2 s8v
  expect 1 "note: the configurations differ too (distributed.allreduce: mpi (auto) -> arrival), in nothing the first difference depends on" -- "$T" diff m2 s8v
  ;;
emulators)
  # Each emulated Open MPI algorithm against the real one, on the MLP's 4810-element gradient, 3 and 4 ranks:
  # the one-process replay applies the emulator to the recorded inputs and must give the recorded sums.
  for n in 3 4; do
    for alg in 1 3 4 6; do
      OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=$alg \
        record "$n" "e$n-$alg" --set distributed.shards=$n --set train.batch_size=$((n * 11))
      expect 0 "reproduced bit for bit: $n ranks replayed in one process" -- "$T" replay "e$n-$alg"
    done
  done
  # Algorithm 2 (reduce then broadcast) has its own reduce decision: not emulated, and the replay says where to go.
  OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=2 \
    record 3 e3-2 --set distributed.shards=3 --set train.batch_size=33
  expect 3 "replay it under mpirun -n 3" -- "$T" replay e3-2
  expect 1 "cause: collective: .*algorithm nonoverlapping vs ring" -- mpirun -n 3 "$T" replay e3-2
  OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=2 \
    expect 0 "reproduced bit for bit: 3 ranks replayed under mpirun" -- mpirun -n 3 "$T" replay e3-2
  # Without coll/tuned, Open MPI's decision table says nothing of the algorithm that ran: it is not known, not
  # inferred, and the one-process replay says how to replay it under mpirun.
  OMPI_MCA_coll=^tuned record 4 nt --set distributed.shards=4 --set train.batch_size=44
  expect 0 "allreduce: allreduce__mpi, not known: coll/tuned, whose decision table is known here, is not among the components allowed (coll = ^tuned)" -- "$T" show nt
  expect 3 "with the recorded settings (OMPI_MCA_coll=^tuned mpirun -n 4 trainrr replay nt)" -- "$T" replay nt
  OMPI_MCA_coll=^tuned expect 0 "reproduced bit for bit: 4 ranks replayed under mpirun" -- mpirun -n 4 "$T" replay nt
  # Nor where another component's priority puts it above coll/tuned: it runs the allreduce, and no arrival order
  # is blamed for what its own algorithm does.
  OMPI_MCA_coll_basic_priority=100 record 4 bp --set distributed.shards=4 --set train.batch_size=44
  expect 0 "allreduce: allreduce__mpi, not known: coll/basic's priority (100) is above coll/tuned's (30)" -- "$T" show bp
  expect 3 "(OMPI_MCA_coll_basic_priority=100 mpirun -n 4 trainrr replay bp)" -- "$T" replay bp
  # A component that declines the communicator runs nothing: coll/han, within one node, leaves coll/tuned its
  # table.
  OMPI_MCA_coll_han_priority=35 record 4 hp --set distributed.shards=4 --set train.batch_size=44
  expect 0 "allreduce: allreduce__mpi, rabenseifner (inferred from Open MPI 4.1's decision table)" -- "$T" show hp
  expect 0 "reproduced bit for bit: 4 ranks replayed in one process" -- "$T" replay hp
  OMPI_MCA_coll_basic_priority=100 expect 0 "reproduced bit for bit: 4 ranks replayed under mpirun" -- mpirun -n 4 "$T" replay bp
  # Past 7 ranks the table goes on: 9 ranks and the MLP's 19240-byte gradient run rabenseifner, which the
  # one-process replay emulates.
  record 9 r9 --set distributed.shards=9 --set train.batch_size=99
  expect 0 "allreduce: allreduce__mpi, rabenseifner (inferred from Open MPI 4.1's decision table)" -- "$T" show r9
  expect 0 "reproduced bit for bit: 9 ranks replayed in one process" -- "$T" replay r9
  ;;
arrival)
  # Partial sums added in arrival order: each recording replays bit for bit with its order forced; the race
  # shows as `collective` (arrival order) between two recordings or in a free replay.
  record 4 v1 --set distributed.allreduce=arrival
  record 4 v2 --set distributed.allreduce=arrival
  expect 0 "reproduced bit for bit" -- "$T" replay v1
  expect 0 "reproduced bit for bit" -- "$T" replay v2
  shown=0
  for cmd in "diff v1 v2" "replay v1 --force rng,split,shuffle,loader" "replay v2 --force rng,split,shuffle,loader"; do
    out=$("$T" $cmd 2>&1); rc=$?
    echo "\$ trainrr $cmd"; echo "$out"
    case $rc in
      0) ;;
      1) echo "$out" | grep -q "cause: collective: .*arrival order" || fail "$cmd: diverged without naming the arrival order"
         shown=1 ;;
      *) fail "$cmd: exit code $rc" ;;
    esac
  done
  [ $shown = 1 ] || fail "the arrival race did not show in 2 recordings and 2 free replays of 45 steps"
  # bisect names the rank and the allreduce call whose order must be forced: a race decides it, so it is always
  # forced, even where a free replay happens to match it.
  out=$("$T" bisect v1 2>&1); rc=$?
  echo "\$ trainrr bisect v1"; echo "$out"
  case $rc in
    1) echo "$out" | grep -q "rank 0: kernel:allreduce/bucket_0 (the arrival order" || fail "bisect v1: rank 0's order not named"
       echo "$out" | grep -q "kernel:grad/allreduce" && fail "bisect v1: the variant, which no race decides, named as needed" ;;
    *) fail "bisect v1: exit code $rc" ;;
  esac
  ;;
bisect)
  # A first-ready loader on rank 0 decides every rank's batch (broadcast): every rank's loader is racy, always
  # forced, and the answer is the same on every run and true: the command it implies reproduces the run.
  mpirun -n 2 "$T" record "$CONFIG" -o r2 --set train.epochs=2 --set runtime.threads=2 > r2.log 2>&1 || { cat r2.log; fail "record r2"; }
  expect 0 "data/loader op=loader -> loader__first_ready" -- "$T" dump r2/rank0.trr
  first=
  for i in 1 2 3 4; do
    out=$("$T" bisect r2 2>&1); rc=$?
    echo "\$ trainrr bisect r2"; echo "$out"
    [ $rc = 1 ] || fail "bisect r2: exit code $rc, expected 1 (the racy loaders are always forced)"
    echo "$out" | grep -q "nothing to force$" && fail "bisect r2: nothing to force, with a first-ready loader"
    echo "$out" | grep -q "^  rank 0: loader (racy: always forced)$" || fail "bisect r2: rank 0's loader not named racy"
    echo "$out" | grep -q "^  rank 1: loader (racy: always forced)$" || fail "bisect r2: rank 1's loader not named racy"
    echo "$out" | grep -q "does not reproduce" && fail "bisect r2: its set does not reproduce"
    echo "$out" | grep -q "through step 89, the last recorded" || fail "bisect r2: not checked through the last step"
    [ -z "$first" ] && first=$out
    [ "$out" = "$first" ] || fail "bisect r2: another answer than the first run's"
  done
  expect 0 "reproduced bit for bit: 2 ranks replayed in one process" -- "$T" replay r2 --force loader
  # Recorded with 1 thread, bisected with 2: bisect's own --set gives rank 0 a first-ready loader, whose race
  # decides every rank's batch. Those loaders are always forced, whether the free replay happens to match them
  # or not, and nothing else is named.
  record 4 p4
  for i in 1 2 3; do
    out=$("$T" bisect p4 --set runtime.threads=2 2>&1); rc=$?
    echo "\$ trainrr bisect p4 --set runtime.threads=2"; echo "$out"
    [ $rc = 1 ] || fail "bisect p4 --set runtime.threads=2: exit code $rc, expected 1 (the loaders it makes racy are forced)"
    for r in 0 1 2 3; do
      echo "$out" | grep -q "^  rank $r: loader (racy: always forced)$" || fail "bisect p4 (threads=2): rank $r's loader not forced"
    done
    echo "$out" | grep '^  rank [0-3]: ' | grep -v ': loader (racy: always forced)$' && fail "bisect p4 (threads=2): named more than the loaders"
    echo "$out" | grep -q "note: with this --set the replay decides by a race choices the recording did not" ||
      fail "bisect p4 (threads=2): no note on the race its --set makes"
  done
  ;;
bad_input)
  record 4 b4
  record 4 o4
  expect 2 "replay needs every rank; give the run's folder" -- "$T" replay b4/rank1.trr
  expect 2 "diff needs every rank" -- "$T" diff b4/rank0.trr o4/rank0.trr
  mkdir missing && cp b4/rank0.trr b4/rank1.trr b4/rank2.trr missing/
  expect 2 "rank 3 of the 4-rank run .* is missing" -- "$T" replay missing
  mkdir damaged && cp b4/*.trr damaged/
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//3]^=0xff; open(p,'wb').write(b)" damaged/rank2.trr
  # Compared up to the damage, as one trace is: the first line says damaged, and the command exits 2.
  expect 2 "^damaged: rank 2 (damaged/rank2.trr) was changed after it was written: reading stopped at byte" -- "$T" replay damaged
  expect 2 "rank 2 (damaged/rank2.trr) was changed after it was written: .*(damaged: compared up to there)$" -- "$T" replay damaged
  expect 2 "^damaged: rank 2 (damaged/rank2.trr) was changed after it was written: reading stopped at byte" -- mpirun -n 4 "$T" replay damaged
  expect 2 "^damaged: rank 2 (damaged/rank2.trr) was changed after it was written: .*reproduces bit for bit through step [0-9]*, the last every rank's trace holds" -- "$T" bisect damaged
  # A replay asked to stop before the damage says the trace is damaged, and what it compared.
  expect 2 "^damaged: rank 2 (damaged/rank2.trr) was changed after it was written: .*; the steps before --to-step 2 reproduced bit for bit: 4 ranks replayed in one process (no mpirun), 2 steps" -- "$T" replay damaged --to-step 2
  for cmd in "show damaged" "replay damaged" "bisect damaged"; do
    out=$("$T" $cmd 2>&1)
    echo "$out" | grep -q "damaged.*) (.*damaged" && fail "$cmd: the damage said twice: $out"
  done
  # A last global batch of 3 rows over 4 ranks leaves rank 3's shard empty: it has no loss to show.
  mpirun -n 4 "$T" record "$SRC/examples/breast_cancer.toml" -o z4 --set train.epochs=1 --set train.batch_size=4 \
    --set runtime.threads=1 > z4.log 2>&1 || { cat z4.log; fail "record z4"; }
  expect 0 "rank 3: 114 steps, 114 allreduce calls, no last loss (its shards held no rows in the last step)" -- "$T" show z4
  expect 0 "rank 2: 114 steps, 114 allreduce calls, last loss [0-9.e-]* (its shards)" -- "$T" show z4
  # Damage after the last step (in rank 3's final checkpoint, 2000 bytes before its end): every step is compared.
  mkdir late && cp b4/*.trr late/
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)-2000]^=0x01; open(p,'wb').write(b)" late/rank3.trr
  steps=$("$T" show b4 | grep -o "rank 0: [0-9]* steps" | grep -o "[0-9]* steps")
  expect 2 "^damaged: rank 3 (late/rank3.trr) was changed after it was written: .*reproduced bit for bit: 4 ranks replayed in one process (no mpirun), $steps" -- "$T" replay late
  expect 2 "^damaged: rank 3 (late/rank3.trr) was changed after it was written: .*reproduced bit for bit: 4 ranks replayed under mpirun" -- mpirun -n 4 "$T" replay late
  expect 2 "^damaged: rank 3 (late/rank3.trr) was changed after it was written: .*a free replay of the 4 ranks reproduces bit for bit" -- "$T" bisect late
  # Bytes after a rank trace's footer: show's line for that rank says damaged, as for other damage.
  mkdir tail && cp b4/*.trr tail/ && printf 'garbage-garbage-garbage' >> tail/rank2.trr
  expect 2 "^  rank 2: .*, damaged: tail/rank2.trr: byte [0-9]*: 23 bytes follow the footer" -- "$T" show tail
  # A rank trace cut inside its first bytes, before its magic: a cut trace, as one process's trace is called.
  mkdir cut && cp b4/*.trr cut/ && truncate -s 10 cut/rank2.trr
  expect 2 "cut/rank2.trr: truncated inside its header: .*the file holds 10 " -- "$T" replay cut
  expect 2 "cut/rank2.trr: truncated inside its header: .*the file holds 10 " -- "$T" show cut
  mkdir mixed && cp b4/rank0.trr b4/rank1.trr b4/rank2.trr mixed/ && cp o4/rank3.trr mixed/
  expect 2 "a set mixed from 2 runs: rank3.trr is of run [0-9a-f]*; rank0.trr, rank1.trr, rank2.trr are of run" -- "$T" show mixed
  expect 2 "does not divide into 3 equal shards" -- mpirun -n 3 "$T" record "$CONFIG" -o b3 "${SMALL[@]}"
  expect 2 "a data-parallel run records at level step" -- mpirun -n 2 "$T" record "$CONFIG" -o bl "${SMALL[@]}" --level op
  expect 2 "diff needs every rank" -- "$T" diff b4 b4/rank0.trr
  # A path that is no trace is said to be that, not a trace of one process.
  expect 2 "nothing.trr: cannot open" -- "$T" diff b4 nothing.trr
  expect 2 "--json, --from-step are not available for a data-parallel run (b4) yet (--json: a run's report is text; --from-step: a run replays from step 0)" -- "$T" replay b4 --json --from-step 3
  mkdir busy && touch busy/notes.txt
  expect 2 "busy holds notes.txt, which is not a rank trace" -- mpirun -n 2 "$T" record "$CONFIG" -o busy "${SMALL[@]}"
  expect 2 "train does not run data-parallel" -- mpirun -n 2 "$T" train "$CONFIG" "${SMALL[@]}"
  # The verbs that read traces once are refused under mpirun with several processes, which would each run them.
  for verb in "show b4" "dump b4/rank0.trr" "diff b4 o4" "bisect b4" "export b4/rank0.trr --step 0 -o ex"; do
    expect 2 "${verb%% *} does not run under mpirun: each of the 2 processes would run it whole" -- mpirun -n 2 "$T" $verb
  done
  [ -e ex ] && fail "an export under mpirun wrote ex"
  # So is the replay of one process's recording, which each process would replay whole; a run's folder is
  # replayed rank by rank.
  "$T" record "$CONFIG" -o one.trr "${SMALL[@]}" > one.log 2>&1 || fail "record one.trr"
  expect 2 "one.trr is the recording of one process, not of a data-parallel run: under mpirun each of the 2 processes would replay it whole; run .trainrr replay. once, without mpirun" -- mpirun -n 2 "$T" replay one.trr --html one.html
  [ -e one.html ] && fail "a replay of one process's recording under mpirun wrote its report"
  # A range past the run's end is replayed to the end, with a note.
  expect 0 "note: --to-step 1000 is past the run's end: it has steps 0..[0-9]*, replayed to the last" -- "$T" replay b4 --to-step 1000
  ;;
mca)
  # Ranks whose Open MPI reads other allreduce settings (an MCA parameter given to some ranks alone) would run
  # other algorithms in one allreduce, and hang or corrupt its sums: refused before the first allreduce, exit
  # 2, each setting that differs named once with every rank's value (the forced algorithm too, where some ranks
  # read no dynamic rules: setting those alike alone would leave it to differ); nothing is written, an earlier
  # run kept.
  record 2 e4
  before=$(md5sum e4/*.trr)
  for alg in 1 3 4; do
    expect 2 "^trainrr: the ranks' allreduce settings differ (Open MPI's MCA parameters, as each rank reads them): coll_tuned_use_dynamic_rules: true on ranks 0, 1, false on ranks 2, 3; coll_tuned_allreduce_algorithm: $alg on ranks 0, 1, 0 on ranks 2, 3 (read only with dynamic rules): every rank of a run must run its allreduce the same way.*; nothing was recorded, nothing written (e4 holds the earlier run, as it was)$" -- \
      timeout 120 mpirun -n 2 -x OMPI_MCA_coll_tuned_use_dynamic_rules=1 -x OMPI_MCA_coll_tuned_allreduce_algorithm=$alg \
      "$T" record "$CONFIG" -o e4 "${SMALL[@]}" : -n 2 "$T" record "$CONFIG" -o e4 "${SMALL[@]}"
  done
  [ "$(md5sum e4/*.trr)" = "$before" ] || fail "a run refused for its ranks' allreduce settings changed the earlier run"
  [ "$(ls -A e4 | wc -l)" = 2 ] || fail "a run refused for its ranks' allreduce settings left files: $(ls -A e4)"
  # One setting on one rank, in a new folder: said once, by rank 0; no folder is made.
  out=$(timeout 120 mpirun -n 2 -x OMPI_MCA_coll_tuned_use_dynamic_rules=1 "$T" record "$CONFIG" -o fresh "${SMALL[@]}" : \
    -n 1 -x OMPI_MCA_coll_tuned_use_dynamic_rules=1 -x OMPI_MCA_coll_tuned_allreduce_algorithm_segmentsize=4096 \
    "$T" record "$CONFIG" -o fresh "${SMALL[@]}" 2>&1); rc=$?
  echo "$out"
  [ $rc = 2 ] || fail "exit code $rc, expected 2, for ranks with another segment size"
  [ "$(echo "$out" | grep -c "allreduce settings differ")" = 1 ] || fail "the settings that differ are not said once"
  echo "$out" | grep -q "coll_tuned_allreduce_algorithm_segmentsize: 0 on ranks 0, 1, 4096 on rank 2: every rank of a run .*; nothing was recorded, nothing written$" ||
    fail "the segment size that differs is not named with its ranks"
  [ -e fresh ] && fail "a run refused for its ranks' allreduce settings left its folder"
  # Without dynamic rules Open MPI reads no segment size: ranks that differ only there run alike, and record.
  expect 0 "^run: unused, 4 rank traces" -- timeout 120 mpirun -n 2 "$T" record "$CONFIG" -o unused "${SMALL[@]}" : \
    -n 2 -x OMPI_MCA_coll_tuned_allreduce_algorithm_segmentsize=4096 "$T" record "$CONFIG" -o unused "${SMALL[@]}"
  # The same settings on every rank record as before, the run's MCA those of each rank.
  expect 0 "^run: same, 2 rank traces" -- timeout 120 mpirun -n 2 -x OMPI_MCA_coll_tuned_use_dynamic_rules=1 \
    -x OMPI_MCA_coll_tuned_allreduce_algorithm=4 "$T" record "$CONFIG" -o same "${SMALL[@]}"
  expect 0 "^MCA: coll_tuned_use_dynamic_rules=true coll_tuned_allreduce_algorithm=4 " -- "$T" show same
  ;;
leftovers)
  # A recording killed over an earlier run leaves each rank's new trace beside the earlier one
  # (.trainrr-PID-N.trr.part), every one named when the run starts. A later run into the folder goes ahead,
  # names them as the killed recording's (each with its rank) and leaves them as they are.
  record 2 kk
  mpirun -n 2 "$T" record "$CONFIG" -o kk --set train.epochs=400 --set runtime.threads=1 > kk2.log 2>&1 &
  launcher=$!
  parts() { find kk -maxdepth 1 -name '.trainrr-*.trr.part' | sort; }
  for _ in $(seq 1 100); do
    [ "$(parts | wc -l)" = 2 ] && [ "$(parts | xargs stat -c %s | sort -n | head -n 1)" -gt 60000 ] && break; sleep 0.1
  done
  victim=$(pgrep -f -- "record $CONFIG -o kk " | while read -r p; do
    [ "$(ps -o comm= -p "$p")" = trainrr ] && echo "$p"; done | tail -n 1)
  [ -n "$victim" ] || fail "no rank process found to kill"
  kill -9 "$victim"
  wait "$launcher"
  # mpirun may return before the other rank, stopped by its signal, is gone.
  for _ in $(seq 1 100); do pgrep -f -- "record $CONFIG -o kk " > /dev/null || break; sleep 0.1; done
  cat kk2.log
  [ "$(parts | wc -l)" = 2 ] || fail "the killed recording left $(parts | wc -l) new traces, expected 2"
  for r in 0 1; do
    grep -q "^kk/rank$r.trr holds an earlier trace: the new one replaces it when this run ends; until then it is \.trainrr-[0-9]*-0\.trr\.part beside it$" kk2.log ||
      fail "the log does not name rank $r's new trace"
  done
  for p in $(parts); do
    grep -q "until then it is $(basename "$p") beside it" kk2.log || fail "the log does not name $(basename "$p")"
  done
  sums=$(parts | xargs md5sum)
  # Each verb that reads the folder names the killed recording's traces beside the earlier run it reports on,
  # and says how the killed run is read.
  killed="note: kk also holds the rank traces of a recording killed there (run [0-9a-f]* of 2 ranks): \.trainrr-[0-9]*-0\.trr\.part (rank [01], [1-9][0-9]* steps), \.trainrr-[0-9]*-0\.trr\.part (rank [01], [1-9][0-9]* steps)"
  earlier="the folder's rank0.trr .. rank1.trr are another run ([0-9a-f]*), the one reported here\. \`trainrr show FILE\` reads each; copied into a folder of their own as rank0.trr .. rank1.trr (by their ranks), they replay as a run$"
  expect 0 "^$killed; $earlier" -- "$T" show kk
  expect 0 "^  $killed; $earlier" -- "$T" replay kk
  expect 0 "^  $killed; $earlier" -- mpirun -n 2 "$T" replay kk
  expect 0 "^  $killed; $earlier" -- "$T" diff kk kk
  expect 0 "^  $killed; $earlier" -- "$T" bisect kk
  # As the note says: copied as its ranks' traces, the killed run replays, as far as every rank's trace goes.
  mkdir killed && for p in $(parts); do
    r=$("$T" show "$p" | sed -n 's/^rank \([0-9]*\) of the .*/\1/p'); cp "$p" "killed/rank$r.trr"; done
  expect 0 "^truncated: rank [01] (killed/rank[01].trr) .*; the steps before --to-step 3 reproduced bit for bit: 2 ranks" -- \
    "$T" replay killed --to-step 3
  expect 0 "^note: kk holds \.trainrr-[0-9]*-0\.trr\.part (rank [01]), \.trainrr-[0-9]*-0\.trr\.part (rank [01]): the rank traces of a recording killed over an earlier run, holding the steps it completed" -- \
    mpirun -n 2 "$T" record "$CONFIG" -o kk "${SMALL[@]}"
  [ "$(parts | xargs md5sum)" = "$sums" ] || fail "the killed recording's traces were changed"
  expect 0 "rank 1: [1-9][0-9]* steps" -- "$T" show kk
  # The run recorded since is the folder's now, another run than the killed recording's.
  expect 0 "^$killed; the folder's rank0.trr .. rank1.trr are another run ([0-9a-f]*), the one reported here\." -- "$T" show kk
  for p in $(parts); do
    expect 0 "complete steps readable" -- "$T" show "$p"
    expect 0 "^rank [01] of the 2-rank run [0-9a-f]* (a recording's rank trace, renamed rank[01].trr only if its run ends; a killed recording's keeps this name; replay, diff and bisect take a folder of the run's rank traces)$" -- "$T" show "$p"
  done
  # A new trace that a live recording writes still keeps another run out of the folder.
  mpirun -n 2 "$T" record "$CONFIG" -o kk --set train.epochs=400 --set runtime.threads=1 > kk3.log 2>&1 &
  launcher=$!
  for _ in $(seq 1 100); do [ "$(parts | wc -l)" = 4 ] && break; sleep 0.1; done
  expect 2 "which is not a rank trace" -- mpirun -n 2 "$T" record "$CONFIG" -o kk "${SMALL[@]}"
  kill -INT $(pgrep -P "$launcher")
  wait "$launcher"
  [ "$(parts | xargs md5sum)" = "$sums" ] || fail "the killed recording's traces were changed"
  ;;
killed)
  # A rank killed during the recording: every rank's completed steps stay readable.
  mpirun -n 2 "$T" record "$CONFIG" -o k2 --set train.epochs=400 --set runtime.threads=1 > k2.log 2>&1 &
  launcher=$!
  for _ in $(seq 1 100); do [ -s k2/rank1.trr ] && [ "$(stat -c %s k2/rank1.trr)" -gt 60000 ] && break; sleep 0.1; done
  victim=$(pgrep -f -- "record $CONFIG -o k2 " | while read -r p; do
    [ "$(ps -o comm= -p "$p")" = trainrr ] && echo "$p"; done | tail -n 1)
  [ -n "$victim" ] || fail "no rank process found to kill"
  echo "killing rank process $victim"
  kill -9 "$victim"
  wait "$launcher"
  echo "mpirun exit code: $?"
  for r in 0 1; do
    expect 0 "complete steps readable" -- "$T" show "k2/rank$r.trr"
  done
  expect 0 "rank 1: [1-9][0-9]* steps" -- "$T" show k2
  # The run replays as far as every rank's trace goes, and says which trace was cut.
  expect 0 "^truncated: rank [01] (k2/rank[01].trr) .*; the steps every rank's trace holds reproduced bit for bit: 2 ranks" -- "$T" replay k2
  expect 0 "no footer (the recording was cut)" -- "$T" replay k2
  # Under mpirun too: each rank stops at the last step every trace holds, and none runs past its trace's end.
  expect 0 "^truncated: rank [01] (k2/rank[01].trr) .*; the steps every rank's trace holds reproduced bit for bit: 2 ranks replayed under mpirun" -- mpirun -n 2 "$T" replay k2
  ;;
interrupted)
  # A run stopped by SIGINT: every rank's footer says it stopped early. Replay and bisect compare what the
  # traces hold and stop where the recording stopped, as a replay of one process does; show says it stopped early.
  mpirun -n 2 "$T" record "$CONFIG" -o i2 --set train.epochs=1000 --set runtime.threads=1 > i2.log 2>&1 &
  launcher=$!
  for _ in $(seq 1 100); do [ -s i2/rank1.trr ] && [ "$(stat -c %s i2/rank1.trr)" -gt 60000 ] && break; sleep 0.1; done
  kill -INT $(pgrep -P "$launcher")
  wait "$launcher"
  echo "mpirun exit code: $?"
  expect 0 "rank 1: .*ended cleanly: the run stopped early (interrupted at step" -- "$T" show i2
  expect 0 "^reproduced bit for bit: 2 ranks replayed in one process" -- "$T" replay i2
  expect 0 "note: the recording stopped early (rank 0's footer: interrupted at step" -- "$T" replay i2
  expect 0 "^reproduced bit for bit: 2 ranks replayed under mpirun" -- mpirun -n 2 "$T" replay i2
  expect 0 "reproduces bit for bit" -- "$T" bisect i2
  # Ctrl-C in a terminal reaches mpirun alone (each rank has a process group of its own): mpirun sends the
  # ranks SIGTERM and stops reading their output. Every rank still finishes its trace at one step.
  mpirun -n 2 "$T" record "$CONFIG" -o m2 --set train.epochs=1000 --set runtime.threads=1 > m2.log 2>&1 &
  launcher=$!
  for _ in $(seq 1 100); do [ -s m2/rank1.trr ] && [ "$(stat -c %s m2/rank1.trr)" -gt 60000 ] && break; sleep 0.1; done
  kill -INT "$launcher"
  wait "$launcher"
  echo "mpirun exit code: $?"
  for r in 0 1; do
    expect 0 "rank $r: .*ended cleanly: the run stopped early (interrupted at step" -- "$T" show m2
  done
  expect 0 "^reproduced bit for bit: 2 ranks replayed in one process" -- "$T" replay m2
  # Two recordings of one run, each stopped: the one that stopped first is not all of its run, and diff says
  # so (truncated), not "identical" (unless both stopped after the same step).
  if [ "$("$T" show i2 | grep -o 'interrupted at step [0-9]*' | head -n 1)" != "$("$T" show m2 | grep -o 'interrupted at step [0-9]*' | head -n 1)" ]; then
    expect 0 "^truncated: the recording of [AB] (.*) ends after step [0-9]*: it was stopped (rank [01]'s footer: interrupted at step [0-9]*) before its run's end; the steps both hold are identical: " -- "$T" diff i2 m2
  fi
  # SIGTERM to one rank alone: every rank stops at one step, and exits with SIGTERM's code (143), the rank it
  # did not reach too.
  mpirun -n 2 "$T" record "$CONFIG" -o t2 --set train.epochs=1000 --set runtime.threads=1 > t2.log 2>&1 &
  launcher=$!
  for _ in $(seq 1 100); do [ -s t2/rank1.trr ] && [ "$(stat -c %s t2/rank1.trr)" -gt 60000 ] && break; sleep 0.1; done
  kill -TERM "$(pgrep -P "$launcher" | head -n 1)"
  wait "$launcher"
  code=$?
  echo "mpirun exit code: $code"
  [ "$code" = 143 ] || fail "SIGTERM to one rank: mpirun exit code $code, expected 143"
  grep -q "Exit code: *130" t2.log && fail "SIGTERM to one rank: a rank exited 130 (SIGINT's code): $(cat t2.log)"
  ;;
answers)
  # What replay, diff, bisect and show say of a run, as they say it of one process's trace.
  record 4 m4
  first_line() { "$@" 2>/dev/null | head -n 1; }
  # A rank trace without a complete step has nothing to compare: refused, naming the rank's file.
  # Cut inside the initial checkpoint, which follows the header (whose size depends on the paths it holds).
  at=$("$T" dump m4/rank1.trr | grep -o 'offset=[0-9]*' | head -n 1 | cut -d= -f2)
  mkdir cut && cp m4/*.trr cut/ && head -c $((at + 24)) m4/rank1.trr > cut/rank1.trr
  expect 2 "rank 1: cut/rank1.trr: the trace holds no complete step" -- "$T" replay cut
  expect 2 "rank 1: cut/rank1.trr: the trace holds no complete step" -- "$T" bisect cut
  expect 2 "rank 1: cut/rank1.trr: the trace holds no complete step" -- mpirun -n 4 "$T" replay cut
  # Cut after some steps: the first line says truncated, with the rank, the byte and the last step.
  mkdir half && cp m4/*.trr half/ && head -c $(( $(stat -c %s m4/rank1.trr) / 3 )) m4/rank1.trr > half/rank1.trr
  [ "$(first_line "$T" replay half | grep -c '^truncated: rank 1 (half/rank1.trr) is cut short at byte')" = 1 ] ||
    fail "replay half: the first line does not say truncated"
  [ "$(first_line "$T" diff m4 half | grep -c '^truncated: B rank 1 (half/rank1.trr) is cut short')" = 1 ] ||
    fail "diff m4 half: the first line does not say truncated"
  expect 0 "note: A holds [0-9]* complete steps, B [0-9]*" -- "$T" diff m4 half
  # Under mpirun, each rank replaying its own trace: the same answer, no rank past the cut called diverged.
  expect 0 "^truncated: rank 1 (half/rank1.trr) is cut short at byte [0-9]*, after step [0-9]* .*; the steps every rank's trace holds reproduced bit for bit: 4 ranks replayed under mpirun" -- mpirun -n 4 "$T" replay half
  # bisect says so too, and how far it compared.
  expect 0 "^truncated: rank 1 (half/rank1.trr) is cut short at byte [0-9]*, after step [0-9]* .*; a free replay of the 4 ranks reproduces bit for bit through step [0-9]*, the last every rank's trace holds" -- "$T" bisect half
  # Damaged: diff's first line and show of the folder say so, and both exit 2.
  mkdir dmg && cp m4/*.trr dmg/
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//3]^=0xff; open(p,'wb').write(b)" dmg/rank1.trr
  expect 2 "damaged" -- "$T" diff m4 dmg
  [ "$(first_line "$T" diff m4 dmg | grep -c '^damaged: B rank 1 (dmg/rank1.trr) was changed after it was written')" = 1 ] ||
    fail "diff m4 dmg: the first line does not say damaged"
  expect 2 "rank 1: .*damaged: .*changed after it was written" -- "$T" show dmg
  # A damaged rank beside a cut one: the cut, which ends what every rank's trace holds first, is said too.
  # Rank 3 cut among its last steps, 2000 bytes before its final checkpoint; rank 1 damaged in its final
  # checkpoint.
  offsets=$("$T" dump m4/rank3.trr | grep -o 'offset=[0-9]*' | cut -d= -f2 | head -n 2 | paste -sd' ')
  read -r _ final <<< "$offsets"
  mkdir dmgcut && cp m4/*.trr dmgcut/ && head -c $(( final - 2000 )) m4/rank3.trr > dmgcut/rank3.trr
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)*4//5]^=0xff; open(p,'wb').write(b)" dmgcut/rank1.trr
  expect 2 "^  truncated: rank 3 (dmgcut/rank3.trr) is cut short at byte [0-9]*, after step [0-9]*.*: every rank is compared through the last step all traces hold" -- "$T" replay dmgcut
  expect 2 "^  truncated: rank 3 (dmgcut/rank3.trr) is cut short at byte [0-9]*, after step [0-9]*.*: every rank is compared through the last step all traces hold" -- "$T" bisect dmgcut
  expect 2 "^  truncated: A rank 3 (dmgcut/rank3.trr) is cut short at byte [0-9]*, after step [0-9]*.*: the steps every trace holds end there" -- "$T" diff dmgcut m4
  # Runs whose policies picked other allreduce variants, every result the same bits: identical, and said so.
  record 2 vt --set distributed.shards=4 --set runtime.policy=deterministic
  record 2 vm --set distributed.shards=4
  expect 0 "^  note: the allreduce differs (allreduce__trainrr_tree (A) vs allreduce__mpi (B)), yet every allreduce result is the same bits" -- "$T" diff vt vm
  # Under TRAINRR_ISA, OpenBLAS is kept within it as for one process (where train restarts it here).
  if TRAINRR_ISA=generic "$T" train "$CONFIG" "${SMALL[@]}" 2>&1 | grep -q "the best within TRAINRR_ISA=generic, restarted"; then
    expect 1 "note: OpenBLAS runs its .* code, the best within TRAINRR_ISA=generic, restarted" -- env TRAINRR_ISA=generic "$T" replay m4 --force none
  fi
  # Each rank's trace records the metrics of its own shards, and show says whose they are.
  expect 0 "^final metrics (epoch 1, rank 2's shards):" -- "$T" show m4/rank2.trr
  # Ranks recorded with other thread counts are replayed in one process with their own: no difference in threads
  # is listed where there is none.
  mpirun -n 2 "$T" record "$CONFIG" -o th --set train.epochs=1 --set runtime.threads=1 : \
    -n 2 "$T" record "$CONFIG" -o th --set train.epochs=1 --set runtime.threads=2 > th.log 2>&1 || { cat th.log; fail "record th"; }
  expect 0 "reproduced bit for bit: 4 ranks replayed in one process" -- "$T" replay th --force none
  out=$("$T" replay th --force none 2>&1); echo "$out" | grep -q "threads: 2 (recorded) vs 1 (replayed)" &&
    fail "replay th lists a difference in threads its ranks replayed without: $out"
  out=$(mpirun -n 2 "$T" replay th --force none 2>&1); echo "$out" | grep -q "threads: 2 (recorded) vs 1 (replayed)" &&
    fail "mpirun -n 2 replay th lists a difference in threads its ranks replayed without: $out"
  # Data embedded in every rank's trace: each rank unpacks its own copy.
  record 2 emb --embed-data
  expect 0 "reproduced bit for bit: 2 ranks replayed in one process" -- "$T" replay emb
  expect 0 "reproduced bit for bit: 2 ranks replayed under mpirun -n 1" -- mpirun -n 1 "$T" replay emb
  # A data file that differs between two runs is the cause, as in a diff of one process's traces.
  cp -r "$SRC/examples/data" data && cp "$CONFIG" mlp.toml
  mpirun -n 2 "$T" record mlp.toml -o d1 "${SMALL[@]}" > d1.log 2>&1 || { cat d1.log; fail "record d1"; }
  python3 - data/digits.csv <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().split("\n")
f = lines[1].split(",")
f[3] = "3" if f[3] != "3" else "4"
lines[1] = ",".join(f)
open(p, "w").write("\n".join(lines))
PY
  mpirun -n 2 "$T" record mlp.toml -o d2 "${SMALL[@]}" > d2.log 2>&1 || { cat d2.log; fail "record d2"; }
  expect 1 "cause: data: data file 'digits.csv' differs" -- "$T" diff d1 d2
  # A run replays on its recorded data only: the message says so, and suggests no option a run refuses.
  expect 2 "a data-parallel run replays only on the data its traces record" -- "$T" replay d1
  out=$("$T" replay d1 2>&1); echo "$out" | grep -q -- "--allow-data-change" && fail "replay d1 suggests --allow-data-change"
  expect 2 "--allow-data-change: a run replays on the data its traces record" -- "$T" replay d1 --allow-data-change
  # A changed row the runs only validate on (the file's last, with no test split): every step matches, the
  # metrics of the first epoch's evaluation do not, and the cause says the evaluation read what differs.
  python3 - "$SRC/examples/data/breast_cancer.csv" <<'PY'
import sys
t = open(sys.argv[1]).read()
last = t.rfind("\n", 0, len(t) - 2) + 1
open("last_row.csv", "w").write(t[:last] + "99.5" + t[t.find(",", last):])
PY
  printf 'seed = 3\n[data]\npath = "%s"\nlabel = "benign"\nscale = "standardize"\n[[model.layers]]\ntype = "Dense"\nunits = 16\nactivation = "relu"\n[[model.layers]]\ntype = "Dense"\nunits = 1\nactivation = "sigmoid"\n[train]\nepochs = 2\nbatch_size = 32\nvalidation_split = 0.2\nloss = "binary_crossentropy"\n[runtime]\nthreads = 1\npolicy = "deterministic"\n' \
    "$SRC/examples/data/breast_cancer.csv" > v1.toml
  sed "s#$SRC/examples/data/breast_cancer.csv#$PWD/last_row.csv#" v1.toml > v2.toml
  for v in v1 v2; do mpirun -n 2 "$T" record $v.toml -o $v > $v.log 2>&1 || { cat $v.log; fail "record $v"; }; done
  expect 1 "^diverged at step 14, evaluation (val_loss)" -- "$T" diff v1 v2
  expect 1 "the evaluation read what differs (rows it only validates on, say), and the training read none of it" -- "$T" diff v1 v2
  expect 1 "what: the metrics of epoch 1 differ: val_loss " -- "$T" diff v1 v2
  # Configuration and environment, as for one process.
  expect 1 "cause: config: the run configuration differs: train.optimizer.learning_rate: 0.002 -> 0.003" -- \
    "$T" replay m4 --set train.optimizer.learning_rate=0.003
  expect 1 "cause: config: the run configuration differs: train.optimizer.learning_rate: 0.002 -> 0.003" -- \
    mpirun -n 4 "$T" replay m4 --set train.optimizer.learning_rate=0.003
  expect 0 "threads: 1 (recorded) vs 2 (replayed)" -- "$T" replay m4 --set runtime.threads=2
  expect 0 "note: the configuration differs from the recording's (seed: 7 -> 8)" -- "$T" replay m4 --set seed=8
  expect 1 "with every recorded choice forced the replay of the 4 ranks diverged at step 0" -- \
    "$T" bisect m4 --set train.optimizer.learning_rate=0.003
  # Another allreduce variant asked for: forcing each rank's recorded variant is the answer, every time. A trial
  # that forces it on some ranks only has no sum, whichever rank reaches the allreduce last.
  first=$("$T" bisect m4 --set distributed.allreduce=trainrr_exact 2>&1); rc=$?
  echo "\$ trainrr bisect m4 --set distributed.allreduce=trainrr_exact"; echo "$first"
  [ $rc = 1 ] || fail "bisect m4 --set distributed.allreduce=trainrr_exact: exit code $rc"
  for r in 0 1 2 3; do
    echo "$first" | grep -q "^  rank $r: kernel:grad/allreduce (the allreduce variant)$" ||
      fail "bisect m4 (trainrr_exact): rank $r's allreduce variant not named"
  done
  echo "$first" | grep '^  rank [0-3]: ' | grep -v -e ': kernel:grad/allreduce (the allreduce variant)$' \
    -e ': loader (racy: always forced)$' && fail "bisect m4 (trainrr_exact): named more than the variants"
  again=$("$T" bisect m4 --set distributed.allreduce=trainrr_exact 2>&1)
  [ "$again" = "$first" ] || { echo "$again"; fail "bisect m4 (trainrr_exact): another answer than the first run's"; }
  # The same configuration on 4 ranks and on 2, distributed.shards unset: the rank count cuts the batch into
  # other shards, and the report says so, with what makes the runs comparable shard by shard.
  record 2 m2
  expect 1 "A cuts the global batch into 4 micro-batch shards, B into 2; a shard by shard comparison needs the same shards$" -- "$T" diff m4 m2
  expect 1 "cause: rank count: 4 ranks in A, 2 in B, with distributed.shards unset (one shard per rank) and the same configuration: record both with distributed.shards set to the same value" -- "$T" diff m4 m2
  # Runs that differ only in how many steps they run: diverged in the inputs, with the side that ends first.
  record 4 m4e2 --set train.epochs=2
  expect 1 "^diverged in the inputs only: no value compared differs" -- "$T" diff m4 m4e2
  expect 1 "cause: config: the run configuration differs: train.epochs: 1 -> 2, which changes how many steps run, not what a step computes: A ends first, after 45 steps" -- "$T" diff m4 m4e2
  # One rank, and a run refused for its configuration.
  record 1 one --set seed=8
  expect 0 "run one: 1 rank, run id" -- "$T" show one
  expect 0 "config: .*digits_mlp.toml --set train.epochs=1 --set runtime.threads=1 --set seed=8" -- "$T" show one
  expect 0 "reproduced bit for bit: 1 rank replayed in one process" -- "$T" replay one
  expect 2 "does not divide into 3 equal shards" -- mpirun -n 3 "$T" record "$CONFIG" -o b3 "${SMALL[@]}"
  [ -e b3 ] && fail "a run refused for its configuration left its folder b3"
  expect 2 "or a count that divides 4" -- mpirun -n 3 "$T" replay m4
  # A first-ready loader's race names the loader and the batches, not the sharding that follows from them.
  shown=0
  for i in 1 2 3; do
    mpirun -n 2 "$T" record "$CONFIG" -o race$i --set train.epochs=2 --set runtime.threads=2 > race$i.log 2>&1 ||
      { cat race$i.log; fail "record race$i"; }
    for cmd in "diff race1 race$i" "replay race$i --force rng,split,shuffle,kernels" \
      "replay race$i --force rng,split,shuffle,kernels" "replay race$i --force rng,split,shuffle,kernels"; do
      out=$("$T" $cmd 2>&1); rc=$?
      echo "\$ trainrr $cmd"; echo "$out"
      case $rc in
        0) ;;
        1) echo "$out" | grep -q "cause: loader: .*batch" || fail "$cmd: the loader's race not named"
           echo "$out" | grep -q "data/sharding" && fail "$cmd: the loader's race named as the sharding"
           shown=1 ;;
        *) fail "$cmd: exit code $rc" ;;
      esac
    done
    [ $shown = 1 ] && break
  done
  # The race is the machine's to decide: where it never shows, nothing was checked, and the log says so.
  [ $shown = 1 ] || echo "note: the loader race did not show in 3 recordings and 9 replays with the loader free"
  ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
if [ $failures -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
