#include "tessera/rank_map.hpp"

#include "tessera/error.hpp"

namespace tessera {

RankMap RankMap::contiguous(int tile_count, int rank_count) {
  if (tile_count < 1 || rank_count < 1)
    fail("internal: ", tile_count, " tiles cannot be placed on ", rank_count, " ranks");
  std::vector<int> rank_of_tile(tile_count);
  for (int t = 0; t < tile_count; ++t) rank_of_tile[t] = int((long long)t * rank_count / tile_count);
  return RankMap(Strategy::contiguous, std::move(rank_of_tile), rank_count);
}

std::vector<int> RankMap::tiles_of(int rank) const {
  std::vector<int> tiles;
  for (int t = 0; t < tile_count(); ++t)
    if (rank_of_tile_[t] == rank) tiles.push_back(t);
  return tiles;
}

const char* RankMap::strategy_name() const {
  switch (strategy_) {
    case Strategy::contiguous: return "contiguous";
  }
  return "?";
}

}  // namespace tessera
