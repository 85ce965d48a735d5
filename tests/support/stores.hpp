#pragma once
/// The two store engines for tests that must hold on both: `open_store(EACH_STORE)` runs the
/// test case once on SQLite (in memory) and once on PostgreSQL (a schema of its own on the
/// suite's server, see postgres_url()).

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "ecom/db/database.hpp"
#include "support/test_support.hpp"

/// Runs the enclosing test case once per engine; the value names it ("sqlite" or "postgres").
#define EACH_STORE GENERATE(as<std::string>{}, "sqlite", "postgres")

namespace ecom::test {

/// What to open for `engine`: ":memory:" or `path` for SQLite, the suite's server for PostgreSQL
/// (the schema goes in `options`).
inline std::string store_target(const std::string& engine, const std::string& path = ":memory:") {
  return engine == "postgres" ? postgres_url() : path;
}

/// A new, empty store of `engine`. A second store on the same data: open_store_again.
inline std::unique_ptr<db::Database> open_store(const std::string& engine, db::Options options = {},
                                                const std::string& path = ":memory:") {
  UNSCOPED_INFO("store engine: " << engine);
  if (engine == "postgres" && options.schema == "public") options.schema = unique_schema("db");
  auto db = db::Database::open(store_target(engine, path), options);
  REQUIRE(db.ok());
  return std::move(db).value();
}

/// Another connection to the store `first` is on.
inline std::unique_ptr<db::Database> open_store_again(const std::string& engine,
                                                      const db::Database& first,
                                                      const std::string& path = ":memory:",
                                                      db::Options options = {}) {
  if (engine == "postgres") {
    const std::string& p = first.path();
    options.schema = p.substr(p.rfind(' ') + 1);
  }
  auto db = db::Database::open(store_target(engine, path), options);
  REQUIRE(db.ok());
  return std::move(db).value();
}

}  // namespace ecom::test
