#pragma once
// Feature scaling fitted on the training split only, then applied unchanged to every split (as with
// sklearn's StandardScaler / MinMaxScaler or a Keras Normalization layer adapted on training data).
// Features: the last dimension of [rows, features]; for images, every element of the sample shape.

#include <vector>

#include "engine/tensor.h"

namespace trainrr {

enum class ScaleKind { none, standardize, minmax };

struct Scaler {
  ScaleKind kind = ScaleKind::none;
  // One per feature: x -> (x - shift) / scale. Empty for `none`.
  std::vector<float> shift, scale;

  // standardize: shift = mean, scale = population standard deviation (ddof 0);
  // minmax: shift = min, scale = max - min. A zero scale becomes 1 so constant features map to 0.
  // Statistics are summed in double in row order, so the result does not depend on threads or machine.
  static Scaler fit(ScaleKind kind, const Tensor& x_train);
  // x: [rows, ...] with the same features per row as the data fitted.
  void apply(Tensor& x) const;
};

}  // namespace trainrr
