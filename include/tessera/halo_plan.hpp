// Filling the grown images of a rank's tiles (DESIGN.md section 2): each
// takes, from every tile whose owned box it overlaps (its own included), the
// pixels of that overlap. Worked out once for a tile layout and rank map, as
// AMReX's FillBoundary plan is: copies between this rank's tiles go device
// to device; the rest travel in one message per peer each way, packed in
// the plan's order on both sides, in buffers of the backend's memory.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/tiled_image.hpp"

namespace tessera {

class HaloPlan {
 public:
  // For this rank's tiles of `image` (which the plan refers to: it must
  // outlive the plan).
  HaloPlan(Backend& backend, Communicator& communicator, const TiledImage& image);
  ~HaloPlan();

  // The grown image of this rank's `local`-th tile (in tile order).
  using GrownImage = std::function<Tensor&(int local)>;

  // Starts filling the grown images from `local_image` (a vector of the
  // tiled image's layout): packs and sends what
  // other ranks need and copies what this rank's tiles need from each
  // other. Until finish() the parts that come from other ranks are not in
  // place, and `local_image` must stay as it is.
  void begin(const Tensor& local_image, const GrownImage& grown);
  // Waits for the messages and places what they brought.
  void finish();
  // begin() and finish() at once.
  void fill(const Tensor& local_image, const GrownImage& grown) {
    begin(local_image, grown);
    finish();
  }

 private:
  struct Item;
  Backend& backend_;
  Communicator& communicator_;
  const TiledImage& image_;
  std::vector<Item> items_;
  std::vector<BufferTransfer> sends_, receives_;  // one message per peer each way, in peer order
  std::unique_ptr<PendingExchange> pending_;  // none where this rank has no peers
  bool under_way_ = false;
  GrownImage grown_;                       // of the exchange under way
};

}  // namespace tessera
