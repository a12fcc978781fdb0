// Which rank computes each tile of a grid.
#pragma once

#include <utility>
#include <vector>

namespace tessera {

class RankMap {
 public:
  // How tiles are given to ranks. `contiguous`: runs of consecutive tiles
  // (row-major), as even as possible, so that neighbours mostly share a
  // rank and more of the halo exchange stays within a process.
  enum class Strategy { contiguous };

  static RankMap contiguous(int tile_count, int rank_count);

  int rank_of(int tile) const { return rank_of_tile_[tile]; }
  int tile_count() const { return int(rank_of_tile_.size()); }
  int rank_count() const { return rank_count_; }
  std::vector<int> tiles_of(int rank) const;
  Strategy strategy() const { return strategy_; }
  const char* strategy_name() const;

 private:
  RankMap(Strategy strategy, std::vector<int> rank_of_tile, int rank_count)
      : strategy_(strategy), rank_of_tile_(std::move(rank_of_tile)), rank_count_(rank_count) {}

  Strategy strategy_;
  std::vector<int> rank_of_tile_;
  int rank_count_;
};

}  // namespace tessera
