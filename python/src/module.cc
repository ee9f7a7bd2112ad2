// The `trainrr._trainrr` extension: the engine, recorder and replayer, bound for the Python package in
// python/trainrr (which gives them their Keras shape).

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "engine/device.h"
#if TRAINRR_WITH_CUDA
#include "cuda/cupti_session.h"
#include "cuda/device.h"
#include "cuda/engine_device.h"
#include "recorder/kernel_source.h"
#endif
#include "engine/config.h"
#include "python/src/errors.h"
#include "python/src/reports.h"
#include "python/src/run.h"
#include "python/src/trace_file.h"
#include "replayer/report_file.h"
#include "replayer/report_html.h"

namespace pyb = pybind11;
using namespace pybind11::literals;

namespace trainrr::py {
namespace {

// An engine vector handed to numpy without a copy: the array owns it.
pyb::array_t<float> to_numpy(Tensor&& t) {
  auto* owned = new std::vector<float>(std::move(t.data));
  pyb::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return pyb::array_t<float>(t.shape, owned->data(), free_when_done);
}

pyb::array_t<double> to_numpy(std::vector<double>&& v) {
  auto* owned = new std::vector<double>(std::move(v));
  pyb::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<double>*>(p); });
  return pyb::array_t<double>({static_cast<pyb::ssize_t>(owned->size())}, owned->data(), free_when_done);
}

// numpy's float32, C-contiguous copy of `a` (forcecast converts; the Python side has checked the dtype).
using FloatArray = pyb::array_t<float, pyb::array::c_style | pyb::array::forcecast>;

Tensor to_tensor(const FloatArray& a) {
  Tensor t;
  t.shape.assign(a.shape(), a.shape() + a.ndim());
  t.data.resize(static_cast<size_t>(a.size()));
  if (a.size()) std::memcpy(t.data.data(), a.data(), sizeof(float) * static_cast<size_t>(a.size()));
  return t;
}

pyb::dict layer_dict(const LayerSpec& l) {
  pyb::dict d("type"_a = l.type, "name"_a = l.name, "activation"_a = l.activation);
  if (l.type == "Dense") {
    d["units"] = l.units;
  } else if (l.type == "Conv2D") {
    d["filters"] = l.filters;
    d["kernel_size"] = pyb::make_tuple(l.kernel_size[0], l.kernel_size[1]);
    d["strides"] = pyb::make_tuple(l.strides[0], l.strides[1]);
    d["padding"] = l.padding;
  } else if (l.type == "MaxPool2D" || l.type == "MaxPooling2D") {
    d["pool_size"] = pyb::make_tuple(l.pool_size[0], l.pool_size[1]);
    if (l.strides_given) d["strides"] = pyb::make_tuple(l.strides[0], l.strides[1]);
    d["padding"] = l.padding;
  } else if (l.type == "Dropout") {
    d["rate"] = l.rate;
  } else if (l.type == "BatchNormalization") {
    d["momentum"] = l.momentum;
    d["epsilon"] = l.epsilon;
  }
  if (l.type == "Dense" || l.type == "Conv2D") {
    d["kernel_initializer"] = l.kernel_initializer;
    d["use_bias"] = l.use_bias;
  }
  return d;
}

// A configuration as the Python API describes a run: layers, compile and fit arguments, data, runtime.
pyb::dict config_dict(const RunConfig& c) {
  pyb::list layers;
  for (const LayerSpec& l : c.layers) layers.append(layer_dict(l));
  const OptimizerConfig& o = c.train.optimizer;
  pyb::dict optimizer("type"_a = o.type, "learning_rate"_a = o.learning_rate);
  if (o.type == "sgd") {
    optimizer["momentum"] = o.momentum;
    optimizer["nesterov"] = o.nesterov;
  } else if (o.type == "adam" || o.type == "adamw") {
    optimizer["beta_1"] = o.beta_1;
    optimizer["beta_2"] = o.beta_2;
    optimizer["epsilon"] = o.epsilon;
    if (o.type == "adamw") optimizer["weight_decay"] = o.weight_decay;
  } else if (o.type == "rmsprop") {
    optimizer["rho"] = o.rho;
    optimizer["momentum"] = o.momentum;
    optimizer["epsilon"] = o.epsilon;
    optimizer["centered"] = o.centered;
  }
  const DataConfig& d = c.data;
  pyb::dict data("source"_a = d.source, "path"_a = d.path, "labels"_a = d.labels, "label"_a = d.label,
                 "test_fraction"_a = d.test_fraction, "stratify"_a = d.stratify, "split"_a = d.split,
                 "scale"_a = d.scale, "reshape"_a = d.reshape, "shape"_a = d.shape, "classes"_a = d.classes,
                 "samples"_a = d.samples);
  pyb::dict augment("noise_stddev"_a = c.augment.noise_stddev, "flip"_a = c.augment.flip,
                    "shift"_a = c.augment.shift);
  pyb::dict train("epochs"_a = c.train.epochs, "batch_size"_a = c.train.batch_size, "shuffle"_a = c.train.shuffle,
                  "loss"_a = c.train.loss, "from_logits"_a = c.train.from_logits,
                  "validation_split"_a = c.train.validation_split);
  pyb::object seed = c.seed ? pyb::object(pyb::int_(*c.seed)) : pyb::object(pyb::none());
  return pyb::dict("seed"_a = seed, "layers"_a = layers, "optimizer"_a = optimizer, "data"_a = data,
                   "augment"_a = augment, "train"_a = train, "threads"_a = c.runtime.threads,
                   "policy"_a = c.runtime.policy, "device"_a = c.runtime.device, "tf32"_a = c.runtime.tf32,
                   "file"_a = c.file, "text"_a = c.text);
}

pyb::dict parse(const ConfigSource& source) {
  Result<RunConfig> config = [&] {
    pyb::gil_scoped_release released;
    return read_config(source);
  }();
  if (!config) raise(ErrorKind::config, config.error().message);
  return config_dict(*config);
}

pyb::dict evaluation_dict(const Evaluation& e) {
  return pyb::dict("loss"_a = e.loss, "accuracy"_a = e.accuracy, "rows"_a = e.rows);
}

pyb::tuple checkpoint_tuple(trace::TraceCheckpoint&& c) {
  pyb::dict tensors;
  for (NamedTensor& t : c.tensors) tensors[pyb::str(t.name)] = to_numpy(std::move(t.value));
  pyb::dict info("step"_a = c.step, "epochs_done"_a = c.epoch, "batch_in_epoch"_a = c.batch_in_epoch,
                 "seed"_a = c.seed, "rng_offsets"_a = c.rng_offsets, "scalars"_a = c.scalars);
  return pyb::make_tuple(tensors, info);
}

}  // namespace
}  // namespace trainrr::py

PYBIND11_MODULE(_trainrr, m) {
  using namespace trainrr;
  using namespace trainrr::py;
  m.doc() = "The trainrr engine, recorder and replayer (use the trainrr package, not this module).";
#if TRAINRR_WITH_CUDA
  set_cuda_probe(&cuda::probe_gpu);
  set_cuda_backend(&cuda::open_cuda_device);
  set_kernel_source_factory(&cuda::open_cupti_session);
#endif

  pyb::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const PyError& e) {
      if (e.kind == ErrorKind::interrupted) {
        PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
        return;
      }
      static const char* names[] = {"ConfigError", "DataError", "TraceError", "", "DeviceError"};
      pyb::object cls = pyb::module_::import("trainrr._errors").attr(names[static_cast<int>(e.kind)]);
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  m.attr("version") = TRAINRR_VERSION;

  m.def(
      "load_config",
      [](const std::string& path, const std::vector<std::string>& overrides) {
        return parse(ConfigSource{path, "", "", "", overrides});
      },
      "path"_a, "overrides"_a = std::vector<std::string>{});
  m.def(
      "parse_config",
      [](const std::string& text, const std::string& name, const std::string& base_dir,
         const std::vector<std::string>& overrides) {
        return parse(ConfigSource{"", text, name, base_dir, overrides});
      },
      "text"_a, "name"_a, "base_dir"_a, "overrides"_a = std::vector<std::string>{});

  pyb::class_<Run>(m, "Run")
      .def(pyb::init([](const std::string& file, const std::string& text, const std::string& name,
                        const std::string& base_dir, const std::vector<std::string>& overrides,
                        std::optional<pyb::dict> record, pyb::object log, bool progress, pyb::object warnings) {
             std::optional<RecordSettings> settings;
             if (record) {
               settings.emplace();
               settings->path = (*record)["path"].cast<std::string>();
               settings->level = (*record)["level"].cast<std::string>();
               settings->checkpoint_every = (*record)["checkpoint_every"].cast<int64_t>();
               settings->embed_data = (*record)["embed_data"].cast<bool>();
             }
             return std::make_unique<Run>(ConfigSource{file, text, name, base_dir, overrides}, settings,
                                          std::move(log), progress, std::move(warnings));
           }),
           "file"_a, "text"_a, "name"_a, "base_dir"_a, "overrides"_a, "record"_a, "log"_a, "progress"_a,
           "warnings"_a)
      .def("fit", &Run::fit, "catch_sigint"_a)
      .def("interrupted", &Run::interrupted)
      .def("evaluate",
           [](Run& r, const FloatArray& x, const FloatArray& y) {
             Dataset d;
             d.x = to_tensor(x);
             d.y.assign(y.data(), y.data() + y.size());
             return evaluation_dict(r.evaluate(std::move(d)));
           })
      .def("evaluate_test", [](Run& r) { return evaluation_dict(r.evaluate_test()); })
      .def("predict", [](Run& r, const FloatArray& x) { return to_numpy(r.predict(to_tensor(x))); })
      .def("history",
           [](Run& r) {
             pyb::list out;
             for (const EpochSummary& e : r.training().history()) out.append(pyb::cast(e.logs));
             return out;
           })
      .def("weights",
           [](Run& r) {
             pyb::dict out;
             for (NamedTensor& t : r.training().weights()) out[pyb::str(t.name)] = to_numpy(std::move(t.value));
             return out;
           })
      .def("summary", [](Run& r) { return r.training().model().summary(); })
      .def_property_readonly("seed", [](Run& r) { return r.training().seed(); })
      .def_property_readonly("step", [](Run& r) { return r.training().step(); })
      .def_property_readonly("total_steps", [](Run& r) { return r.training().total_steps(); })
      .def_property_readonly("steps_per_epoch", [](Run& r) { return r.training().steps_per_epoch(); })
      .def_property_readonly("threads", [](Run& r) { return r.training().threads(); })
      .def_property_readonly("has_test", [](Run& r) { return r.training().has_test(); })
      .def_property_readonly("loss", [](Run& r) { return r.config().train.loss; })
      .def_property_readonly("sample_shape", [](Run& r) { return r.training().train_data().sample_shape(); })
      .def_property_readonly("trace_bytes", &Run::trace_bytes);

  // The rule of --html, for Report.save_html: ("", "") where a report may be written to `path`, else the
  // problem's name and a message that names the path.
  m.def(
      "check_html_path",
      [](const std::string& path) {
        const ReportPathCheck c = check_html_report_path(path);
        static const char* names[] = {
            "", "empty", "folder", "no_folder", "cannot_write", "not_a_report", "dangling_link"};
        return pyb::make_tuple(names[static_cast<int>(c.problem)], c.message);
      },
      "path"_a);
  // The write of --html, for Report.save_html: "" once the page is in place, else the message of what failed.
  m.def(
      "write_html",
      [](const std::string& path, const std::string& page) {
        const Status s = write_html_report(path, page);
        return s.ok() ? std::string() : s.error().message;
      },
      "path"_a, "page"_a);

  pyb::class_<Report>(m, "Report")
      .def("text", &Report::text)
      .def("json", &Report::json)
      .def("html", &Report::html)
      .def_readonly("log", &Report::log)
      .def_readonly("exit_code", &Report::exit_code)
      .def_readonly("damage", &Report::damage);

  m.def(
      "replay",
      [](const std::string& trace, const std::string& force, const std::vector<std::string>& overrides,
         const std::string& data, bool allow_data_change, int64_t from_step, int64_t to_step, bool keep_going,
         bool element_detail, bool catch_sigint) {
        return replay_trace(ReplaySettings{trace, force, overrides, data, allow_data_change, from_step,
                                           to_step, keep_going, element_detail},
                            catch_sigint);
      },
      "trace"_a, "force"_a, "overrides"_a, "data"_a, "allow_data_change"_a, "from_step"_a, "to_step"_a,
      "keep_going"_a, "element_detail"_a, "catch_sigint"_a);
  m.def("diff", &diff_traces, "a"_a, "b"_a);
  m.def("bisect", &bisect_trace, "trace"_a, "against"_a, "overrides"_a, "data"_a, "catch_sigint"_a);

  pyb::class_<TraceFile>(m, "TraceFile")
      .def(pyb::init<std::string>(), "path"_a)
      .def("header_json", &TraceFile::header_json)
      .def("config", [](TraceFile& t) { return t.header().config; })
      .def("environment", [](TraceFile& t) { return t.header().environment; })
      .def("read",
           [](TraceFile& t, bool messages) {
             TraceContents c = t.read(messages);
             pyb::list out;
             for (MessageJson& msg : c.messages)
               out.append(pyb::make_tuple(msg.kind, msg.json, pyb::cast(msg.events), msg.end));
             pyb::object stop = c.stop ? pyb::object(pyb::str(*c.stop)) : pyb::object(pyb::none());
             return pyb::make_tuple(out, to_numpy(std::move(c.losses)), stop, c.stop_truncated, c.notes);
           },
           "messages"_a)
      .def("checkpoint_steps", &TraceFile::checkpoint_steps)
      .def("checkpoint", [](TraceFile& t, int64_t step) { return checkpoint_tuple(t.checkpoint(step)); });
}
