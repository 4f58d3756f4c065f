#include "core/json.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

namespace ramp::json {

const char* type_name(Type type) {
  switch (type) {
    case Type::kNull: return "null";
    case Type::kBool: return "bool";
    case Type::kNumber: return "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Value

Type Value::type() const {
  switch (storage_.index()) {
    case 0: return Type::kNull;
    case 1: return Type::kBool;
    case 2:
    case 3: return Type::kNumber;
    case 4: return Type::kString;
    case 5: return Type::kArray;
    default: return Type::kObject;
  }
}

bool Value::as_bool() const { return std::get<bool>(storage_); }

double Value::as_double() const {
  assert(is_number());
  if (const auto* i = std::get_if<int64_t>(&storage_)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&storage_)) return *d;
  return 0.0;
}

int64_t Value::as_int64() const {
  int64_t result = 0;
  [[maybe_unused]] const bool exact = get_int64(&result);
  assert(exact);
  return result;
}

bool Value::get_int64(int64_t* out) const {
  if (const auto* i = std::get_if<int64_t>(&storage_)) {
    *out = *i;
    return true;
  }
  if (const auto* d = std::get_if<double>(&storage_)) {
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    if (std::trunc(*d) == *d && *d >= -0x1.0p63 && *d < 0x1.0p63) {
      *out = static_cast<int64_t>(*d);
      return true;
    }
  }
  return false;
}

// Wrong-type access is a programming error; std::get reports it (throws, or aborts under
// -fno-exceptions) instead of handing back a plausible default.
const std::string& Value::as_string() const { return std::get<std::string>(storage_); }
const Array& Value::as_array() const { return std::get<Array>(storage_); }
Array& Value::as_array() { return std::get<Array>(storage_); }
const Object& Value::as_object() const { return std::get<Object>(storage_); }
Object& Value::as_object() { return std::get<Object>(storage_); }

const Value* Value::find(std::string_view key) const {
  const auto* members = std::get_if<Object>(&storage_);
  if (members == nullptr) return nullptr;
  for (const Member& member : *members) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

Value* Value::find(std::string_view key) {
  return const_cast<Value*>(static_cast<const Value*>(this)->find(key));
}

Value& Value::set(std::string_view key, Value value) {
  if (is_null()) storage_ = Object{};
  assert(is_object());
  if (Value* existing = find(key)) {
    *existing = std::move(value);
  } else {
    as_object().emplace_back(std::string(key), std::move(value));
  }
  return *this;
}

Value& Value::push_back(Value value) {
  if (is_null()) storage_ = Array{};
  assert(is_array());
  as_array().push_back(std::move(value));
  return *this;
}

size_t Value::size() const {
  if (const auto* elements = std::get_if<Array>(&storage_)) return elements->size();
  if (const auto* members = std::get_if<Object>(&storage_)) return members->size();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

void write_string(std::string_view text, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out += kHex[byte >> 4];
          out += kHex[byte & 0xf];
        } else {
          out += c;  // UTF-8 passes through unchanged
        }
    }
  }
  out += '"';
}

void write_double(double number, std::string& out) {
  if (!std::isfinite(number)) {
    out += "null";
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), number);
  const std::string_view text(buffer, static_cast<size_t>(result.ptr - buffer));
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

bool is_scalar(const Value& value) { return !value.is_array() && !value.is_object(); }

// indent < 0: compact.
void write_value(const Value& value, int indent, int depth, std::string& out) {
  const bool pretty = indent >= 0;
  auto newline = [&](int level) {
    out += '\n';
    out.append(static_cast<size_t>(level) * static_cast<size_t>(indent), ' ');
  };
  switch (value.type()) {
    case Type::kNull: out += "null"; return;
    case Type::kBool: out += value.as_bool() ? "true" : "false"; return;
    case Type::kNumber:
      if (value.is_integer()) {
        out += std::to_string(value.as_int64());
      } else {
        write_double(value.as_double(), out);
      }
      return;
    case Type::kString: write_string(value.as_string(), out); return;
    case Type::kArray: {
      const Array& elements = value.as_array();
      const bool one_line = !pretty || elements.empty() ||
                            std::all_of(elements.begin(), elements.end(), is_scalar);
      out += '[';
      for (size_t i = 0; i < elements.size(); ++i) {
        if (i > 0) out += pretty && one_line ? ", " : ",";
        if (!one_line) newline(depth + 1);
        write_value(elements[i], indent, depth + 1, out);
      }
      if (!one_line) newline(depth);
      out += ']';
      return;
    }
    case Type::kObject: {
      const Object& members = value.as_object();
      out += '{';
      for (size_t i = 0; i < members.size(); ++i) {
        if (i > 0) out += ',';
        if (pretty) newline(depth + 1);
        write_string(members[i].first, out);
        out += pretty ? ": " : ":";
        write_value(members[i].second, indent, depth + 1, out);
      }
      if (pretty && !members.empty()) newline(depth);
      out += '}';
      return;
    }
  }
}

}  // namespace

std::string Value::dump() const {
  std::string out;
  write_value(*this, -1, 0, out);
  return out;
}

std::string Value::dump_pretty() const {
  std::string out;
  write_value(*this, 2, 0, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parser: recursive descent over the text; the first error stops it and records its offset.

namespace {

// Deep enough for any real document; stops a hostile one from overflowing the stack.
constexpr int kMaxNestingDepth = 512;

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Status parse_document(Value* out) {
    skip_whitespace();
    Value value;
    if (parse_value(&value, 0)) {
      skip_whitespace();
      if (position_ < text_.size()) fail("unexpected text after the JSON value");
    }
    if (!error_.empty()) return Status(ErrorCode::kInvalidArgument, location() + ": " + error_);
    *out = std::move(value);
    return Status::ok();
  }

 private:
  bool fail(std::string message) {
    if (error_.empty()) {
      error_ = std::move(message);
      error_position_ = position_;
    }
    return false;
  }

  std::string location() const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < error_position_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
  }

  bool at_end() const { return position_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[position_]; }

  void skip_whitespace() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) {
      ++position_;
    }
  }

  bool consume_literal(std::string_view literal) {
    if (text_.substr(position_, literal.size()) != literal) return false;
    position_ += literal.size();
    return true;
  }

  bool parse_value(Value* out, int depth) {
    if (depth > kMaxNestingDepth) return fail("nesting deeper than 512 levels");
    if (at_end()) return fail("unexpected end of input, expected a value");
    const char c = peek();
    if (c == '{') return parse_object(out, depth);
    if (c == '[') return parse_array(out, depth);
    if (c == '"') {
      std::string text;
      if (!parse_string(&text)) return false;
      *out = Value(std::move(text));
      return true;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(out);
    if (consume_literal("true")) return (*out = Value(true), true);
    if (consume_literal("false")) return (*out = Value(false), true);
    if (consume_literal("null")) return (*out = Value(), true);
    return fail(std::string("unexpected character '") + c + "', expected a value");
  }

  bool parse_object(Value* out, int depth) {
    ++position_;  // '{'
    Value object = Value::object();
    skip_whitespace();
    if (peek() == '}') {
      ++position_;
      *out = std::move(object);
      return true;
    }
    for (;;) {
      skip_whitespace();
      if (peek() != '"') return fail("expected a string key in the object");
      const size_t key_position = position_;
      std::string key;
      if (!parse_string(&key)) return false;
      if (object.find(key) != nullptr) {
        position_ = key_position;
        return fail("duplicate key \"" + key + "\"");
      }
      skip_whitespace();
      if (peek() != ':') return fail("expected ':' after the key \"" + key + "\"");
      ++position_;
      skip_whitespace();
      Value member;
      if (!parse_value(&member, depth + 1)) return false;
      object.as_object().emplace_back(std::move(key), std::move(member));
      skip_whitespace();
      if (peek() == ',') {
        ++position_;
        skip_whitespace();
        if (peek() == '}') return fail("trailing comma before '}'");
        continue;
      }
      if (peek() == '}') {
        ++position_;
        *out = std::move(object);
        return true;
      }
      return fail("expected ',' or '}' after an object member");
    }
  }

  bool parse_array(Value* out, int depth) {
    ++position_;  // '['
    Value array = Value::array();
    skip_whitespace();
    if (peek() == ']') {
      ++position_;
      *out = std::move(array);
      return true;
    }
    for (;;) {
      skip_whitespace();
      Value element;
      if (!parse_value(&element, depth + 1)) return false;
      array.as_array().push_back(std::move(element));
      skip_whitespace();
      if (peek() == ',') {
        ++position_;
        skip_whitespace();
        if (peek() == ']') return fail("trailing comma before ']'");
        continue;
      }
      if (peek() == ']') {
        ++position_;
        *out = std::move(array);
        return true;
      }
      return fail("expected ',' or ']' after an array element");
    }
  }

  bool parse_hex4(uint32_t* code_unit) {
    if (position_ + 4 > text_.size()) return fail("incomplete \\u escape");
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[position_];
      uint32_t digit;
      if (c >= '0' && c <= '9') digit = static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') digit = static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') digit = static_cast<uint32_t>(c - 'A' + 10);
      else return fail("invalid hex digit in \\u escape");
      value = value * 16 + digit;
      ++position_;
    }
    *code_unit = value;
    return true;
  }

  static void append_utf8(uint32_t code_point, std::string& out) {
    if (code_point < 0x80) {
      out += static_cast<char>(code_point);
    } else if (code_point < 0x800) {
      out += static_cast<char>(0xc0 | (code_point >> 6));
      out += static_cast<char>(0x80 | (code_point & 0x3f));
    } else if (code_point < 0x10000) {
      out += static_cast<char>(0xe0 | (code_point >> 12));
      out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code_point & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code_point >> 18));
      out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code_point & 0x3f));
    }
  }

  // \uXXXX, with UTF-16 surrogate pairs joined into one code point.
  bool parse_unicode_escape(std::string& out) {
    const size_t escape_position = position_ - 2;  // at the backslash
    uint32_t code_point;
    if (!parse_hex4(&code_point)) return false;
    if (code_point >= 0xdc00 && code_point <= 0xdfff) {
      position_ = escape_position;
      return fail("unpaired low surrogate in \\u escape");
    }
    if (code_point >= 0xd800 && code_point <= 0xdbff) {
      const auto unpaired = [&] {
        position_ = escape_position;
        return fail("high surrogate in \\u escape is not followed by a low surrogate");
      };
      if (!consume_literal("\\u")) return unpaired();
      uint32_t low;
      if (!parse_hex4(&low)) return false;
      if (low < 0xdc00 || low > 0xdfff) return unpaired();
      code_point = 0x10000 + ((code_point - 0xd800) << 10) + (low - 0xdc00);
    }
    append_utf8(code_point, out);
    return true;
  }

  bool parse_string(std::string* out) {
    const size_t opening_quote = position_;
    ++position_;
    std::string text;
    for (;;) {
      if (at_end()) {
        position_ = opening_quote;
        return fail("unterminated string");
      }
      const char c = text_[position_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) {
        --position_;
        return fail("control character in string (escape it, e.g. \\n)");
      }
      if (c != '\\') {
        text += c;
        continue;
      }
      if (at_end()) {
        position_ = opening_quote;
        return fail("unterminated string");
      }
      const char escape = text_[position_++];
      switch (escape) {
        case '"': text += '"'; break;
        case '\\': text += '\\'; break;
        case '/': text += '/'; break;
        case 'b': text += '\b'; break;
        case 'f': text += '\f'; break;
        case 'n': text += '\n'; break;
        case 'r': text += '\r'; break;
        case 't': text += '\t'; break;
        case 'u':
          if (!parse_unicode_escape(text)) return false;
          break;
        default:
          position_ -= 2;
          return fail(std::string("invalid escape '\\") + escape + "' in string");
      }
    }
    *out = std::move(text);
    return true;
  }

  bool consume_digits() {
    const size_t start = position_;
    while (!at_end() && peek() >= '0' && peek() <= '9') ++position_;
    return position_ > start;
  }

  // RFC 8259 grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool parse_number(Value* out) {
    const size_t start = position_;
    if (peek() == '-') ++position_;
    if (peek() == '0') {
      ++position_;
      if (peek() >= '0' && peek() <= '9') {
        position_ = start;
        return fail("number with a leading zero");
      }
    } else if (!consume_digits()) {
      return fail("expected a digit in the number");
    }
    bool is_integer = true;
    if (peek() == '.') {
      ++position_;
      is_integer = false;
      if (!consume_digits()) return fail("expected a digit after the decimal point");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++position_;
      is_integer = false;
      if (peek() == '+' || peek() == '-') ++position_;
      if (!consume_digits()) return fail("expected a digit in the exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + position_;
    if (is_integer) {
      int64_t integer = 0;
      const auto result = std::from_chars(first, last, integer);
      if (result.ec == std::errc() && result.ptr == last) {
        *out = Value(integer);
        return true;
      }
      // Too large for int64: fall through and keep it as a double.
    }
    double number = 0.0;
    const auto result = std::from_chars(first, last, number);
    if (result.ec != std::errc() || result.ptr != last || !std::isfinite(number)) {
      position_ = start;
      return fail("number " + std::string(first, last) + " is out of range");
    }
    *out = Value(number);
    return true;
  }

  std::string_view text_;
  size_t position_ = 0;
  std::string error_;
  size_t error_position_ = 0;
};

}  // namespace

Status parse(std::string_view text, Value* out) { return Parser(text).parse_document(out); }

Status read_file(const std::string& path, Value* out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status(ErrorCode::kInvalidArgument, path + ": cannot open the file");
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return Status(ErrorCode::kInvalidArgument, path + ": read error");
  Status status = parse(contents.str(), out);
  if (!status) return Status(status.code(), path + ": " + status.message());
  return Status::ok();
}

Status write_file(const std::string& path, const Value& value) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) {
    return Status(ErrorCode::kInvalidArgument, path + ": cannot open the file for writing");
  }
  file << value.dump_pretty() << '\n';
  file.close();
  if (!file) return Status(ErrorCode::kInvalidArgument, path + ": write error");
  return Status::ok();
}

}  // namespace ramp::json
