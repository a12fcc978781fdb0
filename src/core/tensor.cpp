#include "tessera/tensor.hpp"

#include "tessera/error.hpp"

namespace tessera {

Tensor Tensor::view(Shape shape, Layout layout) const {
  if (shape.elements() > capacity_)
    fail("internal: view of ", shape.describe(), " exceeds a buffer of ", capacity_, " floats");
  return Tensor(shape, layout, storage_, capacity_);
}

}  // namespace tessera
