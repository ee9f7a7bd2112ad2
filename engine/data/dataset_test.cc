#include "engine/data/dataset.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace trainrr {
namespace {

TEST(DataDataset, TakeRowsCopiesRowsInTheOrderGiven) {
  Dataset d;
  d.x = Tensor({4, 2}, {0, 1, 10, 11, 20, 21, 30, 31});
  d.y = {0, 1, 0, 1};
  d.feature_names = {"a", "b"};
  d.num_classes = 2;
  const std::vector<uint32_t> rows = {3, 0, 3};
  Dataset t = take_rows(d, rows);
  EXPECT_EQ(t.x.shape, (Shape{3, 2}));
  EXPECT_EQ(t.x.data, (std::vector<float>{30, 31, 0, 1, 30, 31}));
  EXPECT_EQ(t.y, (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(t.feature_names, d.feature_names);
  EXPECT_EQ(t.num_classes, 2);
}

TEST(DataDataset, TakeRowsKeepsTheSampleShape) {
  Dataset d;
  d.x = Tensor({3, 2, 2, 1});
  for (int64_t i = 0; i < d.x.size(); ++i) d.x[i] = static_cast<float>(i);
  d.y = {5, 6, 7};
  const std::vector<uint32_t> rows = {2};
  Dataset t = take_rows(d, rows);
  EXPECT_EQ(t.x.shape, (Shape{1, 2, 2, 1}));
  EXPECT_EQ(t.x.data, (std::vector<float>{8, 9, 10, 11}));
  EXPECT_EQ(t.y, (std::vector<float>{7}));
}

TEST(DataDataset, TakeRowsOfNoRowsIsEmpty) {
  Dataset d;
  d.x = Tensor({2, 3});
  d.y = {0, 1};
  Dataset t = take_rows(d, {});
  EXPECT_EQ(t.x.shape, (Shape{0, 3}));
  EXPECT_EQ(t.rows(), 0);
}

TEST(DataDataset, InferNumClassesIsOnePlusTheLargestLabel) {
  EXPECT_EQ(infer_num_classes(std::vector<float>{0, 2, 1, 2}), 3);
  EXPECT_EQ(infer_num_classes(std::vector<float>{1, 1}), 2);
  EXPECT_EQ(infer_num_classes(std::vector<float>{0}), 1);
}

TEST(DataDataset, InferNumClassesIsZeroForLabelsThatAreNotClassIndices) {
  EXPECT_EQ(infer_num_classes(std::vector<float>{}), 0);
  EXPECT_EQ(infer_num_classes(std::vector<float>{0, 1.5f}), 0);
  EXPECT_EQ(infer_num_classes(std::vector<float>{-1, 0}), 0);
  EXPECT_EQ(infer_num_classes(std::vector<float>{0, std::numeric_limits<float>::quiet_NaN()}), 0);
  EXPECT_EQ(infer_num_classes(std::vector<float>{0, std::numeric_limits<float>::infinity()}), 0);
  EXPECT_EQ(infer_num_classes(std::vector<float>{0, 3e9f}), 0);
}

}  // namespace
}  // namespace trainrr
