// Tensors as the algorithm sees them: a shape, a layout and device memory the
// backend owns. Code above the backend interface never reads the memory
// directly; it asks the backend (upload, download, ops).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace tessera {

// One image or feature map: channels x height x width (batch is always 1).
struct Shape {
  int channels = 0;
  int height = 1;
  int width = 1;

  std::size_t elements() const { return std::size_t(channels) * height * width; }
  std::size_t plane() const { return std::size_t(height) * width; }
  bool operator==(const Shape&) const = default;
  std::string describe() const {
    return std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
  }
};

enum class Layout {
  planar,    // C x H x W, row-major: images, gradients, optimiser vectors, Gram matrices
  features,  // the backend's own activation layout (oneDNN: NHWC; cuDNN: NHWC)
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, Layout layout, std::shared_ptr<float> storage, std::size_t capacity)
      : shape_(shape), layout_(layout), storage_(std::move(storage)), capacity_(capacity) {}

  const Shape& shape() const { return shape_; }
  Layout layout() const { return layout_; }
  std::size_t elements() const { return shape_.elements(); }
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return !storage_; }

  // Device memory; only backends dereference it.
  float* data() { return storage_.get(); }
  const float* data() const { return storage_.get(); }

  // The same memory seen with another shape (at most the capacity): lets one
  // planned buffer serve layers of different sizes.
  Tensor view(Shape shape, Layout layout) const;

 private:
  Shape shape_;
  Layout layout_ = Layout::planar;
  std::shared_ptr<float> storage_;
  std::size_t capacity_ = 0;
};

}  // namespace tessera
