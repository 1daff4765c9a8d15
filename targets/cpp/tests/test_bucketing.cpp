// SAT-HMR's host step on small hand-made scale maps (the same cases tests/test_bucketing.py works through).
#include <nlohmann/json.hpp>

#include "check.h"
#include "edgehmr/bucketing.h"
#include "edgehmr/errors.h"

using edgehmr::BucketTable;
using edgehmr::classify;
using edgehmr::kMaskPad;

static BucketTable table(const char* buckets, int rows, int cols) {
  auto j = nlohmann::json::parse(buckets);
  return BucketTable::from_json({{"grid", {rows, cols}},
                                 {"selection", {{"confidence_gt", 0.3}, {"scale_lt", 0.5}}},
                                 {"buckets", j}});
}

int main() {
  // 4x4 grid: top-left block has a small person cell (0,0) and a large one (1,1); the top-right block is empty;
  // the bottom-right block has one large cell. Background: the top-right and bottom-left blocks.
  std::vector<float> conf(16, 0.1f), scale(16, 1.0f);
  conf[0] = 0.9f, scale[0] = 0.2f;    // small
  conf[5] = 0.8f, scale[5] = 0.7f;    // large
  conf[15] = 0.31f, scale[15] = 0.9f; // large, just over the threshold
  conf[2] = 0.3f, scale[2] = 0.1f;    // exactly at the threshold: not valid (c > 0.3)
  auto s = classify(conf, scale, 4, 4, 0.3f, 0.5f);
  CHECK(s.hr_cells() == 1 && s.small[0] == 1);
  CHECK(s.low_res[1] && s.low_res[4] && s.low_res[5]);  // the rest of the top-left block, one token each
  CHECK(s.low_res[10] && s.low_res[11] && s.low_res[14] && s.low_res[15]);
  CHECK(s.background[1] == 1 && s.background[2] == 1 && s.background[0] == 0 && s.background[3] == 0);
  CHECK(s.other_tokens() == 3 + 4 + 2);
  CHECK(s.memory_tokens() == 4 + 9);
  CHECK_THROWS(classify(conf, scale, 3, 4, 0.3f, 0.5f), edgehmr::Error, "even-sized");

  // Cheapest holding bucket; with no holder, the one needing the fewest demotions.
  auto t = table(R"([{"name": "b0x16", "hr_cells": 0, "other": 16}, {"name": "b2x16", "hr_cells": 2, "other": 16},
                     {"name": "b1x10", "hr_cells": 1, "other": 10}])", 4, 4);
  auto c = t.choose(s);
  CHECK(c.bucket->name == "b1x10" && c.demoted == 0);
  auto p = edgehmr::pack(s, t);
  CHECK(p.hr_cells.size() == 1 && p.hr_cells[0] == 0 && p.hr_mask[0] == 0.0f);
  CHECK(p.other_index.size() == 10);
  const std::vector<int64_t> others = {1, 4, 5, 10, 11, 14, 15, 16 + 1, 16 + 2, 0};  // low-res, background, pad
  for (size_t i = 0; i < others.size(); ++i) CHECK(p.other_index[i] == others[i]);
  CHECK(p.other_mask[8] == 0.0f && p.other_mask[9] == kMaskPad);

  // Overflow: three small cells, at most one fits; the two least confident are demoted.
  std::vector<float> conf3(16, 0.1f), scale3(16, 1.0f);
  for (int i : {0, 1, 4}) scale3[i] = 0.2f;
  conf3[0] = 0.5f, conf3[1] = 0.9f, conf3[4] = 0.4f;
  auto crowded = classify(conf3, scale3, 4, 4, 0.3f, 0.5f);
  auto small_only = table(R"([{"name": "b1x16", "hr_cells": 1, "other": 16}])", 4, 4);
  auto packed = edgehmr::pack(crowded, small_only);
  CHECK(packed.demoted == 2 && packed.hr_cells[0] == 1);  // the most confident small cell keeps its 4 tokens
  CHECK(packed.other_index[0] == 0 && packed.other_index[1] == 4 && packed.other_index[2] == 5);

  // A table whose largest bucket cannot hold one token per cell could not resolve overflow: refused.
  CHECK_THROWS(table(R"([{"name": "b4x8", "hr_cells": 4, "other": 8}])", 4, 4), edgehmr::MetadataError,
               "one per cell");
  CHECK_THROWS(BucketTable::from_json(nlohmann::json::parse(R"({"grid": [4, 4]})")), edgehmr::MetadataError,
               "malformed");
  return test_result("bucketing");
}
