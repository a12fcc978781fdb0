// import_weights: detect the format from the first bytes, run its importer,
// record where the weights came from, and validate them against the model.
#include "tessera/io/import.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "importers.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"

namespace tessera::io {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

enum class SourceFormat { pth_zip, pth_legacy, hdf5, caffemodel };

SourceFormat detect_format(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path.string(), "': ", std::strerror(errno));
  std::array<unsigned char, 16> head{};
  in.read(reinterpret_cast<char*>(head.data()), head.size());
  std::size_t got = std::size_t(in.gcount());
  auto starts_with = [&](std::initializer_list<unsigned char> magic) {
    return got >= magic.size() && std::equal(magic.begin(), magic.end(), head.begin());
  };
  if (got == 0) fail("'", path.string(), "' is empty");
  // Local file header signature; torch.save's zip files always begin with one.
  if (starts_with({'P', 'K', 0x03, 0x04})) return SourceFormat::pth_zip;
  // PROTO 2, LONG1 of 10 bytes, then the first bytes of torch's magic number.
  if (starts_with({0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46})) return SourceFormat::pth_legacy;
  if (starts_with({0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'})) return SourceFormat::hdf5;
  if (starts_with({0x1f, 0x8b}))
    fail("'", path.string(), "' is gzip-compressed; extract the weight file from it first");
  // A pickle of any other kind: a bare pickle.dump, or a torch.save written
  // with a newer protocol we do not know the framing of.
  if (head[0] == 0x80 && got >= 2 && head[1] <= 5)
    fail("'", path.string(), "' is a pickle but not a torch.save() file (no zip archive, no legacy magic number)");
  return SourceFormat::caffemodel;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ImportOptions::parse_map(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> map;
  std::set<std::string> seen;
  while (!trim(text).empty()) {
    std::size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    std::size_t equals = item.find('=');
    if (equals == std::string_view::npos)
      fail("key map item '", item, "' has no '=' (expected prefix=layer, e.g. conv2=conv1_1)");
    std::string key(trim(item.substr(0, equals)));
    std::string value(trim(item.substr(equals + 1)));
    if (key.empty() || value.empty()) fail("key map item '", item, "' has an empty side");
    if (!seen.insert(key).second) fail("key map names '", key, "' twice");
    map.emplace_back(std::move(key), std::move(value));
  }
  return map;
}

bool needs_conversion(const std::filesystem::path& source) { return detect_format(source) != SourceFormat::hdf5; }

ImportResult import_weights(const std::filesystem::path& source, const ImportOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(source, ec))
    fail("weight source '", source.string(), "' is not a file", ec ? ": " + ec.message() : std::string());
  if (!options.architecture.empty()) architecture(options.architecture);  // unknown names fail early

  ImportResult result;
  SourceFormat format = detect_format(source);
  try {
    switch (format) {
      case SourceFormat::pth_zip: result = detail::import_pth_zip(source, options); break;
      case SourceFormat::pth_legacy: result = detail::import_pth_legacy(source, options); break;
      case SourceFormat::caffemodel: result = detail::import_caffemodel(source, options); break;
      case SourceFormat::hdf5:
        result.weights = read_weights(source);
        result.notes.push_back("the file is already a tessera weight file; read as is");
        if (!options.architecture.empty() && options.architecture != result.weights.architecture)
          fail("it holds ", result.weights.architecture, " weights, not ", options.architecture);
        break;
    }
  } catch (const Error& error) {
    // One prefix naming the source, whatever depth the error came from.
    std::string message = error.what();
    std::string name = source.filename().string() + ": ";
    if (message.starts_with(name)) message.erase(0, name.size());
    fail("cannot import '", source.string(), "': ", message);
  }

  WeightSet& weights = result.weights;
  if (options.input) {
    weights.input = *options.input;
    weights.provenance["input_convention"] = "given by the user";
    result.notes.push_back("input colour transform replaced by the one given");
  }
  if (format != SourceFormat::hdf5) {  // a tessera file keeps the provenance it has
    weights.provenance["source_file"] = source.filename().string();
    weights.provenance["source_bytes"] = std::to_string(std::filesystem::file_size(source));
    weights.provenance["source_sha256"] = detail::sha256_of_file(source);
    weights.provenance["imported_by"] = std::string("tessera ") + build_info::version;
  }
  validate_weights(architecture(weights.architecture), weights);
  return result;
}

}  // namespace tessera::io
