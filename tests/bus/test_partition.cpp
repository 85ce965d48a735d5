#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "ecom/bus/event_bus.hpp"

using ecom::bus::partition_for;

TEST_CASE("partition_for is 32-bit FNV-1a modulo the partition count", "[bus][partition]") {
  // Reference values of FNV-1a 32: "" -> 0x811c9dc5, "a" -> 0xe40c292c, "foobar" -> 0xbf9cf968.
  CHECK(partition_for("", 1000) == static_cast<int>(0x811c9dc5u % 1000u));
  CHECK(partition_for("a", 8) == static_cast<int>(0xe40c292cu % 8u));
  CHECK(partition_for("foobar", 7) == static_cast<int>(0xbf9cf968u % 7u));
  CHECK(partition_for("foobar", 1) == 0);
  CHECK(partition_for("foobar", 0) == 0);
}

TEST_CASE("partition_for spreads keys over every partition", "[bus][partition]") {
  std::set<int> seen;
  for (int i = 0; i < 200; ++i) {
    int p = partition_for("order-" + std::to_string(i), ecom::bus::kDefaultPartitions);
    REQUIRE(p >= 0);
    REQUIRE(p < ecom::bus::kDefaultPartitions);
    seen.insert(p);
  }
  CHECK(seen.size() == static_cast<size_t>(ecom::bus::kDefaultPartitions));
}

TEST_CASE("dlq_topic appends .dlq", "[bus]") {
  CHECK(ecom::bus::dlq_topic("orders.created") == "orders.created.dlq");
}
