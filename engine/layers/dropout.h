#pragma once
// Dropout, inverted as Keras does it: in training each element is kept with probability 1 - rate and
// scaled by 1 / (1 - rate); at inference it is the identity. The mask comes from one uniform draw per batch
// on stream "dropout/<name>", so dropout never shifts any other stream.

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device_backend.h"
#include "engine/layers/layer.h"

namespace trainrr {

class Dropout : public Layer {
 public:
  Dropout(std::string name, double rate);  // 0 <= rate < 1

  std::string type() const override { return "Dropout"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;

  double rate() const { return rate_; }

 private:
  double rate_;
  bool masked_ = false;        // whether the last forward applied a mask
  std::vector<float> u_;       // the last draw, one per element
  Tensor y_;                   // the last forward output
  Tensor dx_;                  // the last backward's input gradient
  std::vector<uint8_t> keep_;  // per element: kept by the last forward
  // In a run on a device: the draw's uniforms and the keep mask in device memory.
  Tensor u_device_;
  DeviceArray keep_device_;
  float scale_ = 1;            // 1 / (1 - rate)
  std::string site_, probe_fwd_, probe_bwd_, probe_out_, probe_dx_;
};

}  // namespace trainrr
