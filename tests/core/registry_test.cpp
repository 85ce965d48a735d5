#include "ecom/core/registry.hpp"

#include <catch2/catch.hpp>

namespace {

class FakeModule final : public ecom::Module {
 public:
  explicit FakeModule(std::string name) : name_(std::move(name)) {}
  std::string_view name() const noexcept override { return name_; }
  ecom::Status configure(const ecom::ConfigSection&) override { return {}; }
  ecom::Status start(ecom::ModuleContext&) override { return {}; }
  void stop() noexcept override {}

 private:
  std::string name_;
};

ecom::ModuleRegistry make_registry() {
  ecom::ModuleRegistry r;
  r.add("order", [] { return std::make_unique<FakeModule>("order"); });
  r.add("inventory", [] { return std::make_unique<FakeModule>("inventory"); });
  r.add("notification", nullptr);
  return r;
}

}  // namespace

TEST_CASE("roles resolve in registration order without duplicates", "[registry]") {
  auto r = make_registry();
  CHECK(r.resolve("all").value() == std::vector<std::string>{"order", "inventory", "notification"});
  CHECK(r.resolve("inventory,order, order").value() ==
        std::vector<std::string>{"order", "inventory"});
  CHECK(r.resolve("order").value() == std::vector<std::string>{"order"});
}

TEST_CASE("an unknown role fails and lists the valid names", "[registry]") {
  auto r = make_registry();
  auto bad = r.resolve("order,nope");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ecom::ErrorCode::kUnknownRole);
  CHECK_THAT(bad.error().message,
             Catch::Contains("\"nope\"") && Catch::Contains("order, inventory, notification, all"));
  CHECK_FALSE(r.resolve("").ok());
  CHECK_FALSE(r.resolve("order,").ok());
}

TEST_CASE("a registered but unimplemented module refuses to be created", "[registry]") {
  auto r = make_registry();
  CHECK_FALSE(r.implemented("notification"));
  auto m = r.create("notification");
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == ecom::ErrorCode::kNotImplemented);
  auto ok = r.create("order");
  REQUIRE(ok.ok());
  CHECK(ok.value()->name() == "order");
}
