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
  Tensor packed;  // 3 x box: its part of the peer's message (send, receive)
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
      items_.push_back(std::move(item));
    }
  // One buffer per peer each way in the backend's memory, each item packed
  // into its part: a device-aware communicator sends them from where they
  // are, any other from host memory.
  auto message = [&](std::size_t size) {
    return backend_.allocate({1, 1, int(size)}, Layout::planar, Backend::Contents::unset);
  };
  for (auto& [peer, size] : send_size) sends_.push_back({peer, message(size)});
  for (auto& [peer, size] : receive_size) receives_.push_back({peer, message(size)});
  for (auto& item : items_) {
    if (item.kind == Item::local_copy) continue;
    const auto& transfers = item.kind == Item::send ? sends_ : receives_;
    auto transfer = std::find_if(transfers.begin(), transfers.end(), [&](const BufferTransfer& t) { return t.peer == item.peer; });
    item.packed = transfer->buffer.slice(item.buffer_offset, {3, item.box.height(), item.box.width()});
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
    backend_.copy_window(owned_slice(item.from_local), window_in(item.box, from.owned), item.packed, 0, 0);
  }
  // A rank whose tiles need nothing from other ranks posts nothing (on NCCL
  // even an empty exchange would wait for the device).
  if (!sends_.empty() || !receives_.empty()) pending_ = communicator_.begin_exchange(backend_, sends_, receives_);
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
    backend_.copy_window(item.packed, whole_map(item.packed.shape()), grown_(item.to_local), destination.x0,
                         destination.y0);
  }
  grown_ = nullptr;
}

}  // namespace tessera
