// Parse errors described in terms of the schema: the parser reports a position and a message;
// re-reading the tokens up to that position tells which field or message it belongs to.
#include <fmt/format.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <map>
#include <regex>

#include "runtime/config/schema.h"

namespace mowe::config {
namespace {

struct Token {
  pb::io::Tokenizer::TokenType type;
  std::string text;
  int line, column;
};

std::vector<Token> tokenize(const std::string& text) {
  pb::io::ArrayInputStream input(text.data(), int(text.size()));
  FirstErrorCollector ignored;
  pb::io::Tokenizer tokenizer(&input, &ignored);
  tokenizer.set_comment_style(pb::io::Tokenizer::SH_COMMENT_STYLE);
  std::vector<Token> tokens;
  while (tokenizer.Next()) {
    const auto& t = tokenizer.current();
    tokens.push_back({t.type, t.text, t.line, t.column});
  }
  return tokens;
}

// Where a parse error happened in terms of the schema: the innermost open message, the field
// whose value was expected there, or a name the message does not have. Found by re-reading the
// tokens up to the error, since the parser reports only a position.
struct ErrorContext {
  std::string message_path;  // dotted path of the innermost open message; "" at top level
  const pb::Descriptor* message_type = nullptr;
  const pb::FieldDescriptor* value_of = nullptr;  // set when the error is where a value belongs
  std::string unknown_name;
  int line = -1, column = -1;  // position of the unknown name, or of the last token read
};

struct Frame {
  const pb::Descriptor* type;
  std::string path;
  const pb::FieldDescriptor* list = nullptr;   // set while inside "field: [ ... ]"
  const pb::FieldDescriptor* field = nullptr;  // last field named in this message
};

std::string child_path(const std::string& parent, const pb::FieldDescriptor* f,
                       std::map<std::string, int>* element_counts) {
  std::string path = parent.empty() ? f->name() : parent + "." + f->name();
  if (!f->is_repeated()) return path;
  return path + "[" + std::to_string((*element_counts)[path]++) + "]";
}

ErrorContext find_error_context(const std::string& text, const pb::Descriptor* root,
                                const std::string& root_path, int error_line, int error_column) {
  std::vector<Token> tokens = tokenize(text);
  std::vector<Frame> stack{{root, root_path}};
  std::map<std::string, int> element_counts;
  std::string last;
  int last_line = -1, last_column = -1;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    bool at_error = t.line == error_line && t.column == error_column;
    if (t.line > error_line || (t.line == error_line && t.column > error_column)) break;
    const std::string next = i + 1 < tokens.size() ? tokens[i + 1].text : "";
    Frame& top = stack.back();
    bool in_list = top.list != nullptr;
    if (t.type == pb::io::Tokenizer::TYPE_IDENTIFIER && !in_list &&
        (next == ":" || next == "{" || next == "<")) {
      // The parser may report an unknown name at the name itself or just after it.
      top.field = top.type->FindFieldByName(t.text);
      if (!top.field) return {top.path, top.type, nullptr, t.text, t.line, t.column};
    }
    if (at_error) break;
    if (t.text == "[" && last == ":" && top.field && !in_list) {
      stack.push_back({top.type, top.path, top.field, top.field});
    } else if (t.text == "]" && in_list) {
      stack.pop_back();
    } else if (t.text == "{" || t.text == "<") {
      const pb::FieldDescriptor* f = in_list ? top.list : top.field;
      if (!f || !f->message_type()) break;
      stack.push_back({f->message_type(), child_path(top.path, f, &element_counts)});
    } else if ((t.text == "}" || t.text == ">") && stack.size() > 1 && !in_list) {
      stack.pop_back();
    }
    last = t.text, last_line = t.line, last_column = t.column;
  }
  const Frame& top = stack.back();
  bool at_value = top.list || last == ":";
  const pb::FieldDescriptor* value_of = at_value ? (top.list ? top.list : top.field) : nullptr;
  return {top.path, top.type, value_of, "", last_line, last_column};
}

std::string join_path(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

}  // namespace

ParseError describe_parse_error(const std::string& text, const pb::Descriptor* root,
                                const std::string& root_path, const FirstErrorCollector& error) {
  ErrorContext c = find_error_context(text, root, root_path, error.line(), error.column());
  if (!c.unknown_name.empty())
    return {unknown_field_message(c.message_path, c.unknown_name, c.message_type), c.line,
            c.column};
  // The parser reports a bad enum value at the token after it; point at the value instead.
  static const std::regex bad_enum(
      R"re(Unknown enumeration value of "([^"]*)" for field "(\w+)")re");
  std::smatch m;
  const pb::FieldDescriptor* f = nullptr;
  if (std::regex_search(error.message(), m, bad_enum) && c.message_type &&
      (f = c.message_type->FindFieldByName(m[2].str())) && f->enum_type()) {
    bool found = c.line >= 0;
    return {fmt::format("{}: '{}' is not one of {}", join_path(c.message_path, f->name()),
                        m[1].str(), enum_value_names(f->enum_type())),
            found ? c.line : error.line(), found ? c.column : error.column()};
  }
  std::string message = error.message();
  if (c.value_of)
    message = join_path(c.message_path, c.value_of->name()) + ": " + message;
  else if (!c.message_path.empty())
    message = "in " + c.message_path + ": " + message;
  return {message, error.line(), error.column()};
}

}  // namespace mowe::config
