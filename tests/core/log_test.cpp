#include "ecom/core/log.hpp"

#include <fcntl.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace {

// Runs `body` with stderr going to a file; returns the lines written.
template <typename F>
std::vector<std::string> captured(F body) {
  ecom::test::TempDir dir;
  const std::string path = dir.file("stderr");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(fd, STDERR_FILENO);
  body();
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("log: JSON lines carry the role, the tag and the record's context", "[core][log]") {
  ecom::log::set_role("order,saga");
  auto lines = captured([] {
    ecom::log::set_format(ecom::log::Format::kJson);
    ecom::log::info("bus", "plain {}", 1);
    {
      const ecom::log::Context c{"o-1",
                                 "corr-1",
                                 "4bf92f3577b34da6a3ce929d0e0e4736",
                                 "00f067aa0ba902b7",
                                 "ecom.order.created.v1",
                                 "orders.created",
                                 2,
                                 41};
      const ecom::log::Scope scope(c);
      ecom::log::warn("saga", "a \"quoted\"\ttext\nwith \xFF bytes");
    }
    ecom::log::info("bus", "after the scope");
    ecom::log::set_format(ecom::log::Format::kText);
  });
  ecom::log::set_role("");
  REQUIRE(lines.size() == 3);
  rapidjson::Document d;
  for (const auto& line : lines) {
    d.Parse<rapidjson::kParseValidateEncodingFlag>(line.c_str());
    INFO(line);
    REQUIRE_FALSE(d.HasParseError());
  }
  d.Parse(lines[1].c_str());
  CHECK(std::string(d["level"].GetString()) == "warn");
  CHECK(std::string(d["role"].GetString()) == "order,saga");
  CHECK(std::string(d["tag"].GetString()) == "saga");
  CHECK(std::string(d["msg"].GetString()) == "a \"quoted\"\ttext\nwith \xEF\xBF\xBD bytes");
  CHECK(std::string(d["orderId"].GetString()) == "o-1");
  CHECK(std::string(d["correlationId"].GetString()) == "corr-1");
  CHECK(std::string(d["traceId"].GetString()) == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(std::string(d["spanId"].GetString()) == "00f067aa0ba902b7");
  CHECK(std::string(d["eventType"].GetString()) == "ecom.order.created.v1");
  CHECK(std::string(d["topic"].GetString()) == "orders.created");
  CHECK(d["partition"].GetInt() == 2);
  CHECK(d["offset"].GetInt64() == 41);
  CHECK(d.HasMember("ts"));
  d.Parse(lines[2].c_str());
  CHECK_FALSE(d.HasMember("orderId"));  // the scope ended
  ecom::log::Format f;
  CHECK(ecom::log::parse_format("json", f));
  CHECK_FALSE(ecom::log::parse_format("xml", f));
}
