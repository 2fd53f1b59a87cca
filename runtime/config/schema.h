// Internal to runtime/config: reading the schema's field options (help, bounds) and describing
// fields the same way in --help, the reference and error messages.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/message.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/proto/config.pb.h"

namespace mowe::config {

namespace pb = google::protobuf;

// Keeps the first error instead of printing every error to stderr, as the default one does.
class FirstErrorCollector : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (!message_.empty()) return;
    line_ = line, column_ = column, message_ = message;
  }
  void AddWarning(int, pb::io::ColumnNumber, const std::string&) override {}

  int line() const { return line_; }      // 0-based
  int column() const { return column_; }  // 0-based
  const std::string& message() const { return message_; }

 private:
  int line_ = -1;
  int column_ = -1;
  std::string message_;
};

// A text-format parse error in schema terms: message names the field ("model.d_model: Expected
// integer, got: x"), the enclosing message, or an unknown field with the known ones; line and
// column (0-based) locate it. root/root_path: the type parsed and its path in Config.
struct ParseError {
  std::string message;
  int line, column;
};
ParseError describe_parse_error(const std::string& text, const pb::Descriptor* root,
                                const std::string& root_path, const FirstErrorCollector& error);

// One step of a field path: "buckets[2]" is {"buckets", 2}; index -1 when none is given.
struct PathSegment {
  std::string name;
  int index = -1;
};

// Splits "model.mowe.buckets[2].num_blocks" into segments; nullopt if it is not such a path.
std::optional<std::vector<PathSegment>> split_path(const std::string& path);

std::string join(const std::vector<std::string>& parts, const std::string& separator);

// "int32", "double", "bool", "string" or the message type name.
std::string type_name(const pb::FieldDescriptor* field);

// What --set expects: "<int32>", "<GELU|GATED_GELU>", "[<int32>, ...]", "{...}".
std::string value_placeholder(const pb::FieldDescriptor* field);

// The default as it would be written in a config ("768", "\"text\"", "GELU"); empty for
// repeated and message fields.
std::string default_text(const pb::FieldDescriptor* field);

// The allowed range from the schema's options, e.g. ">= 1", ">= 0 and < 1"; empty when unbounded.
std::string range_text(const pb::FieldDescriptor* field);

// The allowed number of elements of a repeated field, e.g. "at most 64 elements"; or empty.
std::string size_text(const pb::FieldDescriptor* field);

std::string help_of(const pb::FieldDescriptor* field);
std::string enum_value_names(const pb::EnumDescriptor* type);
std::string field_names(const pb::Descriptor* type);

// "unknown field 'model.d_modle' (did you mean 'd_model'? known fields of model: ...)".
// parent_path is the dotted path of the message the name was looked up in ("" at top level).
std::string unknown_field_message(const std::string& parent_path, const std::string& name,
                                  const pb::Descriptor* parent);

// Visits every field of the schema below `type` in declaration order, messages before their
// fields. Paths name repeated message elements "buckets[i]".
void for_each_schema_field(
    const pb::Descriptor* type, const std::string& prefix,
    const std::function<void(const std::string& path, const pb::FieldDescriptor*)>& visit);

}  // namespace mowe::config
