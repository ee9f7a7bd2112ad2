#include "cuda/cudnn_conv.h"

// The backend API (cudnn_backend.h only includes this header). No cuDNN library is linked: the functions are
// looked up in libcudnn.so.9 when a run on the GPU first asks for a convolution.
#include <cudnn_graph.h>

#include <algorithm>
#include <cstring>

#include "cuda/dynamic_library.h"
#include "engine/kernels/cudnn_choice.h"

namespace trainrr::cuda {

// The host rules (engine/kernels/cudnn_choice.h) name cuDNN's values without its header; they must be these.
static_assert(kCudnnNoteTensorCore == CUDNN_NUMERICAL_NOTE_TENSOR_CORE);
static_assert(kCudnnNoteDownConvertInputs == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS);
static_assert(kCudnnNoteFft == CUDNN_NUMERICAL_NOTE_FFT);
static_assert(kCudnnNoteNondeterministic == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
static_assert(kCudnnNoteWinograd == CUDNN_NUMERICAL_NOTE_WINOGRAD);
static_assert(kCudnnNoteWinogradTile13x13 == CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13);

// The functions trainrr calls, looked up by name; the types come from cudnn_graph.h, so a signature that
// changed in another version fails to compile here rather than at run time.
#define TRAINRR_CUDNN_FUNCTIONS(X)                                                                   \
  X(cudnnGetVersion)                                                                                 \
  X(cudnnGetErrorString) X(cudnnGetLastErrorString) X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream) \
      X(cudnnBackendCreateDescriptor) X(cudnnBackendDestroyDescriptor) X(cudnnBackendSetAttribute)   \
          X(cudnnBackendGetAttribute) X(cudnnBackendFinalize) X(cudnnBackendExecute)

struct CudnnConv::Api {
#define TRAINRR_DECLARE(name) decltype(&::name) name = nullptr;
  TRAINRR_CUDNN_FUNCTIONS(TRAINRR_DECLARE)
#undef TRAINRR_DECLARE
};

namespace {

using Api = CudnnConv::Api;

const char* const kLibrary = "libcudnn.so.9";

// The unique ids of the three tensors in the variant pack. The roles follow the forward convolution: x is
// also backward-data's dx, w backward-filter's dw, y the backward ops' dy.
constexpr int64_t kUidX = 1, kUidW = 2, kUidY = 3;

// "CUDNN_STATUS_NOT_SUPPORTED (3000; cuDNN: <its last message on this thread>)". The last message is what
// says why (a shape, a layout, no driver); the status alone rarely does.
std::string status_text(const Api& api, cudnnStatus_t s) {
  std::string t = std::string(api.cudnnGetErrorString(s)) + " (" + std::to_string(static_cast<int>(s));
  char last[1024] = {};
  api.cudnnGetLastErrorString(last, sizeof last);
  if (last[0]) t += std::string("; cuDNN: ") + last;
  return t + ")";
}

const char* descriptor_name(cudnnBackendDescriptorType_t t) {
  switch (t) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR:
      return "CUDNN_BACKEND_TENSOR_DESCRIPTOR";
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
      return "CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR";
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
      return "CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR";
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
      return "CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR";
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
      return "CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR";
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
      return "CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR";
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
      return "CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR";
    case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
      return "CUDNN_BACKEND_ENGINECFG_DESCRIPTOR";
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR:
      return "CUDNN_BACKEND_ENGINE_DESCRIPTOR";
    case CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR:
      return "CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR";
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
      return "CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR";
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
      return "CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR";
    default:
      return "a cuDNN backend descriptor";
  }
}

// One backend descriptor, destroyed with its owner. It keeps the destroy function itself (the library is
// never unloaded), so a plan held past the CudnnConv object still frees cleanly.
class Desc {
 public:
  Desc() = default;
  Desc(decltype(&::cudnnBackendDestroyDescriptor) destroy, cudnnBackendDescriptor_t d, std::string label)
      : destroy_(destroy), d_(d), label_(std::move(label)) {}
  Desc(Desc&& o) noexcept : destroy_(o.destroy_), d_(o.d_), label_(std::move(o.label_)) { o.d_ = nullptr; }
  Desc& operator=(Desc&& o) noexcept {
    if (this != &o) {
      reset();
      destroy_ = o.destroy_, d_ = o.d_, label_ = std::move(o.label_);
      o.d_ = nullptr;
    }
    return *this;
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  ~Desc() { reset(); }

  cudnnBackendDescriptor_t get() const { return d_; }
  // Where a backend call wants the address of a descriptor (an attribute of type BACKEND_DESCRIPTOR).
  const cudnnBackendDescriptor_t* address() const { return &d_; }
  const std::string& label() const { return label_; }

 private:
  void reset() {
    if (d_) destroy_(d_);
    d_ = nullptr;
  }
  decltype(&::cudnnBackendDestroyDescriptor) destroy_ = nullptr;
  cudnnBackendDescriptor_t d_ = nullptr;
  std::string label_;  // "the tensor x (CUDNN_BACKEND_TENSOR_DESCRIPTOR)", for errors
};

// An attribute and its name as the header spells it, for errors.
struct Attr {
  cudnnBackendAttributeName_t name;
  const char* text;
};
#define TRAINRR_ATTR(a) \
  Attr { a, #a }

// The backend calls, each checked: the error names the call, the descriptor, the attribute and cuDNN's
// reason.
struct Backend {
  const Api& api;

  Result<Desc> create(cudnnBackendDescriptorType_t type, const std::string& what) const {
    cudnnBackendDescriptor_t d = nullptr;
    const std::string label = what + " (" + descriptor_name(type) + ")";
    if (cudnnStatus_t s = api.cudnnBackendCreateDescriptor(type, &d); s != CUDNN_STATUS_SUCCESS)
      return Error{"cudnnBackendCreateDescriptor for " + label + " failed: " + status_text(api, s)};
    return Desc(api.cudnnBackendDestroyDescriptor, d, label);
  }
  Status set(const Desc& d, Attr a, cudnnBackendAttributeType_t type, int64_t count,
             const void* values) const {
    if (cudnnStatus_t s = api.cudnnBackendSetAttribute(d.get(), a.name, type, count, values);
        s != CUDNN_STATUS_SUCCESS)
      return Error{std::string("cudnnBackendSetAttribute(") + a.text + ") on " + d.label() +
                   " failed: " + status_text(api, s)};
    return {};
  }
  Status get(const Desc& d, Attr a, cudnnBackendAttributeType_t type, int64_t requested, int64_t* count,
             void* values) const {
    if (cudnnStatus_t s = api.cudnnBackendGetAttribute(d.get(), a.name, type, requested, count, values);
        s != CUDNN_STATUS_SUCCESS)
      return Error{std::string("cudnnBackendGetAttribute(") + a.text + ") on " + d.label() +
                   " failed: " + status_text(api, s)};
    return {};
  }
  Status finalize(const Desc& d) const {
    if (cudnnStatus_t s = api.cudnnBackendFinalize(d.get()); s != CUDNN_STATUS_SUCCESS)
      return Error{"cudnnBackendFinalize on " + d.label() + " failed: " + status_text(api, s)};
    return {};
  }
  // `n` fresh descriptors of `type` for cuDNN to fill (heuristic results, knob choices), and their handles in
  // the form the attribute wants.
  Status create_many(cudnnBackendDescriptorType_t type, const std::string& what, size_t n,
                     std::vector<Desc>* out, std::vector<cudnnBackendDescriptor_t>* raw) const {
    for (size_t i = 0; i < n; ++i) {
      Result<Desc> d = create(type, what + " " + std::to_string(i));
      if (!d) return d.error();
      raw->push_back(d->get());
      out->push_back(std::move(*d));
    }
    return {};
  }
};

#define TRAINRR_TRY(expr)                                           \
  do {                                                              \
    if (::trainrr::Status s_ = (expr); !s_.ok()) return s_.error(); \
  } while (0)

// "conv2d_bwd_data n2 8x8x3 -> 8x8x4, filter 3x3, stride 1x1, padding top 1 left 1" for errors.
std::string geometry_text(OpKind op, const Conv2dArgs& p) {
  auto s = [](int64_t v) { return std::to_string(v); };
  return std::string(op_name(op)) + " n" + s(p.n) + " " + s(p.h) + "x" + s(p.w) + "x" + s(p.c_in) + " -> " +
         s(p.out_h) + "x" + s(p.out_w) + "x" + s(p.c_out) + ", filter " + s(p.kh) + "x" + s(p.kw) +
         ", stride " + s(p.stride_h) + "x" + s(p.stride_w) + ", padding top " + s(p.pad_top) + " left " +
         s(p.pad_left);
}

bool is_conv(OpKind op) {
  return op == OpKind::conv2d_fwd || op == OpKind::conv2d_bwd_data || op == OpKind::conv2d_bwd_filter;
}

bool same_geometry(const Conv2dArgs& a, const Conv2dArgs& b) {
  return a.n == b.n && a.h == b.h && a.w == b.w && a.c_in == b.c_in && a.kh == b.kh && a.kw == b.kw &&
         a.c_out == b.c_out && a.stride_h == b.stride_h && a.stride_w == b.stride_w &&
         a.pad_top == b.pad_top && a.pad_left == b.pad_left && a.out_h == b.out_h && a.out_w == b.out_w;
}

// The paddings cuDNN wants. trainrr gives the padding before (top, left) and the output size; the padding
// after is what the last window needs beyond the input (Keras' "same" puts the odd row there), or 0 where the
// last window ends inside the input (a "valid" convolution whose stride skips the last rows).
struct Paddings {
  int64_t pre[2] = {0, 0}, post[2] = {0, 0};
};
Result<Paddings> paddings(OpKind op, const Conv2dArgs& p) {
  if (!is_conv(op)) return Error{std::string("cuDNN convolutions: ") + op_name(op) + " is not a convolution"};
  if (p.n <= 0 || p.h <= 0 || p.w <= 0 || p.c_in <= 0 || p.kh <= 0 || p.kw <= 0 || p.c_out <= 0 ||
      p.stride_h <= 0 || p.stride_w <= 0 || p.out_h <= 0 || p.out_w <= 0 || p.pad_top < 0 || p.pad_left < 0)
    return Error{"cuDNN convolutions: not a convolution's geometry: " + geometry_text(op, p)};
  Paddings r;
  const int64_t in[2] = {p.h, p.w}, k[2] = {p.kh, p.kw}, stride[2] = {p.stride_h, p.stride_w},
                out[2] = {p.out_h, p.out_w}, pre[2] = {p.pad_top, p.pad_left};
  for (int i = 0; i < 2; ++i) {
    r.pre[i] = pre[i];
    r.post[i] = std::max<int64_t>(0, (out[i] - 1) * stride[i] + k[i] - in[i] - pre[i]);
    // cuDNN derives the output size from these: it must be trainrr's.
    const int64_t span = in[i] + r.pre[i] + r.post[i] - k[i];
    if (span < 0 || span / stride[i] + 1 != out[i])
      return Error{std::string("cuDNN convolutions: the output ") + (i == 0 ? "height " : "width ") +
                   std::to_string(out[i]) +
                   " is not what the input, filter, stride and padding give: " + geometry_text(op, p)};
  }
  return r;
}

// The descriptors of one convolution, up to the operation graph, destroyed together (the graph first).
struct Graph {
  Desc x, w, y, conv, op, graph;
};

// A float tensor of cuDNN's dims (N, C, H, W or K, C, R, S) laid out as trainrr stores it.
Result<Desc> tensor(const Backend& b, const char* what, int64_t uid, const int64_t (&dims)[4],
                    const int64_t (&strides)[4]) {
  Result<Desc> t = b.create(CUDNN_BACKEND_TENSOR_DESCRIPTOR, std::string("the tensor ") + what);
  if (!t) return t;
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  TRAINRR_TRY(b.set(*t, TRAINRR_ATTR(CUDNN_ATTR_TENSOR_DATA_TYPE), CUDNN_TYPE_DATA_TYPE, 1, &f32));
  TRAINRR_TRY(b.set(*t, TRAINRR_ATTR(CUDNN_ATTR_TENSOR_DIMENSIONS), CUDNN_TYPE_INT64, 4, dims));
  TRAINRR_TRY(b.set(*t, TRAINRR_ATTR(CUDNN_ATTR_TENSOR_STRIDES), CUDNN_TYPE_INT64, 4, strides));
  TRAINRR_TRY(b.set(*t, TRAINRR_ATTR(CUDNN_ATTR_TENSOR_UNIQUE_ID), CUDNN_TYPE_INT64, 1, &uid));
  const int64_t alignment = CudnnConv::kAlignment;
  TRAINRR_TRY(b.set(*t, TRAINRR_ATTR(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT), CUDNN_TYPE_INT64, 1, &alignment));
  TRAINRR_TRY(b.finalize(*t));
  return t;
}

// The tensors, the convolution and the operation, finalized: no handle needed.
Result<std::shared_ptr<Graph>> operation(const Backend& b, OpKind op, const Conv2dArgs& p) {
  Result<Paddings> pads = paddings(op, p);
  if (!pads) return pads.error();
  auto g = std::make_shared<Graph>();
  const bool fwd = op == OpKind::conv2d_fwd, bwd_data = op == OpKind::conv2d_bwd_data;
  // x [n, h, w, c_in] and y [n, out_h, out_w, c_out]: channels innermost, then columns, rows, images.
  const int64_t x_dims[4] = {p.n, p.c_in, p.h, p.w};
  const int64_t x_strides[4] = {p.h * p.w * p.c_in, 1, p.w * p.c_in, p.c_in};
  const int64_t y_dims[4] = {p.n, p.c_out, p.out_h, p.out_w};
  const int64_t y_strides[4] = {p.out_h * p.out_w * p.c_out, 1, p.out_w * p.c_out, p.c_out};
  // The filter as K, R, S, C (KRSC: cuDNN's packed NHWC filter), C (c_in) innermost. trainrr's HWIO filter is
  // transposed into it before a run, and a filter gradient out of it after (CudaDevice::run_conv_variant).
  const int64_t w_dims[4] = {p.c_out, p.c_in, p.kh, p.kw};
  const int64_t w_strides[4] = {p.kh * p.kw * p.c_in, 1, p.kw * p.c_in, p.c_in};
  {
    Result<Desc> x = tensor(b, bwd_data ? "dx" : "x", kUidX, x_dims, x_strides);
    if (!x) return x.error();
    g->x = std::move(*x);
    Result<Desc> w = tensor(b, op == OpKind::conv2d_bwd_filter ? "dw" : "w", kUidW, w_dims, w_strides);
    if (!w) return w.error();
    g->w = std::move(*w);
    Result<Desc> y = tensor(b, fwd ? "y" : "dy", kUidY, y_dims, y_strides);
    if (!y) return y.error();
    g->y = std::move(*y);
  }
  {
    Result<Desc> c = b.create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, "the convolution");
    if (!c) return c.error();
    g->conv = std::move(*c);
    // trainrr's Conv2D is a cross-correlation (the filter is not flipped), summed in float.
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const int64_t spatial = 2, stride[2] = {p.stride_h, p.stride_w}, dilation[2] = {1, 1};
    TRAINRR_TRY(
        b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_COMP_TYPE), CUDNN_TYPE_DATA_TYPE, 1, &f32));
    TRAINRR_TRY(b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_CONV_MODE), CUDNN_TYPE_CONVOLUTION_MODE, 1,
                      &mode));
    TRAINRR_TRY(
        b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS), CUDNN_TYPE_INT64, 1, &spatial));
    TRAINRR_TRY(
        b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES), CUDNN_TYPE_INT64, 2, stride));
    TRAINRR_TRY(
        b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_DILATIONS), CUDNN_TYPE_INT64, 2, dilation));
    TRAINRR_TRY(
        b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS), CUDNN_TYPE_INT64, 2, pads->pre));
    TRAINRR_TRY(
        b.set(g->conv, TRAINRR_ATTR(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS), CUDNN_TYPE_INT64, 2, pads->post));
    TRAINRR_TRY(b.finalize(g->conv));
  }
  // out = 1 * conv + 0 * out: the output is overwritten, as Conv2dArgs says.
  const float alpha = 1.0f, beta = 0.0f;
  const Desc* conv = &g->conv;
  auto build = [&](cudnnBackendDescriptorType_t type, const char* what, Attr a_alpha, Attr a_beta,
                   Attr a_conv, Attr a1, const Desc& t1, Attr a2, const Desc& t2, Attr a3,
                   const Desc& t3) -> Status {
    Result<Desc> o = b.create(type, what);
    if (!o) return o.error();
    g->op = std::move(*o);
    TRAINRR_TRY(b.set(g->op, a_alpha, CUDNN_TYPE_FLOAT, 1, &alpha));
    TRAINRR_TRY(b.set(g->op, a_beta, CUDNN_TYPE_FLOAT, 1, &beta));
    TRAINRR_TRY(b.set(g->op, a_conv, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, conv->address()));
    TRAINRR_TRY(b.set(g->op, a1, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, t1.address()));
    TRAINRR_TRY(b.set(g->op, a2, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, t2.address()));
    TRAINRR_TRY(b.set(g->op, a3, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, t3.address()));
    return b.finalize(g->op);
  };
  Status s;
  if (fwd)
    s = build(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, "the forward convolution",
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X), g->x,
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W), g->w,
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y), g->y);
  else if (bwd_data)
    s = build(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, "the backward-data convolution",
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX), g->x,
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W), g->w,
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY), g->y);
  else
    s = build(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
              "the backward-filter convolution",
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC),
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X), g->x,
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW), g->w,
              TRAINRR_ATTR(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY), g->y);
  if (!s) return Error{s.error().message + " [" + geometry_text(op, p) + "]"};
  return g;
}

// The operation graph of one operation. It needs the handle: cuDNN 9.19 has no other way to tell an operation
// graph its device (CUDNN_ATTR_OPERATIONGRAPH_HANDLE is marked deprecated in the header, yet it is the only
// such attribute; the frontend sets it too).
Result<std::shared_ptr<Graph>> operation_graph(const Backend& b, OpKind op, const Conv2dArgs& p,
                                               cudnnHandle_t handle) {
  Result<std::shared_ptr<Graph>> g = operation(b, op, p);
  if (!g) return g;
  Graph& gr = **g;
  Result<Desc> d = b.create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "the operation graph");
  if (!d) return d.error();
  gr.graph = std::move(*d);
  TRAINRR_TRY(b.set(gr.graph, TRAINRR_ATTR(CUDNN_ATTR_OPERATIONGRAPH_OPS), CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                    gr.op.address()));
  TRAINRR_TRY(b.set(gr.graph, TRAINRR_ATTR(CUDNN_ATTR_OPERATIONGRAPH_HANDLE), CUDNN_TYPE_HANDLE, 1, &handle));
  if (Status s = b.finalize(gr.graph); !s)
    return Error{s.error().message + " [" + geometry_text(op, p) + "]"};
  return g;
}

// The notes an engine declares (finalized ENGINE descriptor).
Status read_notes(const Backend& b, const Desc& engine, CudnnEngine* e) {
  cudnnBackendNumericalNote_t numerical[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t n = 0;
  TRAINRR_TRY(b.get(engine, TRAINRR_ATTR(CUDNN_ATTR_ENGINE_NUMERICAL_NOTE), CUDNN_TYPE_NUMERICAL_NOTE,
                    CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, numerical));
  e->numerical_notes.clear();
  for (int64_t i = 0; i < std::min<int64_t>(n, CUDNN_NUMERICAL_NOTE_TYPE_COUNT); ++i)
    e->numerical_notes.push_back(static_cast<int32_t>(numerical[i]));
  cudnnBackendBehaviorNote_t behavior[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  n = 0;
  TRAINRR_TRY(b.get(engine, TRAINRR_ATTR(CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE), CUDNN_TYPE_BEHAVIOR_NOTE,
                    CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &n, behavior));
  e->behavior_notes.clear();
  for (int64_t i = 0; i < std::min<int64_t>(n, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT); ++i)
    e->behavior_notes.push_back(static_cast<int32_t>(behavior[i]));
  return {};
}

// An engine configuration from the heuristics as trainrr records it: the engine's global index, its knob
// choices in cuDNN's order, and its notes.
Result<CudnnEngine> decode(const Backend& b, const Desc& cfg) {
  CudnnEngine e;
  Result<Desc> engine = b.create(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "the engine of " + cfg.label());
  if (!engine) return engine.error();
  // cuDNN fills the descriptor the handle points to; the handle itself is not written.
  cudnnBackendDescriptor_t engine_raw = engine->get();
  int64_t n = 0;
  TRAINRR_TRY(b.get(cfg, TRAINRR_ATTR(CUDNN_ATTR_ENGINECFG_ENGINE), CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                    &engine_raw));
  TRAINRR_TRY(
      b.get(*engine, TRAINRR_ATTR(CUDNN_ATTR_ENGINE_GLOBAL_INDEX), CUDNN_TYPE_INT64, 1, &n, &e.global_index));
  TRAINRR_TRY(read_notes(b, *engine, &e));
  // At most one choice per knob type.
  std::vector<Desc> knobs;
  std::vector<cudnnBackendDescriptor_t> raw;
  TRAINRR_TRY(b.create_many(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR, "knob choice", CUDNN_KNOB_TYPE_COUNTS,
                            &knobs, &raw));
  n = 0;
  TRAINRR_TRY(b.get(cfg, TRAINRR_ATTR(CUDNN_ATTR_ENGINECFG_KNOB_CHOICES), CUDNN_TYPE_BACKEND_DESCRIPTOR,
                    static_cast<int64_t>(raw.size()), &n, raw.data()));
  for (int64_t i = 0; i < std::min<int64_t>(n, static_cast<int64_t>(raw.size())); ++i) {
    cudnnBackendKnobType_t type{};
    CudnnKnob k;
    int64_t c = 0;
    TRAINRR_TRY(
        b.get(knobs[i], TRAINRR_ATTR(CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE), CUDNN_TYPE_KNOB_TYPE, 1, &c, &type));
    TRAINRR_TRY(
        b.get(knobs[i], TRAINRR_ATTR(CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE), CUDNN_TYPE_INT64, 1, &c, &k.value));
    k.type = static_cast<int32_t>(type);
    e.knobs.push_back(k);
  }
  return e;
}

// The engine configurations one heuristic mode offers for the graph, decoded; those that do not decode go to
// `left_out`.
Status heuristics(const Backend& b, const Graph& g, cudnnBackendHeurMode_t mode, const char* mode_name,
                  std::vector<CudnnEngine>* out, std::vector<std::string>* left_out) {
  Result<Desc> heur =
      b.create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, std::string("the heuristics, ") + mode_name);
  if (!heur) return heur.error();
  TRAINRR_TRY(b.set(*heur, TRAINRR_ATTR(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH), CUDNN_TYPE_BACKEND_DESCRIPTOR,
                    1, g.graph.address()));
  TRAINRR_TRY(b.set(*heur, TRAINRR_ATTR(CUDNN_ATTR_ENGINEHEUR_MODE), CUDNN_TYPE_HEUR_MODE, 1, &mode));
  TRAINRR_TRY(b.finalize(*heur));
  int64_t count = 0;
  TRAINRR_TRY(b.get(*heur, TRAINRR_ATTR(CUDNN_ATTR_ENGINEHEUR_RESULTS), CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                    &count, nullptr));
  if (count <= 0) return {};
  std::vector<Desc> cfgs;
  std::vector<cudnnBackendDescriptor_t> raw;
  TRAINRR_TRY(b.create_many(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR,
                            std::string(mode_name) + " engine configuration", static_cast<size_t>(count),
                            &cfgs, &raw));
  int64_t got = 0;
  TRAINRR_TRY(b.get(*heur, TRAINRR_ATTR(CUDNN_ATTR_ENGINEHEUR_RESULTS), CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                    &got, raw.data()));
  for (int64_t i = 0; i < std::min(got, count); ++i) {
    Result<CudnnEngine> e = decode(b, cfgs[i]);
    if (e)
      out->push_back(std::move(*e));
    else if (left_out)
      left_out->push_back(e.error().message);
  }
  return {};
}

// A plan and everything it was built from, destroyed in reverse: plan, configuration, knobs, engine, graph.
struct PlanState {
  std::shared_ptr<Graph> graph;
  Desc engine;
  std::vector<Desc> knobs;
  Desc cfg;
  Desc plan;
};

// The recorded form rebuilt: ENGINE (graph, global index), a KNOB_CHOICE per knob, ENGINECFG (engine, knobs),
// EXECUTION_PLAN (handle, configuration), each finalized. Fills `e`'s notes from the built engine and its
// workspace from the plan.
Result<std::shared_ptr<PlanState>> make_plan(const Backend& b, std::shared_ptr<Graph> g, cudnnHandle_t handle,
                                             CudnnEngine* e) {
  auto st = std::make_shared<PlanState>();
  st->graph = std::move(g);
  const std::string which = "engine " + std::to_string(e->global_index);
  Result<Desc> engine = b.create(CUDNN_BACKEND_ENGINE_DESCRIPTOR, which);
  if (!engine) return engine.error();
  st->engine = std::move(*engine);
  TRAINRR_TRY(b.set(st->engine, TRAINRR_ATTR(CUDNN_ATTR_ENGINE_OPERATION_GRAPH),
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, st->graph->graph.address()));
  TRAINRR_TRY(
      b.set(st->engine, TRAINRR_ATTR(CUDNN_ATTR_ENGINE_GLOBAL_INDEX), CUDNN_TYPE_INT64, 1, &e->global_index));
  TRAINRR_TRY(b.finalize(st->engine));
  TRAINRR_TRY(read_notes(b, st->engine, e));
  std::vector<cudnnBackendDescriptor_t> raw;
  for (const CudnnKnob& k : e->knobs) {
    Result<Desc> d = b.create(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR,
                              which + "'s knob " + std::to_string(k.type) + " = " + std::to_string(k.value));
    if (!d) return d.error();
    const auto type = static_cast<cudnnBackendKnobType_t>(k.type);
    TRAINRR_TRY(b.set(*d, TRAINRR_ATTR(CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE), CUDNN_TYPE_KNOB_TYPE, 1, &type));
    TRAINRR_TRY(b.set(*d, TRAINRR_ATTR(CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE), CUDNN_TYPE_INT64, 1, &k.value));
    TRAINRR_TRY(b.finalize(*d));
    raw.push_back(d->get());
    st->knobs.push_back(std::move(*d));
  }
  Result<Desc> cfg = b.create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, which + "'s configuration");
  if (!cfg) return cfg.error();
  st->cfg = std::move(*cfg);
  TRAINRR_TRY(b.set(st->cfg, TRAINRR_ATTR(CUDNN_ATTR_ENGINECFG_ENGINE), CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                    st->engine.address()));
  if (!raw.empty())
    TRAINRR_TRY(b.set(st->cfg, TRAINRR_ATTR(CUDNN_ATTR_ENGINECFG_KNOB_CHOICES), CUDNN_TYPE_BACKEND_DESCRIPTOR,
                      static_cast<int64_t>(raw.size()), raw.data()));
  TRAINRR_TRY(b.finalize(st->cfg));
  Result<Desc> plan = b.create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, which + "'s plan");
  if (!plan) return plan.error();
  st->plan = std::move(*plan);
  // EXECUTION_PLAN_HANDLE is marked deprecated in favour of DEVICEPROP, but a plan run with
  // cudnnBackendExecute on this handle is what trainrr wants, and the frontend still sets it.
  TRAINRR_TRY(b.set(st->plan, TRAINRR_ATTR(CUDNN_ATTR_EXECUTION_PLAN_HANDLE), CUDNN_TYPE_HANDLE, 1, &handle));
  TRAINRR_TRY(b.set(st->plan, TRAINRR_ATTR(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG),
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, st->cfg.address()));
  TRAINRR_TRY(b.finalize(st->plan));
  int64_t workspace = 0, n = 0;
  TRAINRR_TRY(b.get(st->plan, TRAINRR_ATTR(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE), CUDNN_TYPE_INT64, 1, &n,
                    &workspace));
  e->workspace = static_cast<uint64_t>(std::max<int64_t>(workspace, 0));
  return st;
}

// The plan's JSON (count first, then the text), or why there is none.
void plan_json(const Backend& b, const Desc& plan, std::string* json, std::string* note) {
  int64_t count = 0;
  if (Status s = b.get(plan, TRAINRR_ATTR(CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION), CUDNN_TYPE_CHAR, 0,
                       &count, nullptr);
      !s) {
    *note = s.error().message;
    return;
  }
  if (count <= 0) {
    *note = "cuDNN gave an empty CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION";
    return;
  }
  std::string text(static_cast<size_t>(count), '\0');
  int64_t got = 0;
  if (Status s = b.get(plan, TRAINRR_ATTR(CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION), CUDNN_TYPE_CHAR,
                       count, &got, text.data());
      !s) {
    *note = s.error().message;
    return;
  }
  text.resize(static_cast<size_t>(std::clamp<int64_t>(got, 0, count)));
  // The count includes the C string's terminator.
  while (!text.empty() && text.back() == '\0') text.pop_back();
  *json = std::move(text);
  if (json->empty()) *note = "cuDNN gave an empty CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION";
}

}  // namespace

Result<CudnnConv*> CudnnConv::load() {
  return load_once<CudnnConv>([]() -> Result<std::unique_ptr<CudnnConv>> {
    auto lib = DynamicLibrary::open(kLibrary, "cuDNN 9");
    if (!lib) return lib.error();
    std::unique_ptr<CudnnConv> c(new CudnnConv());
    c->library_ = lib->handle();
    c->api_ = std::make_unique<Api>();
#define TRAINRR_RESOLVE(name) \
  if (Status s = lib->resolve(c->api_->name, #name); !s) return s.error();
    TRAINRR_CUDNN_FUNCTIONS(TRAINRR_RESOLVE)
#undef TRAINRR_RESOLVE
    // The attribute numbers and their types are the header's (cuDNN 9.19); they hold within one major version.
    if (const size_t v = c->api_->cudnnGetVersion(); v / 10000 != CUDNN_MAJOR)
      return Error{std::string(kLibrary) + " reports cuDNN " + std::to_string(v) + ", and trainrr was built against " +
                   std::to_string(CUDNN_VERSION)};
    return c;
  });
}

CudnnConv::~CudnnConv() {
  if (handle_ && api_) api_->cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
  // The library stays loaded: plans may outlive this object, and cuDNN keeps process-wide state.
}

uint64_t CudnnConv::version() const { return api_->cudnnGetVersion(); }

Status CudnnConv::ensure_handle() {
  if (handle_) return {};
  cudnnHandle_t h = nullptr;
  if (cudnnStatus_t s = api_->cudnnCreate(&h); s != CUDNN_STATUS_SUCCESS)
    return Error{"cudnnCreate failed: " + status_text(*api_, s)};
  handle_ = h;
  return {};
}

Status CudnnConv::describe(OpKind op, const Conv2dArgs& shape) {
  Result<std::shared_ptr<Graph>> g = operation(Backend{*api_}, op, shape);
  if (!g) return g.error();
  return {};
}

Result<std::vector<CudnnEngine>> CudnnConv::candidates(OpKind op, const Conv2dArgs& shape,
                                                       std::vector<std::string>* left_out) {
  std::lock_guard<std::mutex> lock(mu_);
  TRAINRR_TRY(ensure_handle());
  const Backend b{*api_};
  const auto handle = static_cast<cudnnHandle_t>(handle_);
  Result<std::shared_ptr<Graph>> g = operation_graph(b, op, shape, handle);
  if (!g) return g.error();
  // Mode A ranks the engines it thinks fastest; FALLBACK lists engines that support the graph at all, which
  // matters where A offers nothing for a geometry.
  std::vector<CudnnEngine> offered;
  std::vector<std::string> why;
  const std::string where = " [" + geometry_text(op, shape) + "]";
  Status a = heuristics(b, **g, CUDNN_HEUR_MODE_A, "CUDNN_HEUR_MODE_A", &offered, &why);
  if (!a) why.push_back(a.error().message + where);
  Status fallback = heuristics(b, **g, CUDNN_HEUR_MODE_FALLBACK, "CUDNN_HEUR_MODE_FALLBACK", &offered, &why);
  if (!fallback) why.push_back(fallback.error().message + where);
  if (!a && !fallback)
    return Error{"cuDNN's heuristics failed: " + a.error().message + "; " + fallback.error().message};
  // The same configuration from both modes is one candidate; the first place counts.
  std::vector<CudnnEngine> out;
  for (CudnnEngine& e : offered) {
    const bool seen = std::any_of(out.begin(), out.end(), [&](const CudnnEngine& o) {
      return o.global_index == e.global_index && o.knobs == e.knobs;
    });
    if (seen) continue;
    // Only what rebuilds from the recorded form is a candidate: that is what a replay will have.
    Result<std::shared_ptr<PlanState>> plan = make_plan(b, *g, handle, &e);
    if (!plan) {
      why.push_back(cudnn_kernel_id(op, e) + ": " + plan.error().message);
      continue;
    }
    out.push_back(std::move(e));
  }
  if (left_out) left_out->insert(left_out->end(), why.begin(), why.end());
  if (out.empty()) {
    std::string all;
    for (const std::string& w : why) all += (all.empty() ? "" : "; ") + w;
    return Error{"no engine configuration of cuDNN's heuristics builds a plan for " +
                 geometry_text(op, shape) +
                 (all.empty() ? std::string(": the heuristics offered none") : ": " + all)};
  }
  return out;
}

Result<CudnnConv::Plan> CudnnConv::build(OpKind op, const Conv2dArgs& shape, const CudnnEngine& engine) {
  std::lock_guard<std::mutex> lock(mu_);
  TRAINRR_TRY(ensure_handle());
  const Backend b{*api_};
  const auto handle = static_cast<cudnnHandle_t>(handle_);
  Result<std::shared_ptr<Graph>> g = operation_graph(b, op, shape, handle);
  if (!g) return g.error();
  Plan p;
  p.op = op;
  p.shape = shape;
  p.shape.x = p.shape.filter = p.shape.dy = nullptr;
  p.shape.out = nullptr;
  p.engine.global_index = engine.global_index;
  p.engine.knobs = engine.knobs;
  Result<std::shared_ptr<PlanState>> st = make_plan(b, std::move(*g), handle, &p.engine);
  if (!st) return Error{cudnn_kernel_id(op, engine) + " does not build here: " + st.error().message};
  p.workspace = p.engine.workspace;
  plan_json(b, (*st)->plan, &p.json, &p.json_note);
  p.state = std::move(*st);
  return p;
}

Status CudnnConv::run(const Plan& plan, const Conv2dArgs& args, void* workspace, void* stream) {
  if (!plan.state) return Error{"cuDNN convolutions: run() of a plan that was not built"};
  if (!same_geometry(plan.shape, args))
    return Error{"cuDNN convolutions: a plan for " + geometry_text(plan.op, plan.shape) + " cannot run " +
                 geometry_text(plan.op, args)};
  // The variant pack by unique id (see kUidX): inputs are const to trainrr, void* to cuDNN.
  void* x = nullptr;
  void* w = nullptr;
  void* y = nullptr;
  const char *x_name = "x", *w_name = "filter", *y_name = "out";
  switch (plan.op) {
    case OpKind::conv2d_fwd:
      x = const_cast<float*>(args.x), w = const_cast<float*>(args.filter), y = args.out;
      break;
    case OpKind::conv2d_bwd_data:
      x = args.out, w = const_cast<float*>(args.filter), y = const_cast<float*>(args.dy);
      x_name = "out (dx)", y_name = "dy";
      break;
    default:
      x = const_cast<float*>(args.x), w = args.out, y = const_cast<float*>(args.dy);
      w_name = "out (dfilter)", y_name = "dy";
      break;
  }
  const std::pair<void*, const char*> pointers[] = {{x, x_name}, {w, w_name}, {y, y_name}};
  for (const auto& [ptr, name] : pointers) {
    if (!ptr) return Error{std::string("cuDNN ") + op_name(plan.op) + ": no " + name + " pointer"};
    if (reinterpret_cast<uintptr_t>(ptr) % kAlignment != 0)
      return Error{std::string("cuDNN ") + op_name(plan.op) + ": " + name + " is not aligned to " +
                   std::to_string(kAlignment) + " bytes, which its plan's tensors declare"};
  }
  if (plan.workspace > 0 && !workspace)
    return Error{std::string("cuDNN ") + op_name(plan.op) + ": the plan needs " +
                 std::to_string(plan.workspace) + " bytes of workspace and none was given"};
  const auto* st = static_cast<const PlanState*>(plan.state.get());
  const Backend b{*api_};
  Result<Desc> pack = b.create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "the variant pack");
  if (!pack) return pack.error();
  const int64_t uids[3] = {kUidX, kUidW, kUidY};
  void* data[3] = {x, w, y};
  TRAINRR_TRY(b.set(*pack, TRAINRR_ATTR(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS), CUDNN_TYPE_INT64, 3, uids));
  TRAINRR_TRY(
      b.set(*pack, TRAINRR_ATTR(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS), CUDNN_TYPE_VOID_PTR, 3, data));
  TRAINRR_TRY(
      b.set(*pack, TRAINRR_ATTR(CUDNN_ATTR_VARIANT_PACK_WORKSPACE), CUDNN_TYPE_VOID_PTR, 1, &workspace));
  TRAINRR_TRY(b.finalize(*pack));
  std::lock_guard<std::mutex> lock(mu_);
  // The plan holds the handle it was built with, which is this object's.
  const auto handle = static_cast<cudnnHandle_t>(handle_);
  if (cudnnStatus_t s = api_->cudnnSetStream(handle, static_cast<cudaStream_t>(stream));
      s != CUDNN_STATUS_SUCCESS)
    return Error{"cudnnSetStream failed: " + status_text(*api_, s)};
  if (cudnnStatus_t s = api_->cudnnBackendExecute(handle, st->plan.get(), pack->get());
      s != CUDNN_STATUS_SUCCESS)
    return Error{"cudnnBackendExecute of " + cudnn_kernel_id(plan.op, plan.engine) +
                 " failed: " + status_text(*api_, s) + " [" + geometry_text(plan.op, plan.shape) + "]"};
  return {};
}

}  // namespace trainrr::cuda
