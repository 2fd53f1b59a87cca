// --set path.to.field=value: one field (or list element, or list) replaced after the file is read.
#include <fmt/format.h>
#include <google/protobuf/text_format.h>

#include <charconv>
#include <limits>

#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/config/schema.h"

namespace mowe::config {
namespace {

std::string trim(const std::string& s) {
  size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

// Thrown with the text after "--set <assignment>: ".
struct OverrideError {
  std::string message;
};

template <typename T>
T parse_number(const std::string& text, const char* type) {
  std::string s = !text.empty() && text[0] == '+' ? text.substr(1) : text;
  T value{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec == std::errc::result_out_of_range)
    throw OverrideError{fmt::format("'{}' does not fit in {}", text, type)};
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    throw OverrideError{fmt::format("'{}' is not {}", text, type)};
  return value;
}

template <typename T>
T parse_integer(const std::string& text, const char* type) {
  auto wide = parse_number<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(text, type);
  if (wide < std::numeric_limits<T>::min() || wide > std::numeric_limits<T>::max())
    throw OverrideError{fmt::format("'{}' does not fit in {}", text, type)};
  return T(wide);
}

bool parse_bool(const std::string& text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  throw OverrideError{fmt::format("'{}' is not a bool (true or false)", text)};
}

const pb::EnumValueDescriptor* parse_enum(const pb::FieldDescriptor* f, const std::string& text) {
  const pb::EnumValueDescriptor* value = f->enum_type()->FindValueByName(text);
  if (!value)
    throw OverrideError{
        fmt::format("'{}' is not one of {}", text, enum_value_names(f->enum_type()))};
  return value;
}

std::string unquote(const std::string& text) {
  bool quoted = text.size() >= 2 && (text[0] == '"' || text[0] == '\'') && text.back() == text[0];
  return quoted ? text.substr(1, text.size() - 2) : text;
}

// Sets a singular scalar field, or appends to a repeated one.
void set_scalar(pb::Message* m, const pb::FieldDescriptor* f, const std::string& text) {
  const pb::Reflection* r = m->GetReflection();
  bool add = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      auto v = parse_integer<int32_t>(text, "an int32");
      return add ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      auto v = parse_integer<int64_t>(text, "an int64");
      return add ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      auto v = parse_integer<uint32_t>(text, "a uint32");
      return add ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      auto v = parse_integer<uint64_t>(text, "a uint64");
      return add ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      auto v = parse_number<double>(text, "a double");
      return add ? r->AddDouble(m, f, v) : r->SetDouble(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      auto v = parse_number<float>(text, "a float");
      return add ? r->AddFloat(m, f, v) : r->SetFloat(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool v = parse_bool(text);
      return add ? r->AddBool(m, f, v) : r->SetBool(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      auto* v = parse_enum(f, text);
      return add ? r->AddEnum(m, f, v) : r->SetEnum(m, f, v);
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return add ? r->AddString(m, f, unquote(text)) : r->SetString(m, f, unquote(text));
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return;
  }
}

// Replaces element `index` of a repeated scalar field (index == size appends).
void set_element(pb::Message* m, const pb::FieldDescriptor* f, int index, const std::string& text) {
  const pb::Reflection* r = m->GetReflection();
  int size = r->FieldSize(*m, f);
  set_scalar(m, f, text);
  if (index == size) return;
  r->SwapElements(m, f, index, size);
  r->RemoveLast(m, f);
}

// "[1, 2, 3]" (or a single bare value) into its elements.
std::vector<std::string> split_list(const std::string& text) {
  std::string inner = text;
  if (!inner.empty() && inner.front() == '[') {
    if (inner.back() != ']') throw OverrideError{fmt::format("'{}' has no closing ']'", text)};
    inner = trim(inner.substr(1, inner.size() - 2));
    if (inner.empty()) return {};
  }
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t comma; (comma = inner.find(',', start)) != std::string::npos; start = comma + 1)
    out.push_back(trim(inner.substr(start, comma - start)));
  out.push_back(trim(inner.substr(start)));
  return out;
}

std::string past_the_end(const std::string& path, int size, int index) {
  return fmt::format("{} has {} element{}: index {} is past the end ([{}] appends)",
                     path.substr(0, path.rfind('[')), size, size == 1 ? "" : "s", index, size);
}

// Messages take text format: "{ num_blocks: 4 }", or for a repeated field "[{...}, {...}]".
// path is m's path in the config, for naming the field in errors.
void merge_text(pb::Message* m, const std::string& path, const std::string& text) {
  FirstErrorCollector errors;
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.MergeFromString(text, m))
    throw OverrideError{describe_parse_error(text, m->GetDescriptor(), path, errors).message};
}

std::string strip_braces(const std::string& text) {
  if (text.size() >= 2 && text.front() == '{' && text.back() == '}')
    return text.substr(1, text.size() - 2);
  return text;
}

// Assigns `value` to field f of m (at `parent_path`): element `index`, or the whole field if -1.
void assign(pb::Message* m, const std::string& parent_path, const pb::FieldDescriptor* f, int index,
            const std::string& path, const std::string& value) {
  const pb::Reflection* r = m->GetReflection();
  bool message = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
  if (index >= 0) {
    int size = r->FieldSize(*m, f);
    if (index > size) throw OverrideError{past_the_end(path, size, index)};
    if (!message) return set_element(m, f, index, value);
    pb::Message* element =
        index == size ? r->AddMessage(m, f) : r->MutableRepeatedMessage(m, f, index);
    element->Clear();
    return merge_text(element, path, strip_braces(value));
  }
  r->ClearField(m, f);
  if (message) return merge_text(m, parent_path, f->name() + ": " + value);
  if (!f->is_repeated()) return set_scalar(m, f, value);
  for (const std::string& element : split_list(value)) set_scalar(m, f, element);
}

void apply(Config* config, const std::string& path_text, const std::string& value) {
  auto segments = split_path(path_text);
  if (!segments)
    throw OverrideError{
        fmt::format("'{}' is not a field path (like model.d_model or "
                    "model.mowe.buckets[0].num_blocks)",
                    path_text)};
  pb::Message* m = config;
  std::string path;
  for (size_t i = 0; i < segments->size(); ++i) {
    const PathSegment& s = (*segments)[i];
    const pb::Descriptor* type = m->GetDescriptor();
    const pb::FieldDescriptor* f = type->FindFieldByName(s.name);
    if (!f) throw OverrideError{unknown_field_message(path, s.name, type)};
    std::string parent = path;
    path = parent.empty() ? s.name : parent + "." + s.name;
    if (s.index >= 0 && !f->is_repeated())
      throw OverrideError{fmt::format("'{}' is not a list: drop the [{}]", path, s.index)};
    if (s.index >= 0) path += "[" + std::to_string(s.index) + "]";
    if (i + 1 == segments->size()) return assign(m, parent, f, s.index, path, value);
    if (!f->message_type())
      throw OverrideError{fmt::format("'{}' is a value ({}), not a message: it has no field '{}'",
                                      path, type_name(f), (*segments)[i + 1].name)};
    const pb::Reflection* r = m->GetReflection();
    if (!f->is_repeated()) {
      m = r->MutableMessage(m, f);
      continue;
    }
    if (s.index < 0)
      throw OverrideError{fmt::format("'{}' is a list: name an element, as {}[0]", path, path)};
    int size = r->FieldSize(*m, f);
    if (s.index > size) throw OverrideError{past_the_end(path, size, s.index)};
    m = s.index == size ? r->AddMessage(m, f) : r->MutableRepeatedMessage(m, f, s.index);
  }
}

}  // namespace

void apply_override(Config* config, const std::string& assignment) {
  size_t eq = assignment.find('=');
  try {
    if (eq == std::string::npos || trim(assignment.substr(0, eq)).empty())
      throw OverrideError{"expected path.to.field=value"};
    apply(config, trim(assignment.substr(0, eq)), trim(assignment.substr(eq + 1)));
  } catch (const OverrideError& e) {
    throw UserError(fmt::format("--set {}: {}", assignment, e.message));
  }
}

}  // namespace mowe::config
