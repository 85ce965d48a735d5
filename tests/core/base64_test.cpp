#include "ecom/core/base64.hpp"

#include <catch2/catch.hpp>
#include <optional>
#include <string>

using ecom::base64url_decode;
using ecom::base64url_encode;

TEST_CASE("base64url encodes the RFC 4648 vectors without padding", "[base64]") {
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("foob") == "Zm9vYg");
  CHECK(base64url_encode("fooba") == "Zm9vYmE");
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
  // The URL-safe alphabet: '-' and '_' where standard base64 has '+' and '/'.
  CHECK(base64url_encode(std::string("\xfb\xff\xbf", 3)) == "-_-_");
}

TEST_CASE("base64url decodes what it encodes and refuses anything else", "[base64]") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    const std::string bytes = all.substr(0, n);
    CHECK(base64url_decode(base64url_encode(bytes)) == std::optional<std::string>(bytes));
  }
  CHECK(base64url_decode("Zm9vYg==") == std::optional<std::string>("foob"));  // padding tolerated
  CHECK_FALSE(base64url_decode("Zm9v+g").has_value());                        // standard alphabet
  CHECK_FALSE(base64url_decode("Zm9 v").has_value());
  CHECK_FALSE(base64url_decode("Z").has_value());    // 6 bits are no byte
  CHECK_FALSE(base64url_decode("Zh").has_value());   // "Zg" with stray low bits
  CHECK_FALSE(base64url_decode("Zm9").has_value());  // "Zm8" with stray low bits
}
