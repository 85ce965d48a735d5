#include "ecom/core/utf8.hpp"

#include <catch2/catch.hpp>
#include <string>

using ecom::invalid_utf8_at;
using ecom::valid_utf8;

TEST_CASE("utf8: well-formed text of every length passes", "[core][utf8]") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain ASCII"));
  CHECK(
      valid_utf8("Gr\xC3\xBC\xC3\x9F"
                 "e"));                       // 2 bytes: Grüße
  CHECK(valid_utf8("\xE2\x82\xAC 12"));       // 3 bytes: €
  CHECK(valid_utf8("\xF0\x9F\x9B\x92"));      // 4 bytes: 🛒
  CHECK(valid_utf8("\xED\x9F\xBF"));          // U+D7FF, below the surrogates
  CHECK(valid_utf8("\xF4\x8F\xBF\xBF"));      // U+10FFFF, the last
  CHECK(valid_utf8(std::string("a\0b", 3)));  // NUL is a valid code point
}

TEST_CASE("utf8: malformed sequences are found at their first byte", "[core][utf8]") {
  CHECK(invalid_utf8_at("\xFF\xFE") == 0u);          // the bytes of the report
  CHECK(invalid_utf8_at("ok\x80") == 2u);            // a stray continuation byte
  CHECK(invalid_utf8_at("ab\xC3") == 2u);            // truncated
  CHECK(invalid_utf8_at("\xE2\x82") == 0u);          // truncated 3-byte
  CHECK(invalid_utf8_at("\xC0\xAF") == 0u);          // overlong '/'
  CHECK(invalid_utf8_at("\xE0\x80\xAF") == 0u);      // overlong 3-byte
  CHECK(invalid_utf8_at("\xF0\x80\x80\xAF") == 0u);  // overlong 4-byte
  CHECK(invalid_utf8_at("x\xED\xA0\x80") == 1u);     // a surrogate (U+D800)
  CHECK(invalid_utf8_at("\xF4\x90\x80\x80") == 0u);  // above U+10FFFF
  CHECK(invalid_utf8_at("\xF5\x80\x80\x80") == 0u);
  CHECK(invalid_utf8_at("\xC3\x28") == 0u);  // a bad continuation
  CHECK(invalid_utf8_at("\xE2\x82\x28") == 0u);
}
