# The trainrr trace format.
#
# A trace file is a sequence of Cap'n Proto messages, each in the packed encoding, every one of them a
# `Message`, so that `capnp decode --packed trace.capnp Message < run.trr` prints the whole file:
#
#   header, then any number of step / epochEnd / checkpoint messages in the order they happened, then footer.
#
# A file without a footer did not end cleanly (the recorder was killed, the disk filled); every complete
# message before the cut is still valid. Byte offsets in this schema count from the start of the file and
# point at the first byte of a packed message. Packing starts afresh at each message and at each piece of
# it (segment table, segments): no run of zero or verbatim words crosses one. Format 1 was unpacked; format 3
# chains each message to the previous one's digest (Message.previous).
#
# Names are interned. Sites ("dense_1/matmul.fwd:out"), stream names, GPU kernel names, and metric, parameter
# and gradient names appear once in the file, in a `Names` block, and are referred to by id (UInt32, the position in the
# file's name table) afterwards, which keeps a step at level `step` to a few dozen bytes. A step's
# `newNames` appends to the table; a checkpoint carries the whole table, so a reader can start there. The
# current metric/parameter/gradient name lists (parallel to Step.metrics/params/grads) change only when a
# `Names` block says so.
#
# Evolution: fields and union members are only ever added, with new ordinals. Readers skip unknown union
# members (of Message and Event) and ignore unknown fields. A change an old reader must not read past raises
# Header.minReaderVersion.
#
# Every "must" below is checked by the reader (traces/trace_reader.cc); a violation is an error that names
# the file and byte offset of the message.

@0xdaddb8a13dedeafc;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("trainrr::trace::schema");

const magic :UInt64 = 0x3152524e49415254;  # "TRAINRR1", little-endian

struct Message {
  union {
    header @0 :Header;          # must be the first message of the file, and only the first
    step @1 :Step;
    checkpoint @2 :Checkpoint;
    epochEnd @3 :EpochEnd;
    footer @4 :Footer;          # must be the last message of the file
  }
  # From format 3: the low 32 bits of the XXH3-64 of the previous message's packed bytes, 1 where those bits
  # are 0; 0 in the header. Must match the previous message as read: a message changed after it was written
  # (a flipped bit, an edit) is damage that the next message exposes. Must be 0 throughout a trace of format 2:
  # a first message that holds the header's digest under a header of format 2 is a changed formatVersion.
  previous @5 :UInt32;
}

# --- header ---

struct Header {
  magic @0 :UInt64;             # must equal `magic`; checked before anything else
  minReaderVersion @1 :UInt32;  # checked second: must be <= the reader's version
  formatVersion @2 :UInt32;     # must be >= 1
  writerVersion @3 :Text;       # trainrr version that wrote the file
  config @4 :Text;              # the run configuration (TOML), verbatim
  configPath @5 :Text;
  seed @6 :UInt64;
  seedFromEntropy @7 :Bool;     # the configuration gave no seed; `seed` came from the OS
  level @8 :Level;              # must be a known enumerant
  # Must be >= 0; 0: no periodic checkpoints. A checkpoint at a step that is neither 0 nor a multiple of it is
  # the final state: only the footer may follow it.
  checkpointEvery @9 :Int64;
  # Conventional keys: host, cpu.model, cpu.flags, cpu.cores, threads, isa, policy, device (the run's: cpu,
  # cuda:N), os, kernel, compiler, compiler.flags, lib.<name> (library versions), cuda.backend (whether the
  # writing trainrr has the CUDA backend: built, not built), env.<VAR> (numerics-relevant environment
  # variables); a run on a GPU adds gpu.name, gpu.compute_capability, gpu.sm_count, gpu.memory, cuda.driver,
  # cuda.runtime, lib.cublasLt. Traces written before device and cuda.backend have "cuda", which said "not
  # built" whatever the build. Each key must appear once.
  environment @10 :List(KeyValue);
  datasets @11 :List(Dataset);
  # `--set key=value` assignments applied over `config`, in order: `config` plus these is the run.
  configOverrides @12 :List(Text);
  # A data-parallel run (mpirun -n N trainrr record): one trace per rank, all with the same runId.
  # worldSize 0: a run of one process (and rank must be 0). Else rank must be < worldSize.
  rank @13 :Int32;
  worldSize @14 :Int32;
  runId @15 :Text;
  # GPU kernels as CUPTI's activity API recorded them (the CUDA backend): true when the steps carry
  # Step.kernels. A reader that predates these fields sees a run without kernel records.
  kernelsRecorded @16 :Bool;
  # Why a run on the GPU has no kernel records: CUPTI's error ("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED")
  # or what was missing ("no driver"). Must be empty when kernelsRecorded. Empty with kernelsRecorded false: no
  # kernels were asked for (a run on the CPU, or a writer that predates kernel records).
  kernelsNotRecorded @17 :Text;
  # The steps probe each batch normalization's update of its moving statistics, the (2, channels) moving mean
  # and variance after the step's update: "<layer>/moving_stats.fwd:out" at level op, "<layer>:moving_stats"
  # at levels layer and op. false: a writer that predates these probes; its traces hold none, and replay and
  # diff compare none.
  movingStatistics @18 :Bool;
}

enum Level {
  step @0;
  layer @1;
  op @2;
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

struct Dataset {
  # Must be "data", "features" or "labels", and differ from every other data set's name of the header.
  # It says which configuration key the file stands for; it never becomes part of a path.
  name @0 :Text;
  path @1 :Text;          # as the configuration names it, for people: never used to name a file written

  size @2 :UInt64;        # bytes
  digestLow @3 :UInt64;   # XXH3-128 of the file's bytes, low 64 bits
  digestHigh @4 :UInt64;  # high 64 bits
  # The file's bytes when embedded, in chunks (a Data blob holds < 2^29 bytes). Empty: not embedded.
  # When present: the chunk sizes must sum to `size`, and their XXH3-128 must equal the digest.
  # Written by trainrr 0.2 and earlier; later writers write embeddedZstd.
  embedded @5 :List(Data);
  # The file's bytes when embedded, compressed: independent zstd frames as a Tensor's chunks (each < 2^29
  # bytes, declaring its content size in its frame header, with a content checksum). The content sizes must
  # sum to `size`, which must be <= the reader's embedded-data limit (checked before anything is allocated),
  # each frame must decompress to exactly its declared size, and the XXH3-128 of the whole must equal the
  # digest. At most one of embedded and embeddedZstd may be set. A reader that predates this field sees the
  # data set as not embedded, and looks for the file at its path.
  embeddedZstd @6 :List(Data);
}

# --- steps ---

struct Step {
  index @0 :Int64;     # global step from 0; must be >= 0, the first step's 0 and each later one's the previous
                       # step's plus 1 (a step after a checkpoint: the checkpoint's step)
  epoch @1 :Int32;     # must be >= 0; an ended step's must be the number of EpochEnds before it
  batch @2 :Int64;     # batch within the epoch; must be >= 0
  ended @3 :Bool;      # the step completed: loss, metrics, params and grads below are its end.
                       # false: events after the last step (evaluation, say); then the lists must be empty.
  loss @4 :Float64;
  newNames @5 :Names;  # null when this step introduces no name and changes no name list
  events @6 :List(Event);      # in the order they happened
  metrics @7 :List(Float64);   # length must equal the current metric name list's
  params @8 :List(UInt64);     # XXH3-64 digests after the update; length must equal the parameter name list's.
                               # Level step: one, named "(all parameters)", the XXH3-64 of the parameters'
                               # own digests (little-endian UInt64s) in model order
  grads @9 :List(UInt64);      # digests of this step's gradients; length must equal the gradient name list's
  hasBatchOrder @10 :Bool;     # the step's first event is a batch order, kept in `batchOrder`, not in `events`
  batchOrder @11 :Int64;       # must be >= 0 when hasBatchOrder; the batch of the current epoch the loader
                               # handed out (a field packs to a few bytes where a list element takes a dozen)
  collectives @12 :List(Collective);  # a data-parallel run: this rank's gradient allreduce calls, in order
  # The GPU kernels CUPTI saw during the step. Must be null unless Header.kernelsRecorded; null in such a trace
  # too where CUPTI delivered nothing for the step.
  kernels @13 :StepKernels;
}

# The kernels of one step, in launch order (start time, then CUPTI's correlation id). Every op the engine runs
# is tagged with an external correlation id, which is how a kernel chosen inside cuDNN or cuBLASLt, seen only by
# CUPTI, is attributed to the op that launched it.
struct StepKernels {
  count @0 :UInt64;         # kernels, attributed or not
  # XXH3-64 of the sequence of (name, grid, block) of all `count` kernels in launch order (kernel_sequence_digest,
  # traces/trace.cc): two steps that ran the same kernels in the same shapes have the same digest.
  digest @1 :UInt64;
  unattributed @2 :UInt64;  # kernels no op could be named for (launched outside every op); must be <= count
  dropped @3 :UInt64;       # activity records CUPTI dropped during the step (its buffers were full): kernels lost
  # Levels layer and op: every kernel, in launch order; must be empty at level step. When not empty: its length
  # must equal `count`, the launches at the site "(unattributed)" must number `unattributed`, and
  # kernel_sequence_digest of the list must equal `digest`.
  launches @4 :List(KernelLaunch);
}

struct KernelLaunch {
  site @0 :UInt32;          # name id of the op that launched it ("dense_1/matmul.fwd"), or of "(unattributed)"
  name @1 :UInt32;          # name id of the kernel's name as CUPTI gives it (mangled), interned like a site
  gridX @2 :UInt32;         # every dimension must be >= 1
  gridY @3 :UInt32;
  gridZ @4 :UInt32;
  blockX @5 :UInt32;
  blockY @6 :UInt32;
  blockZ @7 :UInt32;
  staticShared @8 :UInt32;  # bytes
  dynamicShared @9 :UInt32; # bytes
  durationNs @10 :UInt64;   # end - start as CUPTI timed it; 0 where CUPTI gave no timestamps
}

# One gradient allreduce call of one rank (engine/collective.h, CollectiveCall).
struct Collective {
  bucket @0 :Int32;            # must be >= 0
  offset @1 :Int64;            # first element of the bucket in the flattened gradients; must be >= 0
  count @2 :Int64;             # elements (float32); must be >= 0
  variant @3 :Text;            # allreduce__trainrr_tree | allreduce__trainrr_exact | allreduce__mpi | allreduce__arrival
  forced @4 :Bool;             # the grouping was fixed: a trainrr variant, or an MPI algorithm forced through MCA
  algorithm @5 :Text;          # how the sum was grouped ("ring", "pairwise tree over 4 shards, ...")
  algorithmInferred @6 :Bool;  # allreduce__mpi: from Open MPI's decision table, not forced through MCA
  ranks @7 :Int32;             # must be >= 1
  shards @8 :Int32;            # micro-batch shards of the global batch; must be a multiple of ranks
  firstShard @9 :Int32;        # this rank's first shard; firstShard + len(shardDigests) must be <= shards
  shardRows @10 :List(UInt64); # each shard of this rank: XXH3-64 of its row indices (little-endian UInt32s)
  shardDigests @11 :List(UInt64);  # each shard gradient of this rank, over this bucket's range
  inputDigest @12 :UInt64;     # this rank's shard gradients, concatenated
  resultDigest @13 :UInt64;    # the sum every rank got
  order @14 :List(UInt32);     # allreduce__arrival: ranks in the order added; each must be < ranks
}

# Interning state. In a Step: additions. In a Checkpoint: the whole state (first = 0).
struct Names {
  first @0 :UInt32;          # id of names[0]; must equal the number of names defined before (no gap, no overlap)
  names @1 :List(Text);
  # The current name lists, replaced whole: every id must be < the table size after `names` is appended.
  metricNames @2 :List(UInt32);
  paramNames @3 :List(UInt32);
  gradNames @4 :List(UInt32);
}

struct Event {
  union {
    rngDraw @0 :RngDraw;
    split @1 :Split;
    shuffle @2 :Shuffle;
    batchOrder @3 :Int64;      # the batch of the current epoch the loader handed out; must be >= 0
    kernelChoice @4 :KernelChoice;
    probe @5 :Probe;
    accumulationOrder @6 :AccumulationOrder;
  }
}

# The order in which a kernel that accumulates in completion order combined its partial results.
struct AccumulationOrder {
  site @0 :UInt32;           # name id of the kernel site
  order @1 :List(UInt32);    # partial (task) indices, in the order they were added: must order 0..n-1 (n its
                             # length), each once, as they index the partials a replay adds in this order
}

# Words counter .. counter+count-1 of the Philox stream with `key`.
struct RngDraw {
  site @0 :UInt32;     # name id; must be < the table size (as every name id below)
  stream @1 :UInt32;   # name id
  key @2 :UInt64;
  counter @3 :UInt64;  # offset in 32-bit words
  count @4 :UInt64;    # 32-bit words consumed; inside Shuffle.draw must be length - 1 (0 for length <= 1)
  digest @5 :UInt64;   # XXH3-64 of the values drawn, as bytes; 0 inside Shuffle.draw
}

struct Split {
  site @0 :UInt32;
  train @1 :List(UInt32);  # row indices; train, then test, must order the rows 0..n-1 (n = both lengths),
  test @2 :List(UInt32);   # each once: every row goes to one side. That n is the data's row count the engine
                           # checks, which knows it
}

struct Shuffle {
  site @0 :UInt32;
  epoch @1 :Int32;         # must be >= 0
  length @2 :UInt64;       # rows in the permutation
  digest @3 :UInt64;       # XXH3-64 of the permutation as little-endian UInt32s
  draw @4 :RngDraw;        # the draw the permutation was computed from; null when it came from elsewhere
  # The permutation, stored whole when there is no draw. When non-empty: its length must equal `length`,
  # its digest must equal `digest`, and it must order 0..length-1, each once (the rows a replay's loader reads).
  # Empty with a null draw is allowed only when `length` is 0.
  permutation @5 :List(UInt32);
}

struct KernelChoice {
  site @0 :UInt32;
  op @1 :Text;
  candidates @2 :List(Text);   # kernel ids considered, in the order considered
  chosen @3 :Text;             # the kernel id that runs
  reason @4 :Text;             # "default: ...", "deterministic", "autotune", "forced"
  timingsUs @5 :List(Float64); # autotune: must be empty or one per candidate
  # A choice on the GPU (the CUDA backend). A reader that predates these fields sees the kernel ids only.
  blasLt @6 :List(BlasLtAlgo); # a cuBLASLt site: empty, or one per candidate in the order of `candidates`, each
                               # with the id blaslt_kernel_id gives it (engine/kernels/blaslt_choice.h). A
                               # convolution whose candidates include the im2col + cuBLASLt variant
                               # (conv_im2col_id, engine/kernels/conv_sites.h): empty, or exactly one, the
                               # algorithm that variant runs (its id is no candidate)
  blasLtVersion @7 :UInt64;    # cublasLtGetVersion() where chosen; must be > 0 when blasLt is not empty
  tf32 @8 :Bool;               # the matmul computed in TF32 (runtime.tf32), not float32
  launch @9 :LaunchShape;      # how the chosen kernel was launched, where its result depends on it; null: not recorded
  cudnn @10 :List(CudnnEngine);  # a cuDNN convolution site: empty, or one per cuDNN candidate, covering the first
                               # cudnn.size() candidates in their order, each with the id cudnn_kernel_id gives it
                               # (engine/kernels/cudnn_choice.h); the candidates after them are not cuDNN's (the
                               # im2col + cuBLASLt variant, last, has no entry)
  cudnnVersion @11 :UInt64;    # cudnnGetVersion() where chosen; must be > 0 when cudnn is not empty
  planJson @12 :Text;          # the chosen engine's execution plan (CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION)
}

# One cuDNN engine configuration: the engine's global index in its operation graph, its knob choices, and what
# cuDNN declares about it.
struct CudnnEngine {
  globalIndex @0 :Int64;       # must be >= 0
  knobTypes @1 :List(Int32);   # cudnnBackendKnobType_t, in cuDNN's order
  knobValues @2 :List(Int64);  # must be as long as knobTypes
  numericalNotes @3 :List(Int32);
  behaviorNotes @4 :List(Int32);
  workspaceBytes @5 :UInt64;
}

# One cuBLASLt matmul algorithm: cublasLtMatmulAlgo_t verbatim, restorable only into the same cuBLASLt version,
# and its configuration decoded (cublasLtMatmulAlgoConfigGetAttribute).
struct BlasLtAlgo {
  data @0 :List(UInt64);       # must hold 8 words
  algoId @1 :Int32;            # CUBLASLT_ALGO_CONFIG_ID
  tile @2 :UInt32;
  splitK @3 :Int32;            # SPLITK_NUM; must be >= 1
  reductionScheme @4 :UInt32;  # cublasLtReductionScheme_t
  swizzle @5 :UInt32;
  customOption @6 :UInt32;
  stages @7 :UInt32;
  innerShape @8 :UInt16;
  clusterShape @9 :UInt16;
  workspaceBytes @10 :UInt64;
  waves @11 :Float32;
}

# A CUDA launch: every dimension must be >= 1.
struct LaunchShape {
  gridX @0 :UInt32;
  gridY @1 :UInt32;
  gridZ @2 :UInt32;
  blockX @3 :UInt32;
  blockY @4 :UInt32;
  blockZ @5 :UInt32;
  sharedBytes @6 :UInt64;
}

enum Phase {
  forward @0;
  backward @1;
  update @2;
}

struct Probe {
  site @0 :UInt32;
  phase @1 :Phase;        # must be a known enumerant
  digest @2 :UInt64;      # XXH3-64 of the tensor's float32 bytes
  count @3 :UInt64;       # elements
  sum @4 :Float64;        # of the finite elements
  sumSq @5 :Float64;
  min @6 :Float32;
  max @7 :Float32;
  nonFinite @8 :UInt64;   # must be <= count
}

struct EpochEnd {
  epoch @0 :Int32;        # must be >= 0, the number of EpochEnds before it, and that of an ended step after them
  logs @1 :List(NamedValue);
}

struct NamedValue {
  name @0 :Text;
  value @1 :Float64;
}

# --- checkpoints ---

# Everything needed to resume at a step boundary. The writer syncs the file to disk after each one.
struct Checkpoint {
  step @0 :Int64;          # steps completed; must be >= 0 and the ended steps before it (the last one's index
                           # plus 1)
  epoch @1 :Int32;         # epoch of the next step; must be >= 0 and the number of EpochEnds before it
  batchInEpoch @2 :Int64;  # must be >= 0 and the ended steps since the last EpochEnd
  seed @3 :UInt64;
  tensors @4 :List(Tensor);      # parameters, then optimizer state; the decompressed sizes of all of them
                                 # together must stay under the reader's checkpoint limit; the parameters
                                 # must be those the step before it recorded (Step.params)
  rngOffsets @5 :List(RngOffset);
  permutation @6 :List(UInt32);  # the current epoch's order (loader cursor): must order 0..n-1 (n its length),
                                 # each once; that n is the training rows the engine checks
  scalars @7 :List(NamedValue);  # optimizer iterations and the like; the engine checks them as it restores:
                                 # optimizer.iterations a whole number 0..step, epoch.rows and epoch.correct
                                 # whole numbers, at most the labels of the rows the permutation orders and
                                 # epoch.rows, epoch.loss_sum not negative (nan or inf where the loss diverged)
  names @8 :Names;               # the whole interning state (first must be 0); must be set
  batchesDone @9 :List(UInt32);  # batches of the current epoch already handed out, in order; none may repeat,
                                 # and each must be < the epoch's batch count, which the reader cannot know:
                                 # the engine checks
}

struct Tensor {
  name @0 :Text;
  shape @1 :List(Int64);   # every dimension must be >= 0; the product times 4 must equal rawBytes
  rawBytes @2 :UInt64;     # float32 little-endian bytes before compression; must be <= the reader's tensor
                           # limit, checked before anything is allocated
  # Independent zstd frames, each < 2^29 bytes, each declaring its content size in its frame header; the
  # content sizes must sum to rawBytes and each frame must decompress to exactly its declared size (and pass
  # its content checksum, which the writer always includes).
  chunks @3 :List(Data);
}

struct RngOffset {
  stream @0 :Text;
  offset @1 :UInt64;       # next 32-bit word of the stream
}

# --- footer ---

struct Footer {
  # The run finished its schedule: true exactly when endReason is "completed". Read from the start, true must
  # agree with the header's configuration: the file must hold as many ended steps as its epochs times the
  # batches of the first shuffle's rows (where the configuration parses and a step shuffles); and, where it
  # holds an ended step, its last checkpoint must be the final state (its step the number of ended steps).
  completed @0 :Bool;
  endReason @1 :Text;
  # Read from the start, these must equal what the reader saw.
  stepCount @2 :Int64;     # step messages in the file
  eventCount @3 :UInt64;   # events in all steps
  checkpoints @4 :List(CheckpointRef);  # in file order
  # From format 3: footer_digest() of the values above (traces/trace.cc), which no message after the footer
  # can vouch for; must match them, and is never 0 (message_digest()). Must be 0 in a trace of format 2.
  check @5 :UInt32;
}

struct CheckpointRef {
  step @0 :Int64;
  offset @1 :UInt64;       # must be after the header, before the footer, increasing
}
