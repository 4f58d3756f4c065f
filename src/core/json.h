// A small JSON value: enough for models.json, dispatch profiles and plan dumps, with no
// third-party dependency. Objects keep their keys in insertion order so dumps are stable and
// diff well. Integers that fit int64 are kept exactly (seeds, byte counts); other numbers are
// doubles.
//
// Parsing is strict RFC 8259: no comments, no trailing commas, no NaN/Infinity, no duplicate
// keys (a config file with two "E" fields is a mistake, not a choice). Errors name the line and
// column, e.g. "line 3, column 14: expected ',' or '}' after an object member".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ramp/status.h"

namespace ramp::json {

class Value;
using Array = std::vector<Value>;
using Member = std::pair<std::string, Value>;
using Object = std::vector<Member>;

enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
const char* type_name(Type type);

class Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : storage_(b) {}
  Value(int i) : storage_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : storage_(i) {}
  Value(double d) : storage_(d) {}
  Value(const char* s) : storage_(std::string(s)) {}
  Value(std::string s) : storage_(std::move(s)) {}
  Value(std::string_view s) : storage_(std::string(s)) {}
  Value(Array a) : storage_(std::move(a)) {}
  Value(Object o) : storage_(std::move(o)) {}
  // Any other integer type converts through int64 (unsigned values above INT64_MAX do not fit).
  template <typename Integer>
    requires(std::is_integral_v<Integer> && !std::is_same_v<Integer, bool> &&
             !std::is_same_v<Integer, int> && !std::is_same_v<Integer, int64_t>)
  Value(Integer i) : storage_(static_cast<int64_t>(i)) {}

  static Value array() { return Value(Array{}); }
  static Value object() { return Value(Object{}); }

  Type type() const;
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_number() const { return type() == Type::kNumber; }
  bool is_integer() const { return std::holds_alternative<int64_t>(storage_); }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors of the wrong type are a programming error (std::bad_variant_access, or an assert
  // for the numeric ones). Check the type first when reading untrusted input.
  bool as_bool() const;
  double as_double() const;  // any number
  int64_t as_int64() const;  // an integer
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  // True and *out set when this is a number with an exact int64 value (3 or 3.0, not 3.5).
  bool get_int64(int64_t* out) const;

  // Object helpers. find returns null when this is not an object or the key is absent.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Replaces the value of an existing key in place (keeping its position) or appends. A null
  // value becomes an empty object first, so nested dumps can be built with set(...).set(...).
  Value& set(std::string_view key, Value value);
  // Arrays: appends (a null value becomes an empty array first).
  Value& push_back(Value value);
  // Elements of an array or members of an object; 0 otherwise.
  size_t size() const;

  // Compact: {"a":1,"b":[1,2]}. Non-finite doubles, which JSON cannot express, are written as
  // null. Doubles that happen to be integral keep a ".0" so they parse back as doubles.
  std::string dump() const;
  // Two-space indentation, one member per line; arrays of scalars stay on one line so
  // histograms and id lists remain readable.
  std::string dump_pretty() const;

  friend bool operator==(const Value& a, const Value& b) { return a.storage_ == b.storage_; }

 private:
  std::variant<std::nullptr_t, bool, int64_t, double, std::string, Array, Object> storage_;
};

// Parses one JSON document (surrounding whitespace allowed, nothing else after it).
Status parse(std::string_view text, Value* out);
// Reads and parses a file; errors start with the path: "models.json: line 3, column 14: ...".
Status read_file(const std::string& path, Value* out);
// Writes dump_pretty() plus a trailing newline.
Status write_file(const std::string& path, const Value& value);

}  // namespace ramp::json
