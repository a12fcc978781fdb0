// Image files through OpenImageIO: round trips per format and bit depth, the
// channel rules for grey and alpha inputs, metadata, errors that name the
// file, atomic writes, and resizing.
//
// Inputs that write_image cannot make (grey, grey + alpha, RGBA, five
// channels) are written here with OpenImageIO directly, so the read rules are
// tested on files we know byte for byte.
#include <OpenImageIO/imageio.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/test_support.hpp"
#include "tessera/error.hpp"
#include "tessera/image.hpp"
#include "tessera/io/image_io.hpp"

namespace {

namespace fs = std::filesystem;
using tessera::Image;
using tessera::io::WriteOptions;

Image seeded_image(int width_px, int height_px, std::uint64_t seed, float lo = 0.0f,
                   float hi = 1.0f) {
  Image image(width_px, height_px);
  image.pixels = tessera::testing::uniform_vector(seed, image.pixels.size(), lo, hi);
  return image;
}

// What an integer file of `max_code` + 1 levels must give back for `value`.
float quantised(float value, float max_code) {
  return std::round(std::clamp(value, 0.0f, 1.0f) * max_code) / max_code;
}

std::set<std::string> file_names_in(const fs::path& folder) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder))
    names.insert(entry.path().filename().string());
  return names;
}

std::string error_message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const tessera::Error& error) {
    return error.what();
  }
  return "";
}

std::string file_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(stream), {});
}

// Writes `channels`-channel interleaved 8-bit data with OpenImageIO itself.
void write_with_oiio(const fs::path& path, int width_px, int height_px, int channels,
                     const std::vector<std::uint8_t>& values, int alpha_channel = -1) {
  ASSERT_EQ(values.size(), std::size_t(width_px) * height_px * channels);
  auto output = OIIO::ImageOutput::create(path.string());
  ASSERT_TRUE(output) << OIIO::geterror();
  OIIO::ImageSpec spec(width_px, height_px, channels, OIIO::TypeDesc::UINT8);
  spec.alpha_channel = alpha_channel;
  // Store the colour as given: by default OIIO treats it as premultiplied and
  // divides it by alpha on the way into a PNG.
  spec.attribute("oiio:UnassociatedAlpha", 1);
  ASSERT_TRUE(output->open(path.string(), spec)) << output->geterror();
  ASSERT_TRUE(output->write_image(OIIO::TypeDesc::UINT8, values.data())) << output->geterror();
  ASSERT_TRUE(output->close()) << output->geterror();
}

WriteOptions with_bits(int bits) {
  WriteOptions options;
  options.bits = bits;
  return options;
}

WriteOptions with_jpeg_quality(int quality) {
  WriteOptions options;
  options.jpeg_quality = quality;
  return options;
}

WriteOptions with_metadata(const std::map<std::string, std::string>& metadata) {
  WriteOptions options;
  options.metadata = metadata;
  return options;
}

std::vector<std::uint8_t> counting_bytes(std::size_t count, int step) {
  std::vector<std::uint8_t> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = std::uint8_t((i * step) % 256);
  return values;
}

// ------------------------------------------------------------- round trips

void expect_integer_round_trip(const fs::path& path, int bits, int write_bits) {
  SCOPED_TRACE(path.filename().string() + " at " + std::to_string(bits) + " bits");
  const float max_code = bits == 8 ? 255.0f : 65535.0f;
  Image original = seeded_image(37, 23, 11);  // odd sizes catch stride mistakes
  WriteOptions options;
  options.bits = write_bits;
  tessera::io::write_image(path, original, options);
  Image read = tessera::io::read_image(path);
  ASSERT_EQ(read.width, original.width);
  ASSERT_EQ(read.height, original.height);
  ASSERT_EQ(read.pixels.size(), original.pixels.size());
  // Exact up to quantisation: within float rounding of code / max_code. A file
  // of fewer bits would be off by up to half its own (larger) step.
  for (std::size_t i = 0; i < original.pixels.size(); ++i)
    ASSERT_NEAR(read.pixels[i], quantised(original.pixels[i], max_code), 1e-6f) << "value " << i;
}

TEST(ImageRoundTrip, Png8IsExactToQuantisation) {
  expect_integer_round_trip(tessera::testing::scratch_dir() / "out.png", 8, 0);
}

TEST(ImageRoundTrip, Png16IsExactToQuantisation) {
  expect_integer_round_trip(tessera::testing::scratch_dir() / "out.png", 16, 16);
}

TEST(ImageRoundTrip, TiffDefaultsTo16Bits) {
  expect_integer_round_trip(tessera::testing::scratch_dir() / "out.tif", 16, 0);
}

TEST(ImageRoundTrip, Tiff8IsExactToQuantisation) {
  expect_integer_round_trip(tessera::testing::scratch_dir() / "out.tiff", 8, 8);
}

TEST(ImageRoundTrip, UpperCaseExtensionsWork) {
  expect_integer_round_trip(tessera::testing::scratch_dir() / "OUT.PNG", 8, 0);
}

void expect_float_bit_exact(const fs::path& path, int write_bits) {
  SCOPED_TRACE(path.filename().string());
  // Outside [0,1] on purpose: float files keep values as they are.
  Image original = seeded_image(41, 19, 12, -0.5f, 2.5f);
  original.at(0, 0, 0) = 1e-30f;
  original.at(1, 0, 0) = 12345.678f;
  WriteOptions options;
  options.bits = write_bits;
  tessera::io::write_image(path, original, options);
  Image read = tessera::io::read_image(path);
  ASSERT_EQ(read.width, original.width);
  ASSERT_EQ(read.height, original.height);
  for (std::size_t i = 0; i < original.pixels.size(); ++i)
    ASSERT_EQ(read.pixels[i], original.pixels[i]) << "value " << i;
}

// OpenEXR holds linear light: written through the sRGB decoding, read back
// through its inverse, within a few float roundings of what was written.
TEST(ImageRoundTrip, ExrHoldsLinearLightAndRoundTrips) {
  const fs::path path = tessera::testing::scratch_dir() / "out.exr";
  Image original = seeded_image(41, 19, 12, -0.5f, 2.5f);
  original.at(0, 0, 0) = 1e-30f;
  original.at(1, 0, 0) = 12345.678f;
  original.at(0, 0, 2) = 0.5f;   // channel 0 of pixels 2 and 3 of the first row
  original.at(0, 0, 3) = -0.5f;
  tessera::io::write_image(path, original);

  // What is in the file, read without tessera: linear values in float,
  // tagged as such, from the sRGB transfer function computed here in double.
  auto input = OIIO::ImageInput::open(path.string());
  ASSERT_TRUE(input) << OIIO::geterror();
  EXPECT_EQ(input->spec().format, OIIO::TypeDesc::FLOAT);
  EXPECT_EQ(input->spec().get_string_attribute("oiio:ColorSpace"), "Linear");
  std::vector<float> stored(std::size_t(original.width) * original.height * 3);
  ASSERT_TRUE(input->read_image(0, 0, 0, 3, OIIO::TypeDesc::FLOAT, stored.data()));
  input->close();
  auto decode = [](double v) {
    double a = std::abs(v);
    return std::copysign(a <= 0.04045 ? a / 12.92 : std::pow((a + 0.055) / 1.055, 2.4), v);
  };
  for (int y = 0; y < original.height; ++y)
    for (int x = 0; x < original.width; ++x)
      for (int c = 0; c < 3; ++c) {
        double want = decode(original.at(c, y, x));
        ASSERT_NEAR(stored[(std::size_t(y) * original.width + x) * 3 + c], want, std::abs(want) * 1e-6 + 1e-38)
            << c << " " << y << " " << x;
      }
  EXPECT_NEAR(stored[2 * 3], 0.21404114, 1e-7);  // sRGB 0.5 is 21.4 % of the light
  EXPECT_NEAR(stored[3 * 3], -0.21404114, 1e-7);

  Image read = tessera::io::read_image(path);
  ASSERT_EQ(read.width, original.width);
  ASSERT_EQ(read.height, original.height);
  for (std::size_t i = 0; i < original.pixels.size(); ++i)
    ASSERT_NEAR(read.pixels[i], original.pixels[i], std::abs(original.pixels[i]) * 1e-6f + 1e-38f) << "value " << i;
}

TEST(ImageRoundTrip, FloatTiffIsBitExact) {
  expect_float_bit_exact(tessera::testing::scratch_dir() / "out.tif", 32);
}

TEST(ImageRoundTrip, HalfExrIsWithinHalfPrecision) {
  const fs::path path = tessera::testing::scratch_dir() / "half.exr";
  Image original = seeded_image(16, 16, 13, 0.0f, 4.0f);
  tessera::io::write_image(path, original, with_bits(16));
  Image read = tessera::io::read_image(path);
  // Half has an 11-bit significand: relative error at most 2^-11 after rounding.
  for (std::size_t i = 0; i < original.pixels.size(); ++i)
    ASSERT_NEAR(read.pixels[i], original.pixels[i],
                std::abs(original.pixels[i]) * 0x1p-11f + 1e-6f);
  // And it really is half, not float: some value must have changed.
  EXPECT_NE(read.pixels, original.pixels);
  EXPECT_LT(fs::file_size(path), 16u * 16u * 3u * 4u);
}

TEST(ImageRoundTrip, JpegIsCloseAtTheDefaultQuality) {
  const fs::path path = tessera::testing::scratch_dir() / "out.jpg";
  // Smooth content: JPEG is meant for it. Random noise would measure only
  // the codec's worst case.
  Image original(96, 64);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < original.height; ++y)
      for (int x = 0; x < original.width; ++x)
        original.at(c, y, x) = 0.5f + 0.4f * std::sin(0.07f * x * (c + 1) + 0.05f * y);
  tessera::io::write_image(path, original);
  Image read = tessera::io::read_image(path);
  ASSERT_EQ(read.width, 96);
  ASSERT_EQ(read.height, 64);
  double total_error = 0, worst_error = 0;
  for (std::size_t i = 0; i < original.pixels.size(); ++i) {
    double error = std::abs(double(read.pixels[i]) - original.pixels[i]);
    total_error += error;
    worst_error = std::max(worst_error, error);
  }
  // Quality 95 with chroma subsampling: a few code values on average, a
  // handful at worst on this smooth image.
  EXPECT_LT(total_error / original.pixels.size(), 3.0 / 255);
  EXPECT_LT(worst_error, 16.0 / 255);

  // A much lower quality must give a smaller file (the option is applied).
  const fs::path rough = path.parent_path() / "rough.jpg";
  tessera::io::write_image(rough, original, with_jpeg_quality(10));
  EXPECT_LT(fs::file_size(rough), fs::file_size(path));
}

TEST(ImageRoundTrip, IntegerFormatsClampAndRound) {
  const fs::path path = tessera::testing::scratch_dir() / "clamped.png";
  Image original(6, 1);
  const float values[6] = {-0.3f,      1.7f,       std::numeric_limits<float>::quiet_NaN(),
                           0.4f / 255, 0.6f / 255, 254.5f / 255 + 1e-4f};
  const float expected[6] = {0.0f, 1.0f, 0.0f, 0.0f, 1.0f / 255, 1.0f};
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 6; ++x) original.at(c, 0, x) = values[x];
  tessera::io::write_image(path, original);
  Image read = tessera::io::read_image(path);
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 6; ++x) EXPECT_NEAR(read.at(c, 0, x), expected[x], 1e-6f) << "x " << x;
}

// ---------------------------------------------------------------- metadata

const std::map<std::string, std::string> render_settings = {
    {"content", "tubingen.jpg"},
    {"style", "starry_night.jpg"},
    {"style_weight", "1e5"},
    {"size", "512"},
    {"equation", "a=b"},                       // '=' in a value
    {"note", "two\nlines and a back\\slash"},  // escaped in the description
};

// `attributes`: the format also keeps one "tessera:<key>" attribute per entry,
// checked here with OpenImageIO itself since read_metadata merges both sources.
void expect_metadata_round_trip(const fs::path& path, bool attributes) {
  SCOPED_TRACE(path.filename().string());
  tessera::io::write_image(path, seeded_image(8, 8, 14), with_metadata(render_settings));
  EXPECT_EQ(tessera::io::read_metadata(path), render_settings);
  if (attributes) {
    auto input = OIIO::ImageInput::open(path.string());
    ASSERT_TRUE(input) << OIIO::geterror();
    for (const auto& [key, value] : render_settings)
      EXPECT_EQ(input->spec().get_string_attribute("tessera:" + key), value) << key;
  }
  const std::string description = tessera::io::read_description(path);
  EXPECT_EQ(description.rfind("tessera render settings\n", 0), 0u) << description;
  EXPECT_NE(description.find("\nstyle=starry_night.jpg"), std::string::npos) << description;
  EXPECT_NE(description.find("\nnote=two\\nlines and a back\\\\slash"), std::string::npos)
      << description;
}

TEST(ImageMetadata, SurvivesPng) {
  expect_metadata_round_trip(tessera::testing::scratch_dir() / "m.png", true);
}
TEST(ImageMetadata, SurvivesTiff) {
  expect_metadata_round_trip(tessera::testing::scratch_dir() / "m.tif", false);
}
TEST(ImageMetadata, SurvivesExr) {
  expect_metadata_round_trip(tessera::testing::scratch_dir() / "m.exr", true);
}
TEST(ImageMetadata, SurvivesJpeg) {
  expect_metadata_round_trip(tessera::testing::scratch_dir() / "m.jpg", false);
}

TEST(ImageMetadata, NoneWrittenNoneRead) {
  const fs::path path = tessera::testing::scratch_dir() / "plain.png";
  tessera::io::write_image(path, seeded_image(4, 4, 15));
  EXPECT_TRUE(tessera::io::read_metadata(path).empty());
}

TEST(ImageMetadata, ForeignDescriptionGivesNoSettings) {
  const fs::path path = tessera::testing::scratch_dir() / "foreign.png";
  auto output = OIIO::ImageOutput::create(path.string());
  ASSERT_TRUE(output);
  OIIO::ImageSpec spec(2, 2, 3, OIIO::TypeDesc::UINT8);
  spec.attribute("ImageDescription", "holiday photo\nsea=blue");
  std::vector<std::uint8_t> values(12, 7);
  ASSERT_TRUE(output->open(path.string(), spec));
  ASSERT_TRUE(output->write_image(OIIO::TypeDesc::UINT8, values.data()));
  ASSERT_TRUE(output->close());
  EXPECT_TRUE(tessera::io::read_metadata(path).empty());
  EXPECT_EQ(tessera::io::read_description(path), "holiday photo\nsea=blue");
}

TEST(ImageMetadata, BadKeysAreRefusedBeforeWriting) {
  const fs::path folder = tessera::testing::scratch_dir();
  for (const std::string key : {"", "a=b", "new\nline"}) {
    WriteOptions options;
    options.metadata[key] = "x";
    EXPECT_THROW(tessera::io::write_image(folder / "k.png", seeded_image(2, 2, 1), options),
                 tessera::Error);
  }
  EXPECT_TRUE(fs::is_empty(folder));
}

// ------------------------------------------------------------ channel rules

TEST(ImageRead, RgbHasNoNotes) {
  const fs::path path = tessera::testing::scratch_dir() / "rgb.png";
  tessera::io::write_image(path, seeded_image(5, 5, 16));
  EXPECT_TRUE(tessera::io::read_image_with_notes(path).notes.empty());
}

TEST(ImageRead, GreyIsReplicatedToRgb) {
  const fs::path path = tessera::testing::scratch_dir() / "grey.png";
  auto values = counting_bytes(7 * 5, 7);
  write_with_oiio(path, 7, 5, 1, values);
  auto [image, notes] = tessera::io::read_image_with_notes(path);
  ASSERT_EQ(image.width, 7);
  ASSERT_EQ(image.height, 5);
  EXPECT_TRUE(notes.empty());
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_NEAR(image.at(c, y, x), values[y * 7 + x] / 255.0f, 1e-6f);
}

TEST(ImageRead, GreyAlphaDropsAlphaWithANote) {
  const fs::path path = tessera::testing::scratch_dir() / "grey_alpha.png";
  std::vector<std::uint8_t> values;
  for (int i = 0; i < 6 * 4; ++i) {
    values.push_back(std::uint8_t(i * 10));           // grey
    values.push_back(std::uint8_t(i % 2 ? 0 : 128));  // alpha: transparent or half
  }
  write_with_oiio(path, 6, 4, 2, values, 1);
  auto [image, notes] = tessera::io::read_image_with_notes(path);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("alpha"), std::string::npos);
  for (int i = 0; i < 6 * 4; ++i)
    for (int c = 0; c < 3; ++c)
      ASSERT_NEAR(image.at(c, i / 6, i % 6), values[2 * i] / 255.0f, 1e-6f) << "pixel " << i;
}

TEST(ImageRead, RgbaKeepsColourAsStoredAndNotesTheAlpha) {
  // Colour must not be premultiplied by alpha, nor composited: a transparent
  // red pixel stays red.
  const fs::path path = tessera::testing::scratch_dir() / "rgba.png";
  std::vector<std::uint8_t> values;
  for (int i = 0; i < 9 * 3; ++i) {
    values.insert(values.end(), {std::uint8_t(255 - i), std::uint8_t(i * 3), std::uint8_t(100),
                                 std::uint8_t(i % 3 == 0   ? 0
                                              : i % 3 == 1 ? 128
                                                           : 255)});
  }
  write_with_oiio(path, 9, 3, 4, values, 3);
  auto [image, notes] = tessera::io::read_image_with_notes(path);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("alpha"), std::string::npos);
  for (int i = 0; i < 9 * 3; ++i)
    for (int c = 0; c < 3; ++c)
      ASSERT_NEAR(image.at(c, i / 9, i % 9), values[4 * i + c] / 255.0f, 1e-6f)
          << "pixel " << i << " channel " << c;
}

TEST(ImageRead, MoreThanFourChannelsUsesTheFirstThree) {
  const fs::path path = tessera::testing::scratch_dir() / "five.tif";
  auto values = counting_bytes(4 * 4 * 5, 13);
  write_with_oiio(path, 4, 4, 5, values);
  auto [image, notes] = tessera::io::read_image_with_notes(path);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("5 channels"), std::string::npos) << notes[0];
  for (int i = 0; i < 16; ++i)
    for (int c = 0; c < 3; ++c)
      ASSERT_NEAR(image.at(c, i / 4, i % 4), values[5 * i + c] / 255.0f, 1e-6f);
}

TEST(ImageRead, SixteenBitGreyScalesToUnitRange) {
  const fs::path path = tessera::testing::scratch_dir() / "grey16.png";
  std::vector<std::uint16_t> values = {0, 1, 32768, 65534, 65535, 1000};
  auto output = OIIO::ImageOutput::create(path.string());
  ASSERT_TRUE(output);
  ASSERT_TRUE(output->open(path.string(), OIIO::ImageSpec(3, 2, 1, OIIO::TypeDesc::UINT16)));
  ASSERT_TRUE(output->write_image(OIIO::TypeDesc::UINT16, values.data()));
  ASSERT_TRUE(output->close());
  Image image = tessera::io::read_image(path);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(image.at(1, i / 3, i % 3), values[i] / 65535.0f, 1e-7f);
}

// ------------------------------------------------------------------ errors

TEST(ImageReadErrors, MissingFileNamesThePath) {
  const fs::path path = tessera::testing::scratch_dir() / "no_such_image.png";
  std::string message = error_message_of([&] { tessera::io::read_image(path); });
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  message = error_message_of([&] { tessera::io::read_metadata(path); });
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
}

TEST(ImageReadErrors, TruncatedPngNamesThePathAndOiioMessage) {
  const fs::path path = tessera::testing::scratch_dir() / "truncated.png";
  // Noise does not compress, so the pixel data is most of the file.
  tessera::io::write_image(path, seeded_image(128, 128, 17));
  ASSERT_NO_THROW(tessera::io::read_image(path));
  fs::resize_file(path, fs::file_size(path) / 2);
  std::string message = error_message_of([&] { tessera::io::read_image(path); });
  ASSERT_FALSE(message.empty()) << "a truncated PNG was read without error";
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  // More than our own prefix: OpenImageIO's message follows it.
  EXPECT_GT(message.size(), ("cannot read image '" + path.string() + "': ").size() + 5) << message;
}

TEST(ImageReadErrors, GarbageAndEmptyFilesNameThePath) {
  const fs::path folder = tessera::testing::scratch_dir();
  std::ofstream(folder / "text.png") << "this is not a PNG at all, just some text";
  std::ofstream(folder / "empty.jpg");
  for (const fs::path& path : {folder / "text.png", folder / "empty.jpg"}) {
    std::string message = error_message_of([&] { tessera::io::read_image(path); });
    EXPECT_NE(message.find(path.string()), std::string::npos) << "'" << message << "'";
  }
}

TEST(ImageReadErrors, FolderIsNotAnImage) {
  const fs::path folder = tessera::testing::scratch_dir();
  std::string message = error_message_of([&] { tessera::io::read_image(folder); });
  EXPECT_NE(message.find("folder"), std::string::npos) << message;
}

TEST(ImageWriteErrors, MissingFolderFailsCleanly) {
  const fs::path scratch = tessera::testing::scratch_dir();
  const fs::path path = scratch / "no_such_folder" / "out.png";
  std::string message =
      error_message_of([&] { tessera::io::write_image(path, seeded_image(4, 4, 1)); });
  EXPECT_NE(message.find("cannot write output '" + path.string() + "'"), std::string::npos)
      << message;
  EXPECT_FALSE(fs::exists(scratch / "no_such_folder"));
  EXPECT_TRUE(fs::is_empty(scratch));
}

TEST(ImageWriteErrors, UnknownExtensionListsTheSupportedOnes) {
  const fs::path scratch = tessera::testing::scratch_dir();
  for (const char* name : {"out.bmp", "out", "out.png.bak"}) {
    std::string message =
        error_message_of([&] { tessera::io::write_image(scratch / name, seeded_image(4, 4, 1)); });
    SCOPED_TRACE(name);
    for (const char* extension : {".png", ".jpg", ".tif", ".exr"})
      EXPECT_NE(message.find(extension), std::string::npos) << message;
  }
  EXPECT_TRUE(fs::is_empty(scratch));
}

TEST(ImageWriteErrors, BitDepthsAFormatCannotHoldAreRefused) {
  const fs::path scratch = tessera::testing::scratch_dir();
  const Image image = seeded_image(4, 4, 1);
  EXPECT_THROW(tessera::io::write_image(scratch / "a.png", image, with_bits(32)), tessera::Error);
  EXPECT_THROW(tessera::io::write_image(scratch / "a.jpg", image, with_bits(16)), tessera::Error);
  EXPECT_THROW(tessera::io::write_image(scratch / "a.exr", image, with_bits(8)), tessera::Error);
  EXPECT_THROW(tessera::io::write_image(scratch / "a.tif", image, with_bits(12)), tessera::Error);
  EXPECT_THROW(tessera::io::write_image(scratch / "a.jpg", image, with_jpeg_quality(0)),
               tessera::Error);
  EXPECT_TRUE(fs::is_empty(scratch));
}

// ---------------------------------------------------------------- atomicity

TEST(ImageWriteAtomic, SuccessLeavesOnlyTheTargets) {
  const fs::path scratch = tessera::testing::scratch_dir();
  for (const char* name : {"a.png", "b.jpg", "c.tif", "d.exr"})
    tessera::io::write_image(scratch / name, seeded_image(8, 8, 2));
  EXPECT_EQ(file_names_in(scratch), (std::set<std::string>{"a.png", "b.jpg", "c.tif", "d.exr"}));
}

TEST(ImageWriteAtomic, OverwriteReplacesTheTarget) {
  const fs::path path = tessera::testing::scratch_dir() / "out.exr";
  tessera::io::write_image(path, seeded_image(8, 8, 3));
  Image second = seeded_image(5, 6, 4);
  tessera::io::write_image(path, second);
  EXPECT_EQ(tessera::io::read_image(path).pixels, second.pixels);
  EXPECT_EQ(file_names_in(path.parent_path()), std::set<std::string>{"out.exr"});
}

TEST(ImageWriteAtomic, FailedWriteLeavesTheExistingTargetUntouched) {
  const fs::path path = tessera::testing::scratch_dir() / "keep.png";
  tessera::io::write_image(path, seeded_image(8, 8, 5));
  const std::string before = file_bytes(path);
  Image malformed(8, 8);
  malformed.pixels.resize(10);
  EXPECT_THROW(tessera::io::write_image(path, malformed), tessera::Error);
  EXPECT_THROW(tessera::io::write_image(path, Image()), tessera::Error);
  EXPECT_THROW(tessera::io::write_image(path, seeded_image(8, 8, 6), with_bits(32)),
               tessera::Error);
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_EQ(file_names_in(path.parent_path()), std::set<std::string>{"keep.png"});
}

TEST(ImageWriteAtomic, FailureAfterTheTemporaryIsWrittenRemovesIt) {
  // The target is a non-empty folder: the pixels are written to the temporary
  // file, then the rename over the folder fails. The temporary must go and
  // the folder must stay as it was.
  const fs::path scratch = tessera::testing::scratch_dir();
  const fs::path target = scratch / "taken.png";
  fs::create_directory(target);
  std::ofstream(target / "inside.txt") << "keep me";
  std::string message =
      error_message_of([&] { tessera::io::write_image(target, seeded_image(16, 16, 7)); });
  EXPECT_NE(message.find("cannot write output '" + target.string() + "'"), std::string::npos)
      << message;
  EXPECT_EQ(file_names_in(scratch), std::set<std::string>{"taken.png"});
  EXPECT_EQ(file_names_in(target), std::set<std::string>{"inside.txt"});
}

// ------------------------------------------------------------------- strips

// Rows y0 .. y0 + rows of a planar image.
Image rows_of(const Image& image, int y0, int rows) {
  Image strip(image.width, rows);
  for (int c = 0; c < 3; ++c)
    std::copy_n(image.pixels.begin() + c * image.plane_size() + std::size_t(y0) * image.width,
                std::size_t(rows) * image.width, strip.pixels.begin() + c * strip.plane_size());
  return strip;
}

TEST(ImageStrips, StripsWriteWhatOneImageWrites) {
  const fs::path scratch = tessera::testing::scratch_dir();
  const Image image = seeded_image(37, 23, 12);
  for (auto [name, bits] : {std::pair{"s.png", 8}, {"s16.png", 16}, {"s.tif", 16}, {"s32.tif", 32},
                            {"s.exr", 32}, {"s16.exr", 16}, {"s.jpg", 8}}) {
    SCOPED_TRACE(name);
    WriteOptions options = with_metadata({{"style", "strips"}});
    options.bits = bits;
    tessera::io::write_image(scratch / ("whole_" + std::string(name)), image, options);
    {
      tessera::io::ImageStripWriter writer(scratch / name, image.width, image.height, options);
      for (int y = 0; y < image.height; y += 5) writer.write_rows(rows_of(image, y, std::min(5, image.height - y)));
      writer.finish();
    }
    EXPECT_EQ(tessera::io::read_image(scratch / name).pixels,
              tessera::io::read_image(scratch / ("whole_" + std::string(name))).pixels);
    EXPECT_EQ(tessera::io::read_metadata(scratch / name).at("style"), "strips");
  }
}

TEST(ImageStrips, AbandonedOrMisfedWriterLeavesTheTarget) {
  const fs::path path = tessera::testing::scratch_dir() / "kept.exr";
  tessera::io::write_image(path, seeded_image(12, 10, 13));
  const std::string before = file_bytes(path);
  const Image image = seeded_image(12, 10, 14);
  {
    tessera::io::ImageStripWriter writer(path, 12, 10);
    writer.write_rows(rows_of(image, 0, 4));
    // The next strip is too tall, then too narrow; then the writer is left.
    EXPECT_THROW(writer.write_rows(rows_of(image, 0, 7)), tessera::Error);
    EXPECT_THROW(writer.write_rows(seeded_image(11, 2, 15)), tessera::Error);
    EXPECT_THROW(writer.finish(), tessera::Error);  // 4 of 10 rows
  }
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_EQ(file_names_in(path.parent_path()), std::set<std::string>{"kept.exr"});
}

TEST(ImageWriteAtomic, UnwritableFolderFailsAndKeepsTheTarget) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: folder permissions do not stop root";
  const fs::path scratch = tessera::testing::scratch_dir();
  const fs::path path = scratch / "keep.png";
  tessera::io::write_image(path, seeded_image(8, 8, 8));
  const std::string before = file_bytes(path);
  fs::permissions(scratch, fs::perms::owner_read | fs::perms::owner_exec);
  std::string message =
      error_message_of([&] { tessera::io::write_image(path, seeded_image(8, 8, 9)); });
  fs::permissions(scratch, fs::perms::owner_all);
  EXPECT_NE(message.find("cannot write output '" + path.string() + "'"), std::string::npos)
      << message;
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_EQ(file_names_in(scratch), std::set<std::string>{"keep.png"});
}

TEST(ImageWriteAtomic, ReadersNeverSeeAPartialFile) {
  // One thread rewrites the target over and over with two different images;
  // this thread reads it meanwhile. Every read must succeed and give one of
  // the two whole images. Writing in place (no temporary and rename) fails
  // this within a few iterations: readers meet truncated PNGs.
  const fs::path path = tessera::testing::scratch_dir() / "busy.png";
  const Image first = seeded_image(256, 256, 20);
  const Image second = seeded_image(256, 256, 21);
  const WriteOptions options = with_bits(16);
  tessera::io::write_image(path, first, options);
  const std::vector<float> first_read = tessera::io::read_image(path).pixels;
  tessera::io::write_image(path, second, options);
  const std::vector<float> second_read = tessera::io::read_image(path).pixels;

  std::atomic<bool> writing{true};
  std::string writer_error;
  std::thread writer([&] {
    try {
      for (int round = 0; round < 40; ++round)
        tessera::io::write_image(path, round % 2 ? second : first, options);
    } catch (const std::exception& error) {
      writer_error = error.what();
    }
    writing = false;
  });
  int reads = 0, failures = 0, wrong = 0;
  while (writing) {
    try {
      const std::vector<float> pixels = tessera::io::read_image(path).pixels;
      if (pixels != first_read && pixels != second_read) ++wrong;
    } catch (const tessera::Error&) {
      ++failures;
    }
    ++reads;
  }
  writer.join();
  EXPECT_EQ(writer_error, "");
  EXPECT_GT(reads, 0);
  EXPECT_EQ(failures, 0) << "of " << reads << " reads";
  EXPECT_EQ(wrong, 0) << "of " << reads << " reads";
  EXPECT_EQ(file_names_in(path.parent_path()), std::set<std::string>{"busy.png"});
}

// ---------------------------------------------------------------- resizing

TEST(ImageResize, SameSizeIsTheIdentity) {
  const Image image = seeded_image(13, 9, 30, -1.0f, 3.0f);
  EXPECT_EQ(tessera::io::resize_image(image, 13, 9).pixels, image.pixels);
}

TEST(ImageResize, ConstantStaysConstant) {
  Image image(40, 30);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 30; ++y)
      for (int x = 0; x < 40; ++x) image.at(c, y, x) = 0.25f * (c + 1);
  for (auto [width, height] : {std::pair{20, 15}, {97, 61}, {40, 7}, {3, 100}}) {
    Image resized = tessera::io::resize_image(image, width, height);
    ASSERT_EQ(resized.width, width);
    ASSERT_EQ(resized.height, height);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) ASSERT_NEAR(resized.at(c, y, x), 0.25f * (c + 1), 1e-5f);
  }
}

TEST(ImageResize, DownsizingFiltersInsteadOfSampling) {
  // A one-pixel checkerboard halved: a filtered resize averages it to grey;
  // point sampling would keep 0s and 1s.
  Image checker(64, 64);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) checker.at(c, y, x) = float((x + y) % 2);
  Image half = tessera::io::resize_image(checker, 32, 32);
  for (float value : half.pixels) ASSERT_NEAR(value, 0.5f, 0.05f);
}

TEST(ImageResize, LinearRampIsPreservedAwayFromTheBorders) {
  // Symmetric normalised filters reproduce a linear ramp exactly; in pixel
  // centre coordinates the ramp value at output column i is (i + 0.5) / width.
  Image ramp(200, 8);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 200; ++x) ramp.at(c, y, x) = (x + 0.5f) / 200;
  for (int width : {50, 130, 450}) {
    Image resized = tessera::io::resize_image(ramp, width, 8);
    for (int x = width / 8; x < width - width / 8; ++x)
      ASSERT_NEAR(resized.at(1, 4, x), (x + 0.5f) / width, 2e-3f)
          << "width " << width << " x " << x;
  }
}

TEST(ImageResize, ChannelsStayApartAndWithinTheSourceRange) {
  // A hard edge would ring above 1 and below 0 with lanczos / blackman-harris;
  // the result is clamped to each channel's source range.
  Image edge(32, 32);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      edge.at(0, y, x) = x < 16 ? 0.0f : 1.0f;
      edge.at(1, y, x) = 0.75f;
      edge.at(2, y, x) = y < 16 ? 0.2f : 0.4f;
    }
  for (auto [width, height] : {std::pair{128, 128}, {11, 11}, {200, 20}}) {
    Image resized = tessera::io::resize_image(edge, width, height);
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        ASSERT_GE(resized.at(0, y, x), 0.0f);
        ASSERT_LE(resized.at(0, y, x), 1.0f);
        ASSERT_NEAR(resized.at(1, y, x), 0.75f, 1e-5f);
        ASSERT_GE(resized.at(2, y, x), 0.2f);
        ASSERT_LE(resized.at(2, y, x), 0.4f);
      }
    // The edge is still there: far left dark, far right bright.
    EXPECT_NEAR(resized.at(0, height / 2, 0), 0.0f, 1e-3f);
    EXPECT_NEAR(resized.at(0, height / 2, width - 1), 1.0f, 1e-3f);
  }
}

TEST(ImageResize, BadSizesAreRefused) {
  const Image image = seeded_image(4, 4, 31);
  EXPECT_THROW(tessera::io::resize_image(image, 0, 4), tessera::Error);
  EXPECT_THROW(tessera::io::resize_image(image, 4, -2), tessera::Error);
  EXPECT_THROW(tessera::io::resize_image(Image(), 4, 4), tessera::Error);
}

// Resizing split among ranks: each part of the result from the window of the
// source its filter reaches equals that part of the whole resize exactly,
// growing by 2 (between scales), by an uneven ratio, and shrinking.
TEST(ImageResize, InPartsEqualsTheWholeResize) {
  using tessera::Box;
  struct Case {
    int width, height, to_width, to_height;
  };
  for (const Case& c : {Case{37, 29, 74, 58}, Case{60, 45, 97, 71}, Case{80, 61, 33, 25}}) {
    const Image source = seeded_image(c.width, c.height, 40, -2.0f, 3.0f);
    const Image whole = tessera::io::resize_image(source, c.to_width, c.to_height);
    float low[3], high[3];
    const std::size_t plane = source.plane_size();
    for (int ch = 0; ch < 3; ++ch) {
      auto [lowest, highest] = std::minmax_element(source.pixels.begin() + ch * plane,
                                                   source.pixels.begin() + (ch + 1) * plane);
      low[ch] = *lowest;
      high[ch] = *highest;
    }
    // A 3x2 grid of parts of uneven sizes.
    const int xs[] = {0, c.to_width / 4, c.to_width / 2 + 3, c.to_width};
    const int ys[] = {0, c.to_height / 3, c.to_height};
    int differing = 0;
    for (int row = 0; row < 2; ++row)
      for (int column = 0; column < 3; ++column) {
        const Box part{xs[column], ys[row], xs[column + 1], ys[row + 1]};
        const Box window = tessera::io::resize_source_window(part, c.width, c.height, c.to_width, c.to_height);
        ASSERT_TRUE(Box({0, 0, c.width, c.height}).contains(window));
        ASSERT_LT(window.area(), (long long)c.width * c.height) << "the window is the whole image";
        std::vector<float> values;
        for (int ch = 0; ch < 3; ++ch)
          for (int y = window.y0; y < window.y1; ++y)
            for (int x = window.x0; x < window.x1; ++x) values.push_back(source.at(ch, y, x));
        std::vector<float> resized = tessera::io::resize_part(values, window, 3, c.width, c.height, c.to_width,
                                                              c.to_height, part);
        ASSERT_EQ(resized.size(), 3 * std::size_t(part.area()));
        std::size_t i = 0;
        for (int ch = 0; ch < 3; ++ch)
          for (int y = part.y0; y < part.y1; ++y)
            for (int x = part.x0; x < part.x1; ++x, ++i)
              differing += std::clamp(resized[i], low[ch], high[ch]) != whole.at(ch, y, x);
        // A window short of what the filter reaches is refused.
        const Box short_window{window.x0, window.y0, window.x1, std::max(window.y0 + 1, window.y1 - 1)};
        if (short_window.y1 < c.height && short_window != window) {
          std::vector<float> fewer(3 * std::size_t(short_window.area()));
          EXPECT_THROW(tessera::io::resize_part(fewer, short_window, 3, c.width, c.height, c.to_width, c.to_height,
                                                part),
                       tessera::Error);
        }
      }
    EXPECT_EQ(differing, 0) << c.width << "x" << c.height << " to " << c.to_width << "x" << c.to_height;
  }
}

// ------------------------------------------------------- the shared images

TEST(SharedImages, StarryNightCropAndEscherHaveTheirKnownSizes) {
  auto folder = tessera::testing::image_dir();
  if (!folder) GTEST_SKIP() << "no shared image folder (../shared/images or $TESSERA_IMAGE_DIR)";

  const fs::path crop_path = *folder / "starry_night_crop.png";
  const fs::path escher_path = *folder / "escher_sphere.jpg";
  if (!fs::exists(crop_path) || !fs::exists(escher_path))
    GTEST_SKIP() << "starry_night_crop.png or escher_sphere.jpg missing from " << *folder;

  auto crop = tessera::io::read_image_with_notes(crop_path);
  EXPECT_EQ(crop.image.width, 196);
  EXPECT_EQ(crop.image.height, 313);
  EXPECT_TRUE(crop.notes.empty());

  auto escher = tessera::io::read_image_with_notes(escher_path);
  EXPECT_EQ(escher.image.width, 960);
  EXPECT_EQ(escher.image.height, 1475);
  EXPECT_TRUE(escher.notes.empty());
  // Greyscale JPEG: the three planes are the same plane.
  const std::size_t plane = escher.image.plane_size();
  const auto& pixels = escher.image.pixels;
  EXPECT_TRUE(std::equal(pixels.begin(), pixels.begin() + plane, pixels.begin() + plane));
  EXPECT_TRUE(std::equal(pixels.begin(), pixels.begin() + plane, pixels.begin() + 2 * plane));
  const auto [low, high] = std::minmax_element(pixels.begin(), pixels.end());
  EXPECT_GE(*low, 0.0f);
  EXPECT_LE(*high, 1.0f);
  EXPECT_LT(*low, *high);  // not blank
}

// --fit: a 4:3 image meeting a 16:9 output, cropped (centred) or padded
// (centred, black), every pixel where it belongs.
TEST(ImageFit, CropAndPadKeepTheCentreAtTheImagesOwnResolution) {
  Image image(8, 6);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 8; ++x) image.at(c, y, x) = float(100 * c + 10 * y + x);
  using tessera::io::Fit;
  using tessera::io::fit_aspect;
  Image cropped = fit_aspect(image, 1920, 1080, Fit::crop);  // 8 x 4.5 -> 8 x 5 (rounded), rows 0..4
  ASSERT_EQ(cropped.width, 8);
  ASSERT_EQ(cropped.height, 5);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 5; ++y)
      for (int x = 0; x < 8; ++x) ASSERT_EQ(cropped.at(c, y, x), image.at(c, y, x)) << c << y << x;
  Image tall_crop = fit_aspect(image, 600, 1200, Fit::crop);  // 1:2 -> 3 x 6, columns 2..4
  ASSERT_EQ(tall_crop.width, 3);
  ASSERT_EQ(tall_crop.height, 6);
  EXPECT_EQ(tall_crop.at(1, 3, 0), image.at(1, 3, 2));
  Image padded = fit_aspect(image, 1920, 1080, Fit::pad);  // 10.67 x 6 -> 11 x 6, one black column left
  ASSERT_EQ(padded.width, 11);
  ASSERT_EQ(padded.height, 6);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 6; ++y) {
      EXPECT_EQ(padded.at(c, y, 0), 0.0f);
      for (int x = 0; x < 8; ++x) ASSERT_EQ(padded.at(c, y, 1 + x), image.at(c, y, x));
      EXPECT_EQ(padded.at(c, y, 9), 0.0f);
      EXPECT_EQ(padded.at(c, y, 10), 0.0f);
    }
  EXPECT_EQ(fit_aspect(image, 1920, 1080, Fit::stretch).pixels, image.pixels);
  EXPECT_EQ(fit_aspect(image, 800, 600, Fit::crop).pixels, image.pixels);  // the same shape
  EXPECT_THROW(tessera::io::parse_fit("squash"), tessera::Error);
}

}  // namespace
