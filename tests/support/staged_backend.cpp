#include "support/staged_backend.hpp"

namespace tessera::testing {
namespace {

class StagedBackend final : public Backend {
 public:
  explicit StagedBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name() + " (staged)"; }
  void set_precision(Precision precision) override { inner_->set_precision(precision); }
  Precision precision() const override { return inner_->precision(); }
  std::vector<std::string> describe() const override { return inner_->describe(); }
  void set_threads(int threads) override { inner_->set_threads(threads); }
  bool host_memory() const override { return false; }
  std::size_t free_device_bytes() const override { return 0; }

 private:
  Tensor do_allocate(Shape shape, Layout layout, Contents contents) override {
    return inner_->allocate(shape, layout, contents);
  }
  void do_upload(std::span<const float> host, Tensor& tensor) override { inner_->upload(host, tensor); }
  void do_download(const Tensor& tensor, std::span<float> host) override { inner_->download(tensor, host); }
  std::unique_ptr<ConvolutionLayer> do_plan_convolution(const LayerSpec& spec, const ConvWeights& weights, Shape input,
                                                        Layout input_layout) override {
    return inner_->plan_convolution(spec, weights, input, input_layout);
  }
  std::unique_ptr<PoolingLayer> do_plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) override {
    return inner_->plan_pooling(spec, pooling, input);
  }
  std::unique_ptr<GramOperator> do_plan_gram(Shape features) override { return inner_->plan_gram(features); }
  void do_convert(const Tensor& source, Tensor& destination) override { inner_->convert(source, destination); }
  double do_squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale,
                             Tensor* grad_a) override {
    return inner_->squared_distance(a, b, window, grad_scale, grad_a);
  }
  double do_window_sum_abs(const Tensor& a, const Box& window) override { return inner_->window_sum_abs(a, window); }
  double do_total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted) override {
    return inner_->total_variation(image, weight, grad, counted);
  }
  void do_copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y) override {
    inner_->copy_window(source, window, destination, x, y);
  }
  double do_dot(const Tensor& a, const Tensor& b) override { return inner_->dot(a, b); }
  double do_sum_abs(const Tensor& a) override { return inner_->sum_abs(a); }
  void do_fill(Tensor& a, float value) override { inner_->fill(a, value); }
  void do_copy(const Tensor& source, Tensor& destination) override { inner_->copy(source, destination); }
  void do_scale(Tensor& a, float factor) override { inner_->scale(a, factor); }
  void do_axpy(float alpha, const Tensor& x, Tensor& y) override { inner_->axpy(alpha, x, y); }
  void do_subtract(const Tensor& a, const Tensor& b, Tensor& d) override { inner_->subtract(a, b, d); }
  void do_dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                       std::span<double> products) override {
    inner_->dot_products(rows, columns, products);
  }
  void do_combine(std::span<const Tensor* const> terms, std::span<const double> coefficients, Tensor& out) override {
    inner_->combine(terms, coefficients, out);
  }
  DoubleBuffer do_allocate_doubles(std::size_t count) override { return inner_->allocate_doubles(count); }
  void do_clear(DoubleBuffer& sums) override { inner_->clear(sums); }
  void do_accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset) override {
    inner_->accumulate_double(values, sums, offset);
  }
  void do_assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values) override {
    inner_->assign_from_double(sums, offset, values);
  }
  void do_write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset) override {
    inner_->write_doubles(values, sums, offset);
  }
  void do_read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values) override {
    inner_->read_doubles(sums, offset, values);
  }
  void do_adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) override {
    inner_->adam_update(x, g, m, v, state);
  }

  std::unique_ptr<Backend> inner_;
};

}  // namespace

std::unique_ptr<Backend> staged_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<StagedBackend>(std::move(inner));
}

}  // namespace tessera::testing
