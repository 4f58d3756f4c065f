#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>

#include <unistd.h>

#include "core/json.h"

namespace ramp::json {
namespace {

Value parse_ok(std::string_view text) {
  Value value;
  const Status status = parse(text, &value);
  EXPECT_TRUE(status.is_ok()) << text << " -> " << status.to_string();
  return value;
}

std::string parse_error(std::string_view text) {
  Value value;
  const Status status = parse(text, &value);
  EXPECT_FALSE(status.is_ok()) << "accepted malformed input: " << text;
  return status.message();
}

TEST(Json, ParsesScalars) {
  EXPECT_TRUE(parse_ok("null").is_null());
  EXPECT_EQ(parse_ok("true"), Value(true));
  EXPECT_EQ(parse_ok(" false "), Value(false));
  EXPECT_EQ(parse_ok("0"), Value(0));
  EXPECT_EQ(parse_ok("-17"), Value(-17));
  EXPECT_EQ(parse_ok("2.5"), Value(2.5));
  EXPECT_EQ(parse_ok("-1.25e2"), Value(-125.0));
  EXPECT_EQ(parse_ok("1E-2"), Value(0.01));
  EXPECT_EQ(parse_ok("\"hi\""), Value("hi"));
}

TEST(Json, KeepsIntegersExactAndDistinctFromDoubles) {
  EXPECT_TRUE(parse_ok("3").is_integer());
  EXPECT_FALSE(parse_ok("3.0").is_integer());
  EXPECT_EQ(parse_ok("9223372036854775807").as_int64(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(parse_ok("-9223372036854775808").as_int64(), std::numeric_limits<int64_t>::min());
  // Beyond int64 an integer literal is still a valid number, kept as a double.
  const Value huge = parse_ok("18446744073709551616");
  EXPECT_FALSE(huge.is_integer());
  EXPECT_DOUBLE_EQ(huge.as_double(), 18446744073709551616.0);

  int64_t integer = 0;
  EXPECT_TRUE(parse_ok("3.0").get_int64(&integer));
  EXPECT_EQ(integer, 3);
  EXPECT_FALSE(parse_ok("3.5").get_int64(&integer));
  EXPECT_FALSE(parse_ok("\"3\"").get_int64(&integer));
}

TEST(Json, ObjectsKeepInsertionOrder) {
  const Value value = parse_ok(R"({"zeta": 1, "alpha": [true, null], "mid": {"x": "y"}})");
  ASSERT_TRUE(value.is_object());
  const Object& members = value.as_object();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].first, "zeta");
  EXPECT_EQ(members[1].first, "alpha");
  EXPECT_EQ(members[2].first, "mid");
  EXPECT_EQ(value.dump(), R"({"zeta":1,"alpha":[true,null],"mid":{"x":"y"}})");
  ASSERT_NE(value.find("mid"), nullptr);
  EXPECT_EQ(value.find("mid")->find("x")->as_string(), "y");
  EXPECT_EQ(value.find("absent"), nullptr);
}

TEST(Json, BuildsDocumentsWithSetAndPushBack) {
  Value document;
  document.set("name", "plan").set("tiles", Value::array());
  document.find("tiles")->push_back(1).push_back(2);
  document.set("name", "renamed");  // replaces in place, keeps position
  Value nested;
  nested.set("depth", 2.0);
  document.set("nested", nested);
  EXPECT_EQ(document.dump(), R"({"name":"renamed","tiles":[1,2],"nested":{"depth":2.0}})");
  EXPECT_EQ(document.size(), 3u);
}

TEST(Json, PrettyFormatIsStable) {
  const Value value = parse_ok(R"({"a":[1,2,3],"b":{"c":[],"d":{}},"e":[{"f":1},2]})");
  const char* expected =
      "{\n"
      "  \"a\": [1, 2, 3],\n"
      "  \"b\": {\n"
      "    \"c\": [],\n"
      "    \"d\": {}\n"
      "  },\n"
      "  \"e\": [\n"
      "    {\n"
      "      \"f\": 1\n"
      "    },\n"
      "    2\n"
      "  ]\n"
      "}";
  EXPECT_EQ(value.dump_pretty(), expected);
}

TEST(Json, RoundTripsCompactAndPretty) {
  const char* text = R"({"ints":[0,-1,9007199254740993],"doubles":[0.1,-2.5e-300,1e+300,3.0],)"
                     R"("strings":["","tab\there","quote\"","\u0001"],"nested":[[[]],{"k":{}}],)"
                     R"("flags":[true,false,null]})";
  const Value original = parse_ok(text);
  EXPECT_EQ(parse_ok(original.dump()), original);
  EXPECT_EQ(parse_ok(original.dump_pretty()), original);
  EXPECT_EQ(original.dump(), parse_ok(original.dump()).dump());
  // Shortest round-trip doubles, and 3.0 stays a double.
  EXPECT_NE(original.dump().find("0.1,"), std::string::npos);
  EXPECT_NE(original.dump().find("3.0]"), std::string::npos);
}

TEST(Json, DecodesEscapes) {
  const Value value = parse_ok(R"("\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00")");
  EXPECT_EQ(value.as_string(), "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}

TEST(Json, EscapesOnWrite) {
  const Value value(std::string("a\"b\\c\nd\x01\x1f\xc3\xa9", 11));
  EXPECT_EQ(value.dump(), "\"a\\\"b\\\\c\\nd\\u0001\\u001f\xc3\xa9\"");
  EXPECT_EQ(parse_ok(value.dump()), value);
}

TEST(Json, NonFiniteDoublesAreWrittenAsNull) {
  EXPECT_EQ(Value(std::numeric_limits<double>::infinity()).dump(), "null");
  EXPECT_EQ(Value(std::numeric_limits<double>::quiet_NaN()).dump(), "null");
}

TEST(Json, ErrorsNameLineAndColumn) {
  EXPECT_EQ(parse_error("{\n  \"a\": 1,\n  \"b\" 2\n}"),
            "line 3, column 7: expected ':' after the key \"b\"");
  EXPECT_EQ(parse_error("[1, 2,]"), "line 1, column 7: trailing comma before ']'");
  EXPECT_EQ(parse_error("{\"a\": 1,\n}"), "line 2, column 1: trailing comma before '}'");
  EXPECT_EQ(parse_error("[\"abc"), "line 1, column 2: unterminated string");
  EXPECT_EQ(parse_error("[1 2]"), "line 1, column 4: expected ',' or ']' after an array element");
  EXPECT_EQ(parse_error("{\"E\": 1, \"E\": 2}"), "line 1, column 10: duplicate key \"E\"");
  EXPECT_EQ(parse_error("\n\n   01"), "line 3, column 4: number with a leading zero");
  EXPECT_EQ(parse_error("[1.]"), "line 1, column 4: expected a digit after the decimal point");
  EXPECT_EQ(parse_error("[1e999]"), "line 1, column 2: number 1e999 is out of range");
  EXPECT_EQ(parse_error("\"ab\\ud800x\""),
            "line 1, column 4: high surrogate in \\u escape is not followed by a low surrogate");
  EXPECT_EQ(parse_error("\"\\ud800\\u12z4\""),
            "line 1, column 12: invalid hex digit in \\u escape");
  EXPECT_EQ(parse_error("[\"a\tb\"]"),
            "line 1, column 4: control character in string (escape it, e.g. \\n)");
}

TEST(Json, RejectsMalformedInput) {
  const char* malformed[] = {
      "",          "   ",        "[",          "]",          "{",           "{\"a\"}",
      "{\"a\":}",  "{a: 1}",     "{'a': 1}",   "[1,,2]",     "[,1]",        "[1,]",
      "{\"a\":1,}", "\"abc",      "\"a\\\"",    "\"a\nb\"",   "\"\\x\"",     "\"\\u12\"",
      "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",          "01",
      "1.",        ".5",         "+1",         "1e",         "1e+",         "-",
      "--1",       "0x10",       "1e999",      "-1e999",     "NaN",         "Infinity",
      "tru",       "nul",        "True",       "1 2",        "{} x",        "// c\n1",
      "[1] /* */",
  };
  for (const char* text : malformed) {
    Value value = Value("untouched");
    const Status status = parse(text, &value);
    EXPECT_FALSE(status.is_ok()) << "accepted: " << text;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(status.message().rfind("line ", 0), 0u) << status.message();
    EXPECT_EQ(value, Value("untouched")) << "output written on failure for: " << text;
  }
}

TEST(Json, RejectsExcessiveNestingWithoutCrashing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_NE(parse_error(deep).find("nesting"), std::string::npos);
  const std::string fine = std::string(500, '[') + std::string(500, ']');
  parse_ok(fine);
}

TEST(Json, FilesRoundTripAndErrorsNameThePath) {
  const std::filesystem::path directory = std::filesystem::temp_directory_path();
  const std::string path =
      (directory / ("ramp_json_test_" + std::to_string(::getpid()) + ".json")).string();
  Value document;
  document.set("histogram", Value(Array{Value(3), Value(0), Value(5)})).set("seed", int64_t{42});
  ASSERT_TRUE(write_file(path, document).is_ok());
  Value read_back;
  ASSERT_TRUE(read_file(path, &read_back).is_ok());
  EXPECT_EQ(read_back, document);

  std::FILE* file = std::fopen(path.c_str(), "w");
  ASSERT_NE(file, nullptr);
  std::fputs("{\"a\": [1,\n 2,]}", file);
  std::fclose(file);
  const Status status = read_file(path, &read_back);
  EXPECT_EQ(status.message(), path + ": line 2, column 4: trailing comma before ']'");
  std::filesystem::remove(path);

  const Status missing = read_file(path, &read_back);
  EXPECT_FALSE(missing.is_ok());
  EXPECT_NE(missing.message().find(path), std::string::npos);
}

}  // namespace
}  // namespace ramp::json
