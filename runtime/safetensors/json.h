// A small strict JSON parser and string quoting, enough for safetensors headers and
// model.safetensors.index.json: the inputs are untrusted (a damaged or crafted file), so every
// error is a mowe::Error naming the byte offset, nesting depth is bounded, and nothing is read
// beyond the given text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mowe::safetensors {

struct JsonMember;

struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  // String: the decoded text (UTF-8). Number: the literal as written ("12", "-1.5e3"), and the
  // non-standard NaN, Infinity and -Infinity that Python's json module writes, so that a caller
  // can say "shape[0] is NaN" instead of "malformed JSON".
  std::string text;
  std::vector<Json> items;          // Array
  std::vector<JsonMember> members;  // Object, in document order

  bool is(Kind k) const { return kind == k; }
  // The member named `key`, or nullptr.
  const Json* find(std::string_view key) const;
};

// Defined after Json: a pair<string, Json> inside Json would need Json complete.
struct JsonMember {
  std::string key;
  Json value;
};

// Parses one JSON value filling `text`, optionally followed by whitespace. Throws mowe::Error
// "malformed JSON at byte N: <what>" (the caller adds the file). Duplicate object keys are an
// error: which of two values a reader takes differs between JSON libraries.
Json parse_json(std::string_view text, int max_depth = 64);

// `s` as a JSON string literal, quotes included (control characters escaped, UTF-8 kept).
std::string json_quote(std::string_view s);

// A Json number that is a non-negative integer of at most 2^63 - 1, or false (fractions,
// exponents, signs, NaN and overflow included).
bool json_to_index(const Json& v, int64_t* out);

// Short description of a value for messages: a number's literal, a string quoted, else its kind.
std::string json_describe(const Json& v);

}  // namespace mowe::safetensors
