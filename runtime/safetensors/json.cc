#include "runtime/safetensors/json.h"

#include <fmt/format.h>

#include <set>

#include "runtime/check.h"

namespace mowe::safetensors {
namespace {

class Parser {
 public:
  Parser(std::string_view text, int max_depth) : s_(text), max_depth_(max_depth) {}

  Json document() {
    skip_space();
    Json v = value(0);
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(fmt::format("malformed JSON at byte {}: {}", pos_, what));
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_space() {
    while (!at_end() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  bool consume_word(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Json value(int depth) {
    if (depth > max_depth_) fail(fmt::format("nested deeper than {} levels", max_depth_));
    if (at_end()) fail("unexpected end of the text, a value was expected");
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Kind::Object;
      object(v, depth);
    } else if (c == '[') {
      v.kind = Json::Kind::Array;
      array(v, depth);
    } else if (c == '"') {
      v.kind = Json::Kind::String;
      v.text = string();
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 'N' || c == 'I') {
      v.kind = Json::Kind::Number;
      v.text = number();
    } else if (consume_word("true")) {
      v.kind = Json::Kind::Bool;
      v.boolean = true;
    } else if (consume_word("false")) {
      v.kind = Json::Kind::Bool;
    } else if (consume_word("null")) {
      v.kind = Json::Kind::Null;
    } else {
      fail(fmt::format("unexpected character {}", describe_char(c)));
    }
    return v;
  }

  static std::string describe_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return fmt::format("'{}'", c);
    return fmt::format("0x{:02x}", u);
  }

  void object(Json& v, int depth) {
    ++pos_;  // '{'
    skip_space();
    std::set<std::string> keys;  // a set: a header may have thousands of keys
    if (peek() == '}') {
      ++pos_;
      return;
    }
    while (true) {
      skip_space();
      if (peek() != '"') fail("an object key (a string) was expected");
      const size_t key_at = pos_;
      std::string key = string();
      skip_space();
      if (peek() != ':') fail("':' was expected after an object key");
      ++pos_;
      skip_space();
      Json member = value(depth + 1);
      if (!keys.insert(key).second) {
        pos_ = key_at;
        fail(fmt::format("key {} appears twice in one object", json_quote(key)));
      }
      v.members.push_back({std::move(key), std::move(member)});
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return;
      }
      fail(at_end() ? "unexpected end of the text inside an object" : "',' or '}' was expected");
    }
  }

  void array(Json& v, int depth) {
    ++pos_;  // '['
    skip_space();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    while (true) {
      skip_space();
      v.items.push_back(value(depth + 1));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return;
      }
      fail(at_end() ? "unexpected end of the text inside an array" : "',' or ']' was expected");
    }
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  uint32_t hex4() {
    if (s_.size() - pos_ < 4) fail("a \\u escape needs 4 hexadecimal digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        --pos_;
        fail("a \\u escape needs 4 hexadecimal digits");
      }
    }
    return v;
  }

  std::string string() {
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail(fmt::format("control character {} inside a string (it must be escaped)",
                         describe_char(c)));
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("unterminated escape in a string");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xd800 && cp <= 0xdbff) {
            // A high surrogate must be followed by a low one: together one code point.
            if (s_.substr(pos_, 2) != "\\u") fail("a UTF-16 high surrogate without its low half");
            pos_ += 2;
            const uint32_t low = hex4();
            if (low < 0xdc00 || low > 0xdfff) fail("a UTF-16 high surrogate without its low half");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            fail("a UTF-16 low surrogate without its high half");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail(fmt::format("unknown escape \\{}", describe_char(e)));
      }
    }
  }

  std::string number() {
    const size_t begin = pos_;
    if (consume_word("NaN") || consume_word("Infinity") || consume_word("-Infinity"))
      return std::string(s_.substr(begin, pos_ - begin));
    auto digits = [&] {
      const size_t from = pos_;
      while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (digits() == 0) {
      fail("a digit was expected in a number");
    }
    if (peek() == '.') {
      ++pos_;
      if (digits() == 0) fail("a digit was expected after '.' in a number");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (digits() == 0) fail("a digit was expected in a number's exponent");
    }
    return std::string(s_.substr(begin, pos_ - begin));
  }

  std::string_view s_;
  int max_depth_;
  size_t pos_ = 0;
};

}  // namespace

const Json* Json::find(std::string_view key) const {
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

Json parse_json(std::string_view text, int max_depth) {
  return Parser(text, max_depth).document();
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

bool json_to_index(const Json& v, int64_t* out) {
  if (!v.is(Json::Kind::Number) || v.text.empty() || v.text.size() > 19) return false;
  int64_t r = 0;
  for (char c : v.text) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(r, 10, &r) || __builtin_add_overflow(r, c - '0', &r)) return false;
  }
  if (v.text.size() > 1 && v.text[0] == '0') return false;  // JSON has no leading zeros
  *out = r;
  return true;
}

std::string json_describe(const Json& v) {
  switch (v.kind) {
    case Json::Kind::Number:
      return v.text;
    case Json::Kind::String:
      return json_quote(v.text.size() > 40 ? v.text.substr(0, 40) + "..." : v.text);
    case Json::Kind::Bool:
      return v.boolean ? "true" : "false";
    case Json::Kind::Null:
      return "null";
    case Json::Kind::Array:
      return "an array";
    case Json::Kind::Object:
      return "an object";
  }
  return "?";
}

}  // namespace mowe::safetensors
