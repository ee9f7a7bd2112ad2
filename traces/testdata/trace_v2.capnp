# A later version of trace.capnp, as far as the evolution test needs it: the same ordinals and types
# (struct pointers the test does not fill are AnyPointer, which is the same on the wire), plus a field,
# an event kind and a message kind that the current reader does not know.

@0x93c73e7bd8cfca67;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("trainrr::trace::v2");

struct Message {
  union {
    header @0 :AnyPointer;
    step @1 :Step;
    checkpoint @2 :AnyPointer;
    epochEnd @3 :AnyPointer;
    footer @4 :AnyPointer;
    annotation @6 :Text;       # new message kind
  }
  previous @5 :UInt32;
}

struct Step {
  index @0 :Int64;
  epoch @1 :Int32;
  batch @2 :Int64;
  ended @3 :Bool;
  loss @4 :Float64;
  newNames @5 :AnyPointer;
  events @6 :List(Event);
  metrics @7 :List(Float64);
  params @8 :List(UInt64);
  grads @9 :List(UInt64);
  hasBatchOrder @10 :Bool;
  batchOrder @11 :Int64;
  collectives @12 :AnyPointer;
  kernels @13 :AnyPointer;
  wallTimeUs @14 :UInt64;      # new field
  host @15 :Text;              # new pointer field
}

struct Event {
  union {
    rngDraw @0 :AnyPointer;
    split @1 :AnyPointer;
    shuffle @2 :AnyPointer;
    batchOrder @3 :Int64;
    kernelChoice @4 :AnyPointer;
    probe @5 :AnyPointer;
    accumulationOrder @6 :AnyPointer;
    gpuKernel @7 :Text;        # new event kind
  }
}
