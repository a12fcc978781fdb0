// How the ranks of a render agree on global sums: Gram matrices, loss values
// and every dot product the optimiser takes. One process is the trivial case.
#pragma once

#include <span>

namespace tessera {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums across all ranks.
  virtual void sum(std::span<double> values) = 0;
  virtual void sum(std::span<float> values) = 0;
  virtual double max(double value) = 0;

  double sum(double value) {
    sum(std::span<double>(&value, 1));
    return value;
  }
};

// A render in one process: every reduction is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void sum(std::span<double>) override {}
  void sum(std::span<float>) override {}
  double max(double value) override { return value; }
  using Communicator::sum;
};

}  // namespace tessera
