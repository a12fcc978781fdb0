#include "tessera/halo_plan.hpp"

#include <algorithm>
#include <map>

#include "tessera/error.hpp"

namespace tessera {

// A box of pixels one tile owns that another's grown image needs.
struct HaloPlan::Item {
  enum Kind { local_copy, send, receive } kind = local_copy;
  int from_local = -1;  // local tile owning the pixels (local_copy, send)
  int to_local = -1;    // local tile whose grown image needs them (local_copy, receive)
  Box box;              // in image pixels
  int peer = -1;        // send, receive
  std::size_t buffer_offset = 0;
  Tensor staging;  // 3 x box, for send and receive
};

namespace {

// `box` in the coordinates of `frame` (a tile's grown or owned box).
Box window_in(const Box& box, const Box& frame) { return box.shift(-frame.x0, -frame.y0); }

}  // namespace

HaloPlan::HaloPlan(Backend& backend, Communicator& communicator, const TiledImage& image)
    : backend_(backend), communicator_(communicator), image_(image) {
  const int me = communicator.rank();
  const TileGrid& grid = image.grid();
  const RankMap& ranks = image.ranks();
  std::map<int, int> local_index;
  for (std::size_t i = 0; i < image.local_tiles().size(); ++i) local_index[image.local_tiles()[i].index] = int(i);
  std::map<int, std::size_t> send_size, receive_size;
  for (const Tile& needing : grid.tiles)
    for (const Tile& owning : grid.tiles) {
      Box box = owning.owned.intersect(needing.grown);
      if (box.empty()) continue;
      const bool need_here = ranks.rank_of(needing.index) == me, own_here = ranks.rank_of(owning.index) == me;
      Item item;
      item.box = box;
      if (need_here && own_here) {
        item.kind = Item::local_copy;
        item.from_local = local_index[owning.index];
        item.to_local = local_index[needing.index];
      } else if (own_here) {
        item.kind = Item::send;
        item.from_local = local_index[owning.index];
        item.peer = ranks.rank_of(needing.index);
        item.buffer_offset = send_size[item.peer];
        send_size[item.peer] += 3 * std::size_t(box.area());
      } else if (need_here) {
        item.kind = Item::receive;
        item.to_local = local_index[needing.index];
        item.peer = ranks.rank_of(owning.index);
        item.buffer_offset = receive_size[item.peer];
        receive_size[item.peer] += 3 * std::size_t(box.area());
      } else {
        continue;
      }
      if (item.kind != Item::local_copy)
        item.staging = backend_.allocate({3, box.height(), box.width()}, Layout::planar, Backend::Contents::unset);
      items_.push_back(std::move(item));
    }
  for (auto& [peer, size] : send_size) {
    send_peers_.push_back(peer);
    send_buffers_.emplace_back(size);
  }
  for (auto& [peer, size] : receive_size) {
    receive_peers_.push_back(peer);
    receive_buffers_.emplace_back(size);
  }
}

HaloPlan::~HaloPlan() = default;

void HaloPlan::begin(const Tensor& local_image, const GrownImage& grown) {
  if (under_way_) fail("internal: a halo exchange is already under way");
  if (local_image.elements() != image_.local_elements())
    fail("internal: halo exchange of ", local_image.elements(), " values for ", image_.local_elements());
  const std::vector<Tile>& tiles = image_.local_tiles();
  auto owned_slice = [&](int local) { return image_.view(local_image, local); };
  for (auto& item : items_) {
    if (item.kind != Item::send) continue;
    const Tile& from = tiles[item.from_local];
    backend_.copy_window(owned_slice(item.from_local), window_in(item.box, from.owned), item.staging, 0, 0);
    auto peer = std::find(send_peers_.begin(), send_peers_.end(), item.peer) - send_peers_.begin();
    backend_.download(item.staging,
                      std::span<float>(send_buffers_[peer].data() + item.buffer_offset, item.staging.elements()));
  }
  // A rank whose tiles need nothing from other ranks posts nothing (on NCCL
  // even an empty exchange would wait for the device).
  if (!send_peers_.empty() || !receive_peers_.empty()) {
    std::vector<Transfer> sends, receives;
    for (std::size_t i = 0; i < send_peers_.size(); ++i) sends.push_back({send_peers_[i], send_buffers_[i]});
    for (std::size_t i = 0; i < receive_peers_.size(); ++i)
      receives.push_back({receive_peers_[i], receive_buffers_[i]});
    pending_ = communicator_.begin_exchange(sends, receives);
  }
  under_way_ = true;
  grown_ = grown;
  // While the messages travel.
  for (auto& item : items_) {
    if (item.kind != Item::local_copy) continue;
    const Tile& from = tiles[item.from_local];
    const Box destination = window_in(item.box, tiles[item.to_local].grown);
    backend_.copy_window(owned_slice(item.from_local), window_in(item.box, from.owned), grown(item.to_local),
                         destination.x0, destination.y0);
  }
}

void HaloPlan::finish() {
  if (!under_way_) fail("internal: no halo exchange under way");
  under_way_ = false;
  if (pending_) {
    pending_->finish();
    pending_.reset();
  }
  for (auto& item : items_) {
    if (item.kind != Item::receive) continue;
    const Box destination = window_in(item.box, image_.local_tiles()[item.to_local].grown);
    auto peer = std::find(receive_peers_.begin(), receive_peers_.end(), item.peer) - receive_peers_.begin();
    backend_.upload(
        std::span<const float>(receive_buffers_[peer].data() + item.buffer_offset, item.staging.elements()),
        item.staging);
    backend_.copy_window(item.staging, whole_map(item.staging.shape()), grown_(item.to_local), destination.x0,
                         destination.y0);
  }
  grown_ = nullptr;
}

}  // namespace tessera
