// Loading: the text-format file, then the --set overrides, then validation with the caller's
// rules; every error is one line naming where the bad value came from (file:line:column or the
// --set argument).
#include <google/protobuf/text_format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/config/schema.h"

namespace mowe::config {
namespace {

using pb::TextFormat;

void parse_text(const std::string& text, const std::string& source, Config* config,
                TextFormat::ParseInfoTree* tree) {
  FirstErrorCollector errors;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(tree);
  if (parser.ParseFromString(text, config)) return;
  ParseError e = describe_parse_error(text, Config::descriptor(), "", errors);
  throw UserError(fmt::format("{}:{}:{}: {}", source, e.line + 1, e.column + 1, e.message));
}

std::string read_config_file(const std::string& path) {
  if (path.empty()) throw UserError("no config file given: pass --config PATH (see configs/)");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw UserError(
        fmt::format("{}: no such config file (check the path; the shipped configs are "
                    "in configs/)",
                    path));
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in) throw UserError(fmt::format("{}: cannot read the config file", path));
  return buffer.str();
}

// ---- locating the source of a validation error ------------------------------------------------

bool paths_overlap(const std::string& a, const std::string& b) {
  const std::string& shorter = a.size() < b.size() ? a : b;
  const std::string& longer = a.size() < b.size() ? b : a;
  if (longer.compare(0, shorter.size(), shorter) != 0) return false;
  return longer.size() == shorter.size() || longer[shorter.size()] == '.' ||
         longer[shorter.size()] == '[';
}

std::string override_path(const std::string& assignment) {
  std::string path = assignment.substr(0, assignment.find('='));
  path.erase(0, path.find_first_not_of(" \t"));
  path.erase(path.find_last_not_of(" \t") + 1);
  return path;
}

// The deepest position the file gives for the path ("file:line:col"), or just the file.
std::string file_location(const std::string& path, const std::string& source,
                          const TextFormat::ParseInfoTree& tree) {
  auto segments = split_path(path);
  std::string best = source;
  if (!segments) return best;
  const TextFormat::ParseInfoTree* t = &tree;
  const pb::Descriptor* type = Config::descriptor();
  for (const PathSegment& s : *segments) {
    const pb::FieldDescriptor* f = type ? type->FindFieldByName(s.name) : nullptr;
    if (!f || !t) break;
    int index = f->is_repeated() ? std::max(s.index, 0) : -1;
    auto location = t->GetLocation(f, index);
    if (location.line < 0) break;
    best = fmt::format("{}:{}:{}", source, location.line + 1, location.column + 1);
    if (!f->message_type()) break;
    t = t->GetTreeForNested(f, index);
    type = f->message_type();
  }
  return best;
}

std::string locate(const std::string& path, const std::string& source,
                   const TextFormat::ParseInfoTree& tree,
                   const std::vector<std::string>& overrides) {
  for (auto it = overrides.rbegin(); it != overrides.rend(); ++it)
    if (paths_overlap(override_path(*it), path)) return "--set " + *it;
  return file_location(path, source, tree);
}

}  // namespace

Config load_config_text(const std::string& text, const std::string& source,
                        const std::vector<std::string>& overrides, Rules rules) {
  Config config;
  TextFormat::ParseInfoTree tree;
  parse_text(text, source, &config, &tree);
  for (const std::string& o : overrides) apply_override(&config, o);
  if (Result v = find_violation(config, rules))
    throw UserError(locate(v->path, source, tree, overrides) + ": " + v->message);
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   Rules rules) {
  Config config = load_config_text(read_config_file(path), path, overrides, rules);
  spdlog::debug("[config] loaded {} with {} override(s)", path, overrides.size());
  return config;
}

}  // namespace mowe::config
