// The parts of the backend interface that are the same for every backend.
#include "tessera/backend.hpp"

#include <cmath>
#include <cstdlib>
#include <string_view>

#include "tessera/error.hpp"

namespace tessera {

Precision parse_precision(const std::string& text) {
  if (text == "f32") return Precision::f32;
  if (text == "bf16") return Precision::bf16;
  fail("unknown precision '", text, "' (f32 or bf16)");
}

float AdamState::step_size() const {
  const double t = double(step + 1);
  const double correction1 = 1.0 - std::pow(double(beta1), t);
  const double correction2 = 1.0 - std::pow(double(beta2), t);
  return float(learning_rate * std::sqrt(correction2) / correction1);
}

const char* precision_name(Precision precision) { return precision == Precision::bf16 ? "bf16" : "f32"; }

bool poison_unset_buffers() {
  static const bool poison = [] {
    const char* value = std::getenv("TESSERA_POISON_BUFFERS");
    return value && *value && std::string_view(value) != "0";
  }();
  return poison;
}

namespace {

void require_same_size(const Tensor& a, const Tensor& b, const char* what) {
  if (a.elements() != b.elements())
    fail("internal: ", what, " on tensors of ", a.elements(), " and ", b.elements(), " elements");
}

void require_f32(const Tensor& a, const char* what) {
  if (a.type() != DataType::f32) fail("internal: ", what, " needs f32 tensors");
}

bool inside(const Box& window, const Shape& map) {
  return window.x0 >= 0 && window.y0 >= 0 && window.x1 <= map.width && window.y1 <= map.height;
}

}  // namespace

// --------------------------------------------------------------- Gram

void GramOperator::check(const Tensor& features, const Box& window, const Tensor& square) const {
  if (!(features.shape() == shape_) || features.layout() != Layout::features || features.type() != type_)
    fail("internal: Gram planned for ", shape_.describe(), " got ", features.shape().describe());
  if (!inside(window, shape_) || window.empty()) fail("internal: Gram window outside the feature map");
  if (square.elements() != std::size_t(shape_.channels) * shape_.channels || square.type() != DataType::f32)
    fail("internal: Gram matrix has the wrong size or type");
}

void GramOperator::forward(const Tensor& features, const Box& window, float scale, Tensor& gram) {
  check(features, window, gram);
  do_forward(features, window, scale, gram);
}

void GramOperator::forward_contiguous(const Tensor& features, const Box& window, float scale, Tensor& gram) {
  check(features, window, gram);
  do_forward_contiguous(features, window, scale, gram);
}

void GramOperator::backward(const Tensor& features, const Box& window, const Tensor& d, float scale,
                            Tensor& grad_features) {
  check(features, window, d);
  if (!(grad_features.shape() == shape_) || grad_features.layout() != Layout::features ||
      grad_features.type() != type_)
    fail("internal: Gram adjoint into ", grad_features.shape().describe(), " for features ", shape_.describe());
  do_backward(features, window, d, scale, grad_features);
}

// ------------------------------------------------------------ Backend

void Backend::count_allocated(std::size_t bytes) {
  const std::size_t now = current_bytes_.fetch_add(bytes) + bytes;
  std::size_t peak = peak_bytes_.load();
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now)) {
  }
}

std::uint64_t Backend::fingerprint(std::span<const float> values) {
  std::uint64_t hash = 1469598103934665603ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (std::size_t i = 0, n = values.size_bytes(); i < n; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  return hash;
}

Tensor Backend::allocate(Shape shape, Layout layout, Contents contents) {
  if (shape.channels < 0 || shape.height < 0 || shape.width < 0)
    fail("internal: allocate of shape ", shape.describe());
  return do_allocate(shape, layout, contents);
}

void Backend::upload(std::span<const float> host, Tensor& tensor) {
  if (host.size() != tensor.elements())
    fail("internal: upload of ", host.size(), " floats into a tensor of ", tensor.elements());
  do_upload(host, tensor);
}

void Backend::download(const Tensor& tensor, std::span<float> host) {
  if (host.size() != tensor.elements())
    fail("internal: download of ", tensor.elements(), " floats into ", host.size());
  do_download(tensor, host);
}

std::unique_ptr<ConvolutionLayer> Backend::plan_convolution(const LayerSpec& spec, const ConvWeights& weights,
                                                            Shape input, Layout input_layout) {
  if (weights.weight.size() !=
      std::size_t(weights.out_channels) * weights.in_channels * weights.kernel_h * weights.kernel_w)
    fail("internal: ", weights.name, " has the wrong size");
  if (weights.in_channels != input.channels)
    fail("internal: ", weights.name, " takes ", weights.in_channels, " channels, planned for ", input.channels);
  return do_plan_convolution(spec, weights, input, input_layout);
}

std::unique_ptr<PoolingLayer> Backend::plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) {
  return do_plan_pooling(spec, pooling, input);
}

std::unique_ptr<GramOperator> Backend::plan_gram(Shape features) { return do_plan_gram(features); }

void Backend::convert(const Tensor& source, Tensor& destination) {
  if (!(source.shape() == destination.shape()))
    fail("internal: convert between shapes ", source.shape().describe(), " and ", destination.shape().describe());
  if (source.layout() == destination.layout() && source.type() == destination.type()) {
    copy(source, destination);
    return;
  }
  do_convert(source, destination);
}

double Backend::squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale,
                                 Tensor* grad_a) {
  require_same_size(a, b, "squared_distance");
  if (a.layout() != b.layout() || (grad_a && grad_a->layout() != a.layout()))
    fail("internal: squared_distance on tensors of different layouts");
  if (grad_a) require_same_size(a, *grad_a, "squared_distance");
  if (!inside(window, a.shape())) fail("internal: squared_distance window outside the map");
  if (window.empty()) return 0.0;
  return do_squared_distance(a, b, window, grad_scale, grad_a);
}

double Backend::window_sum_abs(const Tensor& a, const Box& window) {
  if (!inside(window, a.shape())) fail("internal: window_sum_abs window outside the map");
  if (window.empty()) return 0.0;
  return do_window_sum_abs(a, window);
}

double Backend::total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted) {
  require_f32(image, "total_variation");
  require_f32(grad, "total_variation");
  if (image.layout() != Layout::planar || grad.layout() != Layout::planar)
    fail("internal: total_variation needs planar tensors");
  require_same_size(image, grad, "total_variation");
  return do_total_variation(image, weight, grad, counted);
}

void Backend::copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y) {
  require_f32(source, "copy_window");
  require_f32(destination, "copy_window");
  const Shape& s = source.shape();
  const Shape& d = destination.shape();
  if (source.layout() != Layout::planar || destination.layout() != Layout::planar || s.channels != d.channels ||
      !inside(window, s) || !inside(Box::at(x, y, window.width(), window.height()), d))
    fail("internal: copy_window out of bounds");
  if (window.empty()) return;
  do_copy_window(source, window, destination, x, y);
}

double Backend::dot(const Tensor& a, const Tensor& b) {
  require_same_size(a, b, "dot");
  require_f32(a, "dot");
  require_f32(b, "dot");
  return do_dot(a, b);
}

double Backend::sum_abs(const Tensor& a) {
  require_f32(a, "sum_abs");
  return do_sum_abs(a);
}

void Backend::fill(Tensor& a, float value) { do_fill(a, value); }

void Backend::copy(const Tensor& source, Tensor& destination) {
  require_same_size(source, destination, "copy");
  if (source.type() != destination.type()) fail("internal: copy between element types");
  if (source.data() == destination.data()) return;
  do_copy(source, destination);
}

void Backend::scale(Tensor& a, float factor) {
  require_f32(a, "scale");
  do_scale(a, factor);
}

void Backend::axpy(float alpha, const Tensor& x, Tensor& y) {
  require_same_size(x, y, "axpy");
  do_axpy(alpha, x, y);
}

void Backend::dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                           std::span<double> products) {
  if (products.size() != rows.size() * columns.size())
    fail("internal: dot_products of ", rows.size(), " rows and ", columns.size(), " columns into ", products.size(),
         " products");
  if (products.empty()) return;
  const Tensor& first = *rows.front();
  for (const auto* group : {&rows, &columns})
    for (const Tensor* t : *group) {
      if (!t) fail("internal: dot_products of a missing tensor");
      require_same_size(first, *t, "dot_products");
      require_f32(*t, "dot_products");
    }
  do_dot_products(rows, columns, products);
}

void Backend::combine(std::span<const Tensor* const> terms, std::span<const double> coefficients, Tensor& out) {
  if (terms.size() != coefficients.size())
    fail("internal: combine of ", terms.size(), " terms with ", coefficients.size(), " coefficients");
  if (terms.empty()) fail("internal: combine of no terms");
  require_f32(out, "combine");
  for (const Tensor* t : terms) {
    if (!t) fail("internal: combine of a missing tensor");
    require_same_size(out, *t, "combine");
    require_f32(*t, "combine");
  }
  do_combine(terms, coefficients, out);
}

void Backend::subtract(const Tensor& a, const Tensor& b, Tensor& d) {
  require_same_size(a, b, "subtract");
  require_same_size(a, d, "subtract");
  require_f32(a, "subtract");
  require_f32(b, "subtract");
  require_f32(d, "subtract");
  do_subtract(a, b, d);
}

DoubleBuffer Backend::allocate_doubles(std::size_t count) { return do_allocate_doubles(count); }

void Backend::clear(DoubleBuffer& sums) {
  if (sums.size() > 0) do_clear(sums);
}

namespace {

void require_inside(const DoubleBuffer& sums, std::size_t offset, std::size_t count, const char* what) {
  if (offset > sums.size() || count > sums.size() - offset)
    fail("internal: ", what, " of ", count, " values at ", offset, " in a buffer of ", sums.size());
}

}  // namespace

void Backend::accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset) {
  require_f32(values, "accumulate_double");
  require_inside(sums, offset, values.elements(), "accumulate_double");
  if (values.elements() > 0) do_accumulate_double(values, sums, offset);
}

void Backend::assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values) {
  require_f32(values, "assign_from_double");
  require_inside(sums, offset, values.elements(), "assign_from_double");
  if (values.elements() > 0) do_assign_from_double(sums, offset, values);
}

void Backend::write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset) {
  require_inside(sums, offset, values.size(), "write_doubles");
  if (!values.empty()) do_write_doubles(values, sums, offset);
}

void Backend::read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values) {
  require_inside(sums, offset, values.size(), "read_doubles");
  if (!values.empty()) do_read_doubles(sums, offset, values);
}

void Backend::adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) {
  for (const Tensor* t : {&g, static_cast<const Tensor*>(&m), static_cast<const Tensor*>(&v)})
    require_same_size(x, *t, "adam_update");
  for (const Tensor* t : {static_cast<const Tensor*>(&x), &g, static_cast<const Tensor*>(&m), static_cast<const Tensor*>(&v)})
    require_f32(*t, "adam_update");
  do_adam_update(x, g, m, v, state);
}

}  // namespace tessera
