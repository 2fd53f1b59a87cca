// The generic half of validation: every field against the schema's bounds, then the rules the
// caller passes (each module's, assembled in launch/train/config_rules.h).
#include <fmt/format.h>

#include <cmath>

#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/config/rules.h"
#include "runtime/config/schema.h"
#include "runtime/proto/options.pb.h"

namespace mowe::config {
namespace {

bool is_numeric(const pb::FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64:
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64:
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return true;
    default:
      return false;
  }
}

// The value of a numeric field (index -1 for a singular one), as a double for the bound checks
// and as text for the message.
std::pair<double, std::string> numeric_value(const pb::Message& m, const pb::FieldDescriptor* f,
                                             int index) {
  const pb::Reflection* r = m.GetReflection();
  bool rep = index >= 0;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      auto v = rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      auto v = rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      auto v = rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      auto v = rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      auto v = rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
      return {double(v), fmt::format("{}", v)};
    }
    default: {
      auto v = rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
      return {v, fmt::format("{}", v)};
    }
  }
}

bool in_range(double v, const pb::FieldOptions& o) {
  return !(o.HasExtension(minimum) && v < o.GetExtension(minimum)) &&
         !(o.HasExtension(maximum) && v > o.GetExtension(maximum)) &&
         !(o.HasExtension(exclusive_minimum) && v <= o.GetExtension(exclusive_minimum)) &&
         !(o.HasExtension(exclusive_maximum) && v >= o.GetExtension(exclusive_maximum));
}

Result check_number(const pb::Message& m, const pb::FieldDescriptor* f, int index,
                    const std::string& path) {
  auto [value, text] = numeric_value(m, f, index);
  if (!std::isfinite(value))
    return violation(path, fmt::format("{} = {} is not a finite number", path, text));
  if (in_range(value, f->options())) return std::nullopt;
  return violation(path,
                   fmt::format("{} = {} is out of range: must be {}", path, text, range_text(f)));
}

Result check_size(const pb::FieldDescriptor* f, int size, const std::string& path) {
  const pb::FieldOptions& o = f->options();
  bool too_few = o.HasExtension(min_items) && size < o.GetExtension(min_items);
  bool too_many = o.HasExtension(max_items) && size > o.GetExtension(max_items);
  if (!too_few && !too_many) return std::nullopt;
  return violation(path, fmt::format("{} has {} elements: must have {}", path, size, size_text(f)));
}

// Walks every field, set or default (unset messages read as their default instance).
Result check_bounds(const pb::Message& m, const std::string& prefix) {
  const pb::Reflection* r = m.GetReflection();
  const pb::Descriptor* type = m.GetDescriptor();
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    bool message = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (!f->is_repeated()) {
      Result v = message         ? check_bounds(r->GetMessage(m, f), path)
                 : is_numeric(f) ? check_number(m, f, -1, path)
                                 : std::nullopt;
      if (v) return v;
      continue;
    }
    int size = r->FieldSize(m, f);
    if (Result v = check_size(f, size, path)) return v;
    for (int k = 0; k < size; ++k) {
      std::string element = fmt::format("{}[{}]", path, k);
      Result v = message         ? check_bounds(r->GetRepeatedMessage(m, f, k), element)
                 : is_numeric(f) ? check_number(m, f, k, element)
                                 : std::nullopt;
      if (v) return v;
    }
  }
  return std::nullopt;
}

}  // namespace

Result check_schema_bounds(const Config& config) {
  return check_bounds(config, "");
}

Result find_violation(const Config& config, Rules rules) {
  if (Result v = check_schema_bounds(config)) return v;
  for (Rule rule : rules)
    if (Result v = rule(config)) return v;
  return std::nullopt;
}

void validate(const Config& config, Rules rules) {
  if (Result v = find_violation(config, rules)) throw UserError("config: " + v->message);
}

}  // namespace mowe::config
