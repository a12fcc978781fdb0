#include "tessera/tensor.hpp"

#include "tessera/error.hpp"

namespace tessera {

Tensor Tensor::view(Shape shape, Layout layout) const {
  if (shape.elements() > capacity_)
    fail("internal: view of ", shape.describe(), " exceeds a buffer of ", capacity_, " floats");
  return Tensor(shape, layout, storage_, capacity_, type_);
}

Tensor Tensor::slice(std::size_t offset, Shape shape) const {
  if (type_ != DataType::f32 || layout_ != Layout::planar) fail("internal: slices are of planar f32 tensors");
  if (offset + shape.elements() > capacity_)
    fail("internal: slice [", offset, ", ", offset + shape.elements(), ") beyond ", capacity_, " floats");
  // The aliasing constructor keeps the whole buffer alive through the slice.
  return Tensor(shape, Layout::planar, std::shared_ptr<float>(storage_, storage_.get() + offset), shape.elements());
}

}  // namespace tessera
