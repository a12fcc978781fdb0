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

// How a tensor's elements are stored. Images, gradients of the image,
// optimiser vectors and Gram matrices are always f32; a backend may keep
// activations (Layout::features) in bf16 when asked for 16-bit storage.
enum class DataType { f32, bf16 };

inline std::size_t bytes_per_element(DataType type) { return type == DataType::bf16 ? 2 : 4; }

class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, Layout layout, std::shared_ptr<float> storage, std::size_t capacity,
         DataType type = DataType::f32)
      : shape_(shape), layout_(layout), type_(type), storage_(std::move(storage)), capacity_(capacity) {}

  const Shape& shape() const { return shape_; }
  Layout layout() const { return layout_; }
  DataType type() const { return type_; }
  std::size_t elements() const { return shape_.elements(); }
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return !storage_; }

  // Device memory; only backends dereference it (as type() says).
  float* data() { return storage_.get(); }
  const float* data() const { return storage_.get(); }

  // The same memory seen with another shape (at most the capacity, same
  // element type): lets one planned buffer serve layers of different sizes.
  Tensor view(Shape shape, Layout layout) const;
  // A contiguous part of this tensor, from element `offset`, seen with its
  // own shape (planar f32 only): lets one optimiser vector hold every tile's
  // owned pixels while each tile reads its own part.
  Tensor slice(std::size_t offset, Shape shape) const;

 private:
  Shape shape_;
  Layout layout_ = Layout::planar;
  DataType type_ = DataType::f32;
  std::shared_ptr<float> storage_;
  std::size_t capacity_ = 0;
};

}  // namespace tessera
