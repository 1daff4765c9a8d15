#include "edgehmr/bucketing.h"

#include <algorithm>
#include <numeric>

#include "edgehmr/errors.h"

namespace edgehmr {

namespace {
// edgehmr.bucketing: every memory slot runs the 9 shared blocks and the decoder's memory projections (1.5 blocks);
// a high-res slot also runs the 3-block high-res branch.
constexpr double kSharedBlockCost = 9.0, kDecoderMemoryCost = 1.5, kHrBranchCost = 3.0;

int count(const std::vector<uint8_t>& v) { return static_cast<int>(std::count(v.begin(), v.end(), 1)); }

// `index` padded with 0 to `size`, and its additive mask.
template <typename I>
void padded(const std::vector<I>& index, int size, std::vector<int64_t>& buffer, std::vector<float>& mask) {
  buffer.assign(size, 0);
  mask.assign(size, kMaskPad);
  for (size_t i = 0; i < index.size(); ++i) {
    buffer[i] = static_cast<int64_t>(index[i]);
    mask[i] = 0.0f;
  }
}
}  // namespace

int Selection::hr_cells() const { return count(small); }
int Selection::other_tokens() const { return count(low_res) + count(background); }

Selection classify(const std::vector<float>& confidence, const std::vector<float>& scale, int rows, int cols,
                   float conf_threshold, float scale_threshold) {
  const size_t cells = static_cast<size_t>(rows) * cols;
  if (rows % 2 || cols % 2 || confidence.size() != cells || scale.size() != cells)
    throw Error("scale map must be two equal even-sized grids of " + std::to_string(rows) + "x" +
                std::to_string(cols) + " cells");
  Selection s;
  s.rows = rows;
  s.cols = cols;
  s.confidence = confidence;
  s.small.assign(cells, 0);
  s.low_res.assign(cells, 0);
  s.background.assign(cells / 4, 0);
  for (int by = 0; by < rows / 2; ++by)
    for (int bx = 0; bx < cols / 2; ++bx) {
      bool block_valid = false;
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) block_valid |= confidence[(2 * by + dy) * cols + 2 * bx + dx] > conf_threshold;
      if (!block_valid) {
        s.background[by * (cols / 2) + bx] = 1;
        continue;
      }
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) {
          const int i = (2 * by + dy) * cols + 2 * bx + dx;
          const bool small = confidence[i] > conf_threshold && scale[i] < scale_threshold;
          (small ? s.small : s.low_res)[i] = 1;
        }
    }
  return s;
}

Selection demote(const Selection& selection, int count) {
  std::vector<int> small_cells;
  for (size_t i = 0; i < selection.small.size(); ++i)
    if (selection.small[i]) small_cells.push_back(static_cast<int>(i));
  std::stable_sort(small_cells.begin(), small_cells.end(),
                   [&](int a, int b) { return selection.confidence[a] < selection.confidence[b]; });
  Selection out = selection;
  for (int k = 0; k < count && k < static_cast<int>(small_cells.size()); ++k) {
    out.small[small_cells[k]] = 0;
    out.low_res[small_cells[k]] = 1;
  }
  return out;
}

double Bucket::cost() const {
  return (kSharedBlockCost + kDecoderMemoryCost) * memory() + kHrBranchCost * kHrTokensPerCell * hr_cells;
}

BucketTable BucketTable::from_json(const nlohmann::json& j) {
  try {
    BucketTable t;
    t.rows = j.at("grid").at(0).get<int>();
    t.cols = j.at("grid").at(1).get<int>();
    const auto& rule = j.at("selection");
    t.conf_threshold = rule.at("confidence_gt").get<float>();
    t.scale_threshold = rule.at("scale_lt").get<float>();
    for (const auto& b : j.at("buckets"))
      t.buckets.push_back({b.at("name").get<std::string>(), b.at("hr_cells").get<int>(), b.at("other").get<int>()});
    if (t.buckets.empty()) throw MetadataError("metadata.json: the bucket table has no buckets");
    int largest = 0;
    for (const auto& b : t.buckets) largest = std::max(largest, b.other);
    if (largest < t.rows * t.cols)
      throw MetadataError("metadata.json: the largest bucket holds " + std::to_string(largest) +
                          " low-res/background tokens; one per cell (" + std::to_string(t.rows * t.cols) +
                          ") is needed so that overflow can always be resolved");
    // Python sorts buckets by (memory, hr_cells, other); the order decides nothing but keeps the two alike.
    std::sort(t.buckets.begin(), t.buckets.end(), [](const Bucket& a, const Bucket& b) {
      return std::make_tuple(a.memory(), a.hr_cells, a.other) < std::make_tuple(b.memory(), b.hr_cells, b.other);
    });
    return t;
  } catch (const nlohmann::json::exception& e) {
    throw MetadataError(std::string("metadata.json: malformed bucket table (") + e.what() + ")");
  }
}

Choice BucketTable::choose(const Selection& selection) const {
  std::vector<const Bucket*> by_cost;
  for (const auto& b : buckets) by_cost.push_back(&b);
  std::stable_sort(by_cost.begin(), by_cost.end(), [](const Bucket* a, const Bucket* b) { return a->cost() < b->cost(); });
  const Bucket* best = nullptr;
  int best_need = 0;
  for (const Bucket* b : by_cost) {  // the first with the fewest demotions is the cheapest
    const int need = std::max(selection.hr_cells() - b->hr_cells, 0);
    if (selection.other_tokens() + need <= b->other && (best == nullptr || need < best_need)) {
      best = b;
      best_need = need;
    }
  }
  if (best == nullptr)  // unreachable for a table from_json accepted; never return something silently wrong
    throw Error("no bucket can hold " + std::to_string(selection.memory_tokens()) + " tokens even after demotion");
  return {best, best_need ? demote(selection, best_need) : selection, best_need};
}

Packed pack(const Selection& selection, const BucketTable& table) {
  if (selection.rows != table.rows || selection.cols != table.cols)
    throw Error("scale map of " + std::to_string(selection.rows) + "x" + std::to_string(selection.cols) +
                " cells, the bucket table is for " + std::to_string(table.rows) + "x" + std::to_string(table.cols));
  Choice c = table.choose(selection);
  const Selection& s = c.fitted;
  std::vector<int> hr, others;
  for (size_t i = 0; i < s.small.size(); ++i)
    if (s.small[i]) hr.push_back(static_cast<int>(i));
  for (size_t i = 0; i < s.low_res.size(); ++i)
    if (s.low_res[i]) others.push_back(static_cast<int>(i));
  const int cells = s.rows * s.cols;
  for (size_t i = 0; i < s.background.size(); ++i)
    if (s.background[i]) others.push_back(cells + static_cast<int>(i));
  Packed p;
  p.bucket = c.bucket;
  p.demoted = c.demoted;
  padded(hr, c.bucket->hr_cells, p.hr_cells, p.hr_mask);
  padded(others, c.bucket->other, p.other_index, p.other_mask);
  return p;
}

}  // namespace edgehmr
