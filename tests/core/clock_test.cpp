#include "ecom/core/clock.hpp"

#include <catch2/catch.hpp>
#include <set>

TEST_CASE("rfc3339 formatting and validation", "[clock]") {
  CHECK(ecom::format_rfc3339(0) == "1970-01-01T00:00:00.000Z");
  CHECK(ecom::format_rfc3339(1'795'316'798'123) == "2026-11-22T03:06:38.123Z");
  CHECK(ecom::is_rfc3339(ecom::now_rfc3339()));
  CHECK(ecom::is_rfc3339("2026-11-22T02:06:38Z"));
  CHECK(ecom::is_rfc3339("2026-11-22T02:06:38-05:30"));
  CHECK_FALSE(ecom::is_rfc3339("2026-11-22 02:06:38Z"));
  CHECK_FALSE(ecom::is_rfc3339("2026-11-22T02:06:38"));
  CHECK_FALSE(ecom::is_rfc3339("2026-11-22T24:06:38Z"));
  CHECK_FALSE(ecom::is_rfc3339("2026-11-22T02:06:38.Z"));
}

TEST_CASE("uuids are v7, unique and increasing", "[clock]") {
  std::set<std::string> seen;
  const int64_t before = ecom::now_ms();
  std::string previous;
  for (int i = 0; i < 10000; ++i) {
    auto id = ecom::new_uuid();
    REQUIRE(id.size() == 36);
    REQUIRE(id[8] == '-');
    REQUIRE(id[14] == '7');
    REQUIRE(std::string("89ab").find(id[19]) != std::string::npos);
    // The first 12 hex digits are the creation time in epoch milliseconds (running ahead only
    // when more than 4,096 ids are made in one millisecond).
    const int64_t ms = std::stoll(id.substr(0, 8) + id.substr(9, 4), nullptr, 16);
    REQUIRE(ms >= before);
    REQUIRE(ms <= ecom::now_ms() + 100);
    REQUIRE(id > previous);  // ids made by one process only grow
    previous = id;
    seen.insert(id);
  }
  CHECK(seen.size() == 10000);
}
