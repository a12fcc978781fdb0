// parse_size and SizeRequest: every accepted form, the rounding of the short
// side, and the errors users meet.
#include <gtest/gtest.h>

#include <string>

#include "tessera/error.hpp"
#include "tessera/size.hpp"

namespace {

using tessera::parse_size;
using tessera::SizeRequest;

void expect_exact(const std::string& text, int width_px, int height_px) {
  SCOPED_TRACE(text);
  SizeRequest request = parse_size(text);
  EXPECT_TRUE(request.exact());
  EXPECT_EQ(request.width_px, width_px);
  EXPECT_EQ(request.height_px, height_px);
  EXPECT_EQ(request.long_side_px, 0);
}

// The message of the error parse_size throws for `text` ("" if none).
std::string error_for(const std::string& text) {
  try {
    parse_size(text);
  } catch (const tessera::Error& error) {
    return error.what();
  }
  return "";
}

TEST(ParseSize, LongSide) {
  SizeRequest request = parse_size("512");
  EXPECT_FALSE(request.exact());
  EXPECT_EQ(request.long_side_px, 512);
  EXPECT_EQ(request.width_px, 0);
  EXPECT_EQ(parse_size(" 1024 ").long_side_px, 1024);
  EXPECT_EQ(parse_size("1").long_side_px, 1);
  EXPECT_EQ(parse_size("65536").long_side_px, 65536);
}

TEST(ParseSize, WidthByHeight) {
  expect_exact("1920x1080", 1920, 1080);
  expect_exact("640X480", 640, 480);
  expect_exact("300 x 200", 300, 200);
  expect_exact("1x65536", 1, 65536);
}

TEST(ParseSize, PresetsAreCaseInsensitive) {
  expect_exact("hd", 1920, 1080);
  expect_exact("HD", 1920, 1080);
  expect_exact("4k", 3840, 2160);
  expect_exact("4K", 3840, 2160);
  expect_exact("8k", 7680, 4320);
  expect_exact("8K", 7680, 4320);
}

TEST(ParseSize, PrintSizes) {
  // 24 in x 300 dpi = 7200 px; 36 in x 300 dpi = 10800 px.
  expect_exact("24x36in@300dpi", 7200, 10800);
  expect_exact("24X36IN@300DPI", 7200, 10800);
  // A4 in cm: 21 cm / 2.54 x 300 = 2480.3 -> 2480; 29.7 cm -> 3507.9 -> 3508.
  expect_exact("21x29.7cm@300dpi", 2480, 3508);
  // 8.5 x 11 in at 150 dpi: 1275 x 1650 exactly.
  expect_exact("8.5x11in@150dpi", 1275, 1650);
  // Rounds to nearest: 10 cm at 100 dpi = 393.70 px.
  expect_exact("10x10cm@100dpi", 394, 394);
}

TEST(ParseSize, RejectsEverythingElseListingTheAcceptedForms) {
  for (const std::string bad : {"",
                                "   ",
                                "0",
                                "-512",
                                "0x100",
                                "100x0",
                                "65537",
                                "100000x100",
                                "99999999999999999999",
                                "abc",
                                "512px",
                                "1920x",
                                "x1080",
                                "1920x1080x3",
                                "12.5",
                                "2k",
                                "hd4k",
                                "24x36in",
                                "24x36@300dpi",
                                "24x36mm@300dpi",
                                "24x36in@300",
                                "24x36in@0dpi",
                                "0x36in@300dpi",
                                "1000x1000in@300dpi",
                                "24x36in@-300dpi",
                                "1.2.3x4in@300dpi"}) {
    SCOPED_TRACE("input '" + bad + "'");
    std::string message = error_for(bad);
    ASSERT_FALSE(message.empty()) << "accepted";
    EXPECT_NE(message.find("'" + bad + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("1920x1080"), std::string::npos) << message;
    EXPECT_NE(message.find("24x36in@300dpi"), std::string::npos) << message;
    EXPECT_NE(message.find("4k"), std::string::npos) << message;
  }
}

TEST(ParseSize, OutOfRangeSaysWhy) {
  EXPECT_NE(error_for("65537").find("larger than 65536 px"), std::string::npos);
  // Too large for any integer: the limit, not a number it never was.
  const std::string huge = error_for("99999999999999999999");
  EXPECT_NE(huge.find("larger than 65536 px"), std::string::npos) << huge;
  EXPECT_EQ(huge.find("65537"), std::string::npos) << huge;
  EXPECT_NE(error_for("0").find("out of range"), std::string::npos);
  EXPECT_NE(error_for("-5").find("positive"), std::string::npos);
}

TEST(SizeRequestResolve, LongSideFollowsTheSourceAspect) {
  SizeRequest request = parse_size("512");
  int width = 0, height = 0;
  request.resolve(1024, 768, width, height);  // landscape: 512 x 384
  EXPECT_EQ(width, 512);
  EXPECT_EQ(height, 384);
  request.resolve(768, 1024, width, height);  // portrait: 384 x 512
  EXPECT_EQ(width, 384);
  EXPECT_EQ(height, 512);
  request.resolve(300, 300, width, height);  // square, and upsizing is allowed
  EXPECT_EQ(width, 512);
  EXPECT_EQ(height, 512);
}

TEST(SizeRequestResolve, ShortSideRoundsToNearestAndIsAtLeastOne) {
  int width = 0, height = 0;
  // The escher image: 960 x 1475; 512 x 960 / 1475 = 333.23 -> 333.
  parse_size("512").resolve(960, 1475, width, height);
  EXPECT_EQ(width, 333);
  EXPECT_EQ(height, 512);
  // The starry night crop: 196 x 313; 512 x 196 / 313 = 320.61 -> 321.
  parse_size("512").resolve(196, 313, width, height);
  EXPECT_EQ(width, 321);
  EXPECT_EQ(height, 512);
  // Exactly half way rounds up: long side 3 from 2 x 1 gives a short side of 1.5.
  parse_size("3").resolve(2, 1, width, height);
  EXPECT_EQ(width, 3);
  EXPECT_EQ(height, 2);
  // An extreme strip never gives a zero side.
  parse_size("100").resolve(100000, 1, width, height);
  EXPECT_EQ(width, 100);
  EXPECT_EQ(height, 1);
}

TEST(SizeRequestResolve, ExactIgnoresTheSource) {
  int width = 0, height = 0;
  parse_size("hd").resolve(100, 5000, width, height);
  EXPECT_EQ(width, 1920);
  EXPECT_EQ(height, 1080);
}

TEST(SizeRequestResolve, EmptyRequestKeepsTheSourceSize) {
  int width = 0, height = 0;
  SizeRequest{}.resolve(640, 427, width, height);
  EXPECT_EQ(width, 640);
  EXPECT_EQ(height, 427);
}

TEST(SizeRequestResolve, RejectsAnEmptySource) {
  int width = 0, height = 0;
  EXPECT_THROW(parse_size("512").resolve(0, 100, width, height), tessera::Error);
  EXPECT_THROW(parse_size("512").resolve(100, -1, width, height), tessera::Error);
}

TEST(SizeRequestDescribe, NamesTheRequest) {
  EXPECT_EQ(parse_size("512").describe(), "long side 512 px");
  EXPECT_EQ(parse_size("4k").describe(), "3840x2160 px");
  EXPECT_EQ(parse_size("24x36in@300dpi").describe(), "7200x10800 px");
}

}  // namespace
