#include "runtime/config/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <sstream>

#include "runtime/proto/options.pb.h"

namespace mowe::config {

std::optional<std::vector<PathSegment>> split_path(const std::string& path) {
  static const std::regex segment(R"(([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d{1,9})\])?)");
  std::vector<PathSegment> out;
  std::stringstream in(path);
  std::string part;
  while (std::getline(in, part, '.')) {
    std::smatch m;
    if (!std::regex_match(part, m, segment)) return std::nullopt;
    out.push_back({m[1].str(), m[2].matched ? std::stoi(m[2].str()) : -1});
  }
  if (out.empty() || path.back() == '.') return std::nullopt;
  return out;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

std::string type_name(const pb::FieldDescriptor* field) {
  if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) return field->message_type()->name();
  if (field->type() == pb::FieldDescriptor::TYPE_ENUM) return field->enum_type()->name();
  return field->type_name();
}

std::string value_placeholder(const pb::FieldDescriptor* field) {
  std::string one;
  if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
    one = "{...}";
  } else if (field->type() == pb::FieldDescriptor::TYPE_ENUM) {
    std::vector<std::string> names;
    for (int i = 0; i < field->enum_type()->value_count(); ++i)
      names.push_back(field->enum_type()->value(i)->name());
    one = "<" + join(names, "|") + ">";
  } else {
    one = "<" + std::string(field->type_name()) + ">";
  }
  return field->is_repeated() ? "[" + one + ", ...]" : one;
}

std::string default_text(const pb::FieldDescriptor* field) {
  if (field->is_repeated()) return "";
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return std::to_string(field->default_value_int32());
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return std::to_string(field->default_value_int64());
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return std::to_string(field->default_value_uint32());
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(field->default_value_uint64());
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return fmt::format("{}", field->default_value_double());
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return fmt::format("{}", field->default_value_float());
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return field->default_value_bool() ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return field->default_value_enum()->name();
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return "\"" + field->default_value_string() + "\"";
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return "";
  }
  return "";
}

std::string range_text(const pb::FieldDescriptor* field) {
  const pb::FieldOptions& o = field->options();
  std::vector<std::string> parts;
  if (o.HasExtension(minimum)) parts.push_back(fmt::format(">= {}", o.GetExtension(minimum)));
  if (o.HasExtension(exclusive_minimum))
    parts.push_back(fmt::format("> {}", o.GetExtension(exclusive_minimum)));
  if (o.HasExtension(maximum)) parts.push_back(fmt::format("<= {}", o.GetExtension(maximum)));
  if (o.HasExtension(exclusive_maximum))
    parts.push_back(fmt::format("< {}", o.GetExtension(exclusive_maximum)));
  return join(parts, " and ");
}

std::string size_text(const pb::FieldDescriptor* field) {
  const pb::FieldOptions& o = field->options();
  std::vector<std::string> parts;
  if (o.HasExtension(min_items))
    parts.push_back(fmt::format("at least {} elements", o.GetExtension(min_items)));
  if (o.HasExtension(max_items))
    parts.push_back(fmt::format("at most {} elements", o.GetExtension(max_items)));
  return join(parts, " and ");
}

std::string help_of(const pb::FieldDescriptor* field) {
  return field->options().GetExtension(help);
}

std::string enum_value_names(const pb::EnumDescriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) names.push_back(type->value(i)->name());
  return join(names, ", ");
}

std::string field_names(const pb::Descriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->field_count(); ++i) names.push_back(type->field(i)->name());
  return join(names, ", ");
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = diagonal + (a[i - 1] != b[j - 1]);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

// The field name closest to a misspelt one, if it is close enough to be the likely intent.
std::string closest_field(const pb::Descriptor* type, const std::string& name) {
  std::string best;
  size_t best_distance = std::max<size_t>(1, name.size() / 3) + 1;
  for (int i = 0; i < type->field_count(); ++i) {
    size_t d = edit_distance(name, type->field(i)->name());
    if (d < best_distance) best_distance = d, best = type->field(i)->name();
  }
  return best;
}

}  // namespace

std::string unknown_field_message(const std::string& parent_path, const std::string& name,
                                  const pb::Descriptor* parent) {
  std::string path = parent_path.empty() ? name : parent_path + "." + name;
  std::string suggestion = closest_field(parent, name);
  std::string hint = suggestion.empty() ? "" : fmt::format("did you mean '{}'? ", suggestion);
  std::string where = parent_path.empty() ? "the top level" : parent_path;
  return fmt::format("unknown field '{}' ({}known fields of {}: {})", path, hint, where,
                     field_names(parent));
}

void for_each_schema_field(
    const pb::Descriptor* type, const std::string& prefix,
    const std::function<void(const std::string& path, const pb::FieldDescriptor*)>& visit) {
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* field = type->field(i);
    std::string path = prefix.empty() ? field->name() : prefix + "." + field->name();
    visit(path, field);
    if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE)
      for_each_schema_field(field->message_type(), field->is_repeated() ? path + "[i]" : path,
                            visit);
  }
}

}  // namespace mowe::config
