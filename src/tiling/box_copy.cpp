#include "tessera/box_copy.hpp"

#include <algorithm>
#include <cstddef>

#include "tessera/error.hpp"

namespace tessera {
namespace {

// Where each of a rank's boxes starts in its local vector.
std::vector<std::size_t> offsets_of(int channels, const std::vector<Box>& boxes, const RankMap& owners, int rank,
                                    std::size_t& total) {
  std::vector<std::size_t> offsets(boxes.size(), 0);
  total = 0;
  for (std::size_t b = 0; b < boxes.size(); ++b)
    if (owners.rank_of(int(b)) == rank) {
      offsets[b] = total;
      total += std::size_t(channels) * boxes[b].area();
    }
  return offsets;
}

// Visits, in one order both sides follow, every overlap of a `from` box of
// rank `sender` with a `to` box of rank `receiver`.
template <typename Visit>
void for_each_overlap(const std::vector<Box>& from, const RankMap& from_owners, int sender, const std::vector<Box>& to,
                      const RankMap& to_owners, int receiver, Visit&& visit) {
  for (std::size_t t = 0; t < to.size(); ++t) {
    if (to_owners.rank_of(int(t)) != receiver) continue;
    for (std::size_t f = 0; f < from.size(); ++f) {
      if (from_owners.rank_of(int(f)) != sender) continue;
      const Box overlap = from[f].intersect(to[t]);
      if (!overlap.empty()) visit(f, t, overlap);
    }
  }
}

}  // namespace

std::vector<float> copy_boxes(Communicator& communicator, int channels, const std::vector<Box>& from,
                              const RankMap& from_owners, std::span<const float> local_from,
                              const std::vector<Box>& to, const RankMap& to_owners) {
  const int me = communicator.rank(), ranks = communicator.size();
  if (from_owners.tile_count() != int(from.size()) || to_owners.tile_count() != int(to.size()))
    fail("internal: copy_boxes needs one rank per box");
  std::size_t from_total = 0, to_total = 0;
  const auto from_offset = offsets_of(channels, from, from_owners, me, from_total);
  const auto to_offset = offsets_of(channels, to, to_owners, me, to_total);
  if (local_from.size() != from_total)
    fail("internal: copy_boxes got ", local_from.size(), " values on rank ", me, " for ", from_total);
  std::vector<float> result(to_total);
  std::vector<long long> covered(to.size(), 0);

  // Calls row(start, length) for each row of `overlap` in the values of
  // `box`, laid out from `offset`: channel by channel, top to bottom.
  auto rows = [&](const Box& overlap, const Box& box, std::size_t offset, auto&& row) {
    const std::size_t plane = std::size_t(box.area());
    for (int c = 0; c < channels; ++c)
      for (int y = overlap.y0; y < overlap.y1; ++y)
        row(offset + c * plane + std::size_t(y - box.y0) * box.width() + (overlap.x0 - box.x0), overlap.width());
  };

  std::vector<std::vector<float>> outgoing(ranks), incoming(ranks);
  for (int peer = 0; peer < ranks; ++peer) {
    if (peer == me) continue;
    for_each_overlap(from, from_owners, me, to, to_owners, peer, [&](std::size_t f, std::size_t, const Box& overlap) {
      rows(overlap, from[f], from_offset[f], [&](std::size_t at, int n) {
        outgoing[peer].insert(outgoing[peer].end(), local_from.begin() + at, local_from.begin() + at + n);
      });
    });
    std::size_t expected = 0;
    for_each_overlap(from, from_owners, peer, to, to_owners, me, [&](std::size_t, std::size_t t, const Box& overlap) {
      expected += std::size_t(channels) * overlap.area();
      covered[t] += overlap.area();
    });
    incoming[peer].resize(expected);
  }
  std::vector<Transfer> sends, receives;
  for (int peer = 0; peer < ranks; ++peer) {
    if (!outgoing[peer].empty()) sends.push_back({peer, outgoing[peer]});
    if (!incoming[peer].empty()) receives.push_back({peer, incoming[peer]});
  }
  // This rank's own overlaps need no message.
  for_each_overlap(from, from_owners, me, to, to_owners, me, [&](std::size_t f, std::size_t t, const Box& overlap) {
    std::vector<std::size_t> sources;
    rows(overlap, from[f], from_offset[f], [&](std::size_t at, int) { sources.push_back(at); });
    std::size_t k = 0;
    rows(overlap, to[t], to_offset[t], [&](std::size_t at, int n) {
      std::copy_n(local_from.begin() + sources[k++], n, result.begin() + at);
    });
    covered[t] += overlap.area();
  });
  communicator.exchange(sends, receives);
  for (int peer = 0; peer < ranks; ++peer) {
    if (peer == me) continue;
    const float* next = incoming[peer].data();
    for_each_overlap(from, from_owners, peer, to, to_owners, me, [&](std::size_t, std::size_t t, const Box& overlap) {
      rows(overlap, to[t], to_offset[t], [&](std::size_t at, int n) {
        std::copy_n(next, n, result.begin() + at);
        next += n;
      });
    });
  }
  for (std::size_t t = 0; t < to.size(); ++t)
    if (to_owners.rank_of(int(t)) == me && covered[t] != to[t].area())
      fail("internal: copy_boxes: box ", to[t].describe(), " is not covered by the source boxes");
  return result;
}

}  // namespace tessera
