// SAT-HMR's host step between its two static stages, line for line edgehmr/bucketing.py: the token selection from
// the stage-1 scale map, the bucket choice (fewest demotions, then cheapest), overflow by demotion, and the fixed
// stage-2 buffers with their additive masks. Plain C++ so that apps on every platform run exactly this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgehmr {

constexpr float kMaskPad = -1e4f;  // finite in fp16/bf16, never NaN for a fully padded row
constexpr int kHrTokensPerCell = 4;

// Which cells of the low-res grid (rows x cols) become which tokens.
struct Selection {
  int rows = 0, cols = 0;
  std::vector<uint8_t> small;       // rows*cols: 4 high-res tokens each
  std::vector<uint8_t> low_res;     // rows*cols: one low-res token each
  std::vector<uint8_t> background;  // (rows/2)*(cols/2): one pooled token per 2x2 block
  std::vector<float> confidence;    // rows*cols: decides who is demoted on overflow

  int hr_cells() const;
  int other_tokens() const;
  int memory_tokens() const { return kHrTokensPerCell * hr_cells() + other_tokens(); }
};

// valid = c > conf_threshold; small = valid and s < scale_threshold; a 2x2 block with a valid cell keeps its cells
// (small: high-res, else low-res), a block without one becomes a background token. Maps are row-major.
Selection classify(const std::vector<float>& confidence, const std::vector<float>& scale, int rows, int cols,
                   float conf_threshold, float scale_threshold);

// The `count` least-confident small cells become low-res cells (stable order on ties, as numpy's stable argsort).
Selection demote(const Selection& selection, int count);

struct Bucket {
  std::string name;  // "b{hr_cells}x{other}"
  int hr_cells = 0, other = 0;
  int memory() const { return kHrTokensPerCell * hr_cells + other; }
  double cost() const;  // edgehmr.bucketing.bucket_cost: a ranking proxy in ViT-B blocks' linear work
  bool holds(const Selection& s) const { return s.hr_cells() <= hr_cells && s.other_tokens() <= other; }
};

struct Choice {
  const Bucket* bucket = nullptr;
  Selection fitted;  // the selection after demotion
  int demoted = 0;
};

struct BucketTable {
  std::vector<Bucket> buckets;
  int rows = 0, cols = 0;
  float conf_threshold = 0.3f, scale_threshold = 0.5f;

  // metadata.json "buckets" (edgehmr.sat.tables.table_json). Throws MetadataError when malformed.
  static BucketTable from_json(const nlohmann::json& j);
  // The bucket needing the fewest demotions, the cheaper on ties.
  Choice choose(const Selection& selection) const;
};

// Fixed-size stage-2 inputs (without the batch axis).
struct Packed {
  const Bucket* bucket = nullptr;
  std::vector<int64_t> hr_cells;    // flat cell index y*cols+x of each high-res cell (0 for padding)
  std::vector<float> hr_mask;       // 0 real, kMaskPad padding
  std::vector<int64_t> other_index; // low-res cells (y*cols+x), then background blocks offset by rows*cols
  std::vector<float> other_mask;
  int demoted = 0;
};

Packed pack(const Selection& selection, const BucketTable& table);

}  // namespace edgehmr
