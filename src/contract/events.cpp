#include "ecom/contract/events.hpp"

#include <rapidjson/document.h>

#include "ecom/core/clock.hpp"
#include "ecom/core/json.hpp"

namespace ecom::contract {
namespace {

using json::Writer;

Error invalid(std::string field, std::string message) {
  return Error{ErrorCode::kInvalidPayload, std::move(message), std::move(field), false};
}

/// Reads the members of one JSON object; the first failure is kept and every later read is a
/// no-op, so a decoder reads its fields in a row and checks once.
class Reader {
 public:
  Reader(const rapidjson::Value& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  bool ok() const { return !error_; }
  Error error() const { return *error_; }

  /// A required non-empty string.
  std::string text(std::string_view k) {
    const auto* v = member(k);
    if (!v) return fail(k, " is missing"), std::string();
    if (!v->IsString() || v->GetStringLength() == 0)
      return fail(k, " must be a non-empty string"), std::string();
    return json::string_of(*v);
  }
  /// An optional string (absent or null: nullopt); `non_empty` refuses "".
  std::optional<std::string> opt_text(std::string_view k, bool non_empty = false) {
    const auto* v = member(k);
    if (!v || v->IsNull()) return std::nullopt;
    if (!v->IsString() || (non_empty && v->GetStringLength() == 0))
      return fail(k, non_empty ? " must be a non-empty string" : " must be a string"), std::nullopt;
    return json::string_of(*v);
  }
  /// A required integer >= `min`.
  int64_t integer(std::string_view k, int64_t min) {
    const auto* v = member(k);
    if (!v) return fail(k, " is missing"), 0;
    return check_int(k, *v, min);
  }
  /// An optional integer >= `min` (absent or null: nullopt).
  std::optional<int64_t> opt_integer(std::string_view k, int64_t min) {
    const auto* v = member(k);
    if (!v || v->IsNull()) return std::nullopt;
    int64_t n = check_int(k, *v, min);
    return ok() ? std::optional<int64_t>(n) : std::nullopt;
  }
  /// An optional boolean (absent: `fallback`).
  bool boolean(std::string_view k, bool fallback) {
    const auto* v = member(k);
    if (!v) return fallback;
    if (!v->IsBool()) return fail(k, " must be a boolean"), fallback;
    return v->GetBool();
  }
  /// A required array; nullptr (and the failure kept) when absent or not an array.
  const rapidjson::Value* array(std::string_view k, bool non_empty) {
    const auto* v = member(k);
    if (!v) return fail(k, " is missing"), nullptr;
    if (!v->IsArray()) return fail(k, " must be an array"), nullptr;
    if (non_empty && v->Empty()) return fail(k, " must not be empty"), nullptr;
    return v;
  }
  /// True when the member is present (even null).
  bool has(std::string_view k) const { return member(k) != nullptr; }
  /// The member as it is, for a shape the helpers above do not cover; nullptr when absent.
  const rapidjson::Value* raw(std::string_view k) const { return member(k); }
  /// Takes over a nested reader's failure.
  void adopt(const Reader& inner) {
    if (ok() && !inner.ok()) error_ = inner.error_;
  }
  void fail(std::string_view k, std::string_view what) {
    if (error_) return;
    std::string field = prefix_ + std::string(k);
    error_ = invalid(field, field + std::string(what));
  }
  const std::string& prefix() const { return prefix_; }

 private:
  const rapidjson::Value* member(std::string_view k) const {
    return ok() ? json::find(obj_, k) : nullptr;
  }
  int64_t check_int(std::string_view k, const rapidjson::Value& v, int64_t min) {
    if (!v.IsInt64() || v.GetInt64() < min) {
      fail(k, min > 0 ? " must be a positive integer" : " must be a non-negative integer");
      return 0;
    }
    return v.GetInt64();
  }

  const rapidjson::Value& obj_;
  std::string prefix_;
  std::optional<Error> error_;
};

/// Parses `data` and hands a Reader of its top-level object to `read`, which fills `out`.
template <typename T, typename F>
Result<T> decode_object(std::string_view data, F&& read) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(data.data(), data.size());
  if (d.HasParseError() || !d.IsObject()) return invalid("data", "data must be a JSON object");
  Reader r(d, "");
  T out;
  read(r, out);
  if (!r.ok()) return r.error();
  return out;
}

/// The elements of the array `k`, each read by `read(Reader&, Elem&)` with a prefix "k[i].".
template <typename Elem, typename F>
std::vector<Elem> read_array(Reader& r, std::string_view k, bool non_empty, F&& read) {
  std::vector<Elem> out;
  const auto* arr = r.array(k, non_empty);
  if (!arr) return out;
  for (rapidjson::SizeType i = 0; i < arr->Size() && r.ok(); ++i) {
    const std::string at = r.prefix() + std::string(k) + "[" + std::to_string(i) + "]";
    const auto& e = (*arr)[i];
    if (!e.IsObject()) {
      r.fail(std::string(k) + "[" + std::to_string(i) + "]", " must be an object");
      break;
    }
    Reader inner(e, at + ".");
    Elem elem;
    read(inner, elem);
    r.adopt(inner);
    out.push_back(std::move(elem));
  }
  return out;
}

// `priced`: unit_amount is required (the catalogue's) and name is read; else unit_amount is an
// optional quote.
std::vector<Line> read_lines(Reader& r, bool priced, bool non_empty = true) {
  return read_array<Line>(r, "items", non_empty, [priced](Reader& in, Line& l) {
    l.sku = in.text("sku");
    l.quantity = in.integer("quantity", 1);
    l.unit_amount = priced ? std::optional<int64_t>(in.integer("unitAmount", 0))
                           : in.opt_integer("unitAmount", 0);
    l.name = in.opt_text("name").value_or("");
  });
}

void write_lines(Writer& w, const std::vector<Line>& lines) {
  json::key(w, "items");
  w.StartArray();
  for (const auto& l : lines) {
    w.StartObject();
    json::write_string(w, "sku", l.sku);
    if (!l.name.empty()) json::write_string(w, "name", l.name);
    json::write_int64(w, "quantity", l.quantity);
    if (l.unit_amount) json::write_int64(w, "unitAmount", *l.unit_amount);
    w.EndObject();
  }
  w.EndArray();
}

void write_sku_quantities(Writer& w, const std::vector<SkuQuantity>& lines) {
  json::key(w, "items");
  w.StartArray();
  for (const auto& l : lines) {
    w.StartObject();
    json::write_string(w, "sku", l.sku);
    json::write_int64(w, "quantity", l.quantity);
    w.EndObject();
  }
  w.EndArray();
}

void write_pricing(Writer& w, const Pricing& p) {
  json::write_string(w, "currency", p.currency);
  json::write_int64(w, "totalAmount", p.total_amount);
  write_lines(w, p.items);
}

Pricing read_pricing(Reader& r) {
  Pricing p;
  p.total_amount = r.integer("totalAmount", 0);
  p.currency = r.text("currency");
  p.items = read_lines(r, true);
  return p;
}

std::string order_only(const std::string& order_id) {
  return json::object([&](Writer& w) { json::write_string(w, "orderId", order_id); });
}

}  // namespace

// --- lines -------------------------------------------------------------------------------------

std::string encode_lines(const std::vector<Line>& lines) {
  // write_lines writes `"items":[...]`: take the array out of a one-member object.
  std::string wrapped = json::object([&](Writer& w) { write_lines(w, lines); });
  return wrapped.substr(9, wrapped.size() - 10);  // {"items": ... }
}

Result<std::vector<Line>> decode_lines(std::string_view json_array) {
  std::string wrapped = "{\"items\":";
  wrapped.append(json_array).push_back('}');
  auto r = decode_object<std::vector<Line>>(
      wrapped, [](Reader& in, std::vector<Line>& out) { out = read_lines(in, false, false); });
  return r;
}

// --- orders ------------------------------------------------------------------------------------

std::string OrderCreated::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "customerId", customer_id);
    json::write_string(w, "currency", currency);
    write_lines(w, items);
    if (expected_total) json::write_int64(w, "expectedTotal", *expected_total);
    if (payment_token) json::write_string(w, "paymentToken", *payment_token);
  });
}

Result<OrderCreated> OrderCreated::decode(std::string_view data) {
  // A totalAmount (producers before 0.2 sent the client's sum) is ignored: never charged.
  return decode_object<OrderCreated>(data, [](Reader& r, OrderCreated& e) {
    e.order_id = r.text("orderId");
    e.customer_id = r.text("customerId");
    e.currency = r.text("currency");
    e.items = read_lines(r, false);
    e.expected_total = r.opt_integer("expectedTotal", 0);
    e.payment_token = r.opt_text("paymentToken");
  });
}

std::string OrderCancellationRequested::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "customerId", customer_id);
  });
}

Result<OrderCancellationRequested> OrderCancellationRequested::decode(std::string_view data) {
  return decode_object<OrderCancellationRequested>(
      data, [](Reader& r, OrderCancellationRequested& e) {
        e.order_id = r.text("orderId");
        e.customer_id = r.opt_text("customerId").value_or("");
      });
}

std::string OrderStatusChanged::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "status", name(status));
    if (!reason.empty()) json::write_string(w, "reason", reason);
    if (!at.empty()) json::write_string(w, "at", at);
    if (pricing) write_pricing(w, *pricing);
  });
}

Result<OrderStatusChanged> OrderStatusChanged::decode(std::string_view data) {
  return decode_object<OrderStatusChanged>(data, [](Reader& r, OrderStatusChanged& e) {
    e.order_id = r.text("orderId");
    auto status = r.text("status");
    if (!r.ok()) return;
    auto parsed = parse_order_status(status);
    if (!parsed) return r.fail("status", " is not a known order status");
    e.status = *parsed;
    e.reason = r.opt_text("reason").value_or("");
    e.at = r.opt_text("at").value_or("");
    if (!r.ok()) return;
    if (!e.at.empty() && !is_rfc3339(e.at)) return r.fail("at", " must be an RFC 3339 time");
    // Pricing travels on STOCK_RESERVED; it is all there or not at all.
    if (r.has("totalAmount") || r.has("items")) e.pricing = read_pricing(r);
  });
}

// --- inventory ---------------------------------------------------------------------------------

std::string ReserveStock::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "currency", currency);
    write_lines(w, items);
    if (expected_total) json::write_int64(w, "expectedTotal", *expected_total);
  });
}

Result<ReserveStock> ReserveStock::decode(std::string_view data) {
  return decode_object<ReserveStock>(data, [](Reader& r, ReserveStock& e) {
    e.order_id = r.text("orderId");
    e.currency = r.text("currency");
    e.items = read_lines(r, false);
    e.expected_total = r.opt_integer("expectedTotal", 0);
  });
}

template <const std::string_view& Type>
std::string OrderRef<Type>::encode() const {
  return order_only(order_id);
}

template <const std::string_view& Type>
Result<OrderRef<Type>> OrderRef<Type>::decode(std::string_view data) {
  return decode_object<OrderRef>(data,
                                 [](Reader& r, OrderRef& e) { e.order_id = r.text("orderId"); });
}
template struct OrderRef<event_types::kReleaseStock>;
template struct OrderRef<event_types::kCommitStock>;

std::string StockReserved::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    write_pricing(w, pricing);
  });
}

Result<StockReserved> StockReserved::decode(std::string_view data) {
  return decode_object<StockReserved>(data, [](Reader& r, StockReserved& e) {
    e.order_id = r.text("orderId");
    e.pricing = read_pricing(r);
  });
}

std::string StockReservationFailed::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "reason", reason);
    json::key(w, "skus");
    w.StartArray();
    for (const auto& s : skus) json::str(w, s);
    w.EndArray();
  });
}

Result<StockReservationFailed> StockReservationFailed::decode(std::string_view data) {
  return decode_object<StockReservationFailed>(data, [](Reader& r, StockReservationFailed& e) {
    e.order_id = r.text("orderId");
    e.reason = r.text("reason");
    if (const auto* skus = r.raw("skus")) {
      if (!skus->IsArray()) return r.fail("skus", " must be an array");
      for (const auto& s : skus->GetArray()) {
        if (!s.IsString()) return r.fail("skus", " must hold strings");
        e.skus.push_back(json::string_of(s));
      }
    }
  });
}

template <const std::string_view& Type>
std::string StockSettled<Type>::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    write_sku_quantities(w, items);
  });
}

template <const std::string_view& Type>
Result<StockSettled<Type>> StockSettled<Type>::decode(std::string_view data) {
  return decode_object<StockSettled>(data, [](Reader& r, StockSettled& e) {
    e.order_id = r.text("orderId");
    e.items = read_array<SkuQuantity>(r, "items", false, [](Reader& in, SkuQuantity& l) {
      l.sku = in.text("sku");
      l.quantity = in.integer("quantity", 1);
    });
  });
}
template struct StockSettled<event_types::kStockReleased>;
template struct StockSettled<event_types::kStockCommitted>;

std::string InventoryUpdated::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "sku", sku);
    json::write_int64(w, "delta", delta);
    json::write_int64(w, "available", available);
    json::write_int64(w, "reserved", reserved);
    if (order_id) json::write_string(w, "orderId", *order_id);
    if (name) json::write_string(w, "name", *name);
    if (unit_amount) json::write_int64(w, "unitAmount", *unit_amount);
    if (currency) json::write_string(w, "currency", *currency);
    if (deleted) json::write_bool(w, "deleted", true);
  });
}

Result<InventoryUpdated> InventoryUpdated::decode(std::string_view data) {
  return decode_object<InventoryUpdated>(data, [](Reader& r, InventoryUpdated& e) {
    e.sku = r.text("sku");
    e.delta = r.integer("delta", INT64_MIN);
    e.available = r.integer("available", 0);
    e.reserved = r.integer("reserved", 0);
    e.order_id = r.opt_text("orderId", true);
    e.name = r.opt_text("name", true);
    e.unit_amount = r.opt_integer("unitAmount", 0);
    e.currency = r.opt_text("currency", true);
    e.deleted = r.boolean("deleted", false);
  });
}

template <const std::string_view& Type>
std::string StockAlert<Type>::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "sku", sku);
    json::write_int64(w, "available", available);
    json::write_int64(w, "threshold", threshold);
  });
}

template <const std::string_view& Type>
Result<StockAlert<Type>> StockAlert<Type>::decode(std::string_view data) {
  return decode_object<StockAlert>(data, [](Reader& r, StockAlert& e) {
    e.sku = r.text("sku");
    e.available = r.integer("available", 0);
    e.threshold = r.integer("threshold", 0);
  });
}
template struct StockAlert<event_types::kStockLevelLow>;
template struct StockAlert<event_types::kStockDepleted>;
template struct StockAlert<event_types::kStockLevelNormalized>;

// --- payments ----------------------------------------------------------------------------------

std::string AuthorizePayment::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_int64(w, "amount", amount);
    json::write_string(w, "currency", currency);
    if (payment_token) json::write_string(w, "paymentToken", *payment_token);
  });
}

Result<AuthorizePayment> AuthorizePayment::decode(std::string_view data) {
  return decode_object<AuthorizePayment>(data, [](Reader& r, AuthorizePayment& e) {
    e.order_id = r.text("orderId");
    e.amount = r.integer("amount", 0);
    e.currency = r.text("currency");
    e.payment_token = r.opt_text("paymentToken");
  });
}

std::string RefundPayment::encode() const { return order_only(order_id); }

Result<RefundPayment> RefundPayment::decode(std::string_view data) {
  return decode_object<RefundPayment>(
      data, [](Reader& r, RefundPayment& e) { e.order_id = r.text("orderId"); });
}

std::string PaymentAuthorized::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "paymentId", payment_id);
    json::write_int64(w, "amount", amount);
    json::write_string(w, "currency", currency);
  });
}

Result<PaymentAuthorized> PaymentAuthorized::decode(std::string_view data) {
  return decode_object<PaymentAuthorized>(data, [](Reader& r, PaymentAuthorized& e) {
    e.order_id = r.text("orderId");
    e.payment_id = r.opt_text("paymentId").value_or("");
    e.amount = r.opt_integer("amount", 0).value_or(0);
    e.currency = r.opt_text("currency").value_or("");
  });
}

std::string PaymentDeclined::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "reason", reason);
  });
}

Result<PaymentDeclined> PaymentDeclined::decode(std::string_view data) {
  return decode_object<PaymentDeclined>(data, [](Reader& r, PaymentDeclined& e) {
    e.order_id = r.text("orderId");
    e.reason = r.opt_text("reason").value_or("");
  });
}

std::string PaymentRefunded::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "orderId", order_id);
    json::write_int64(w, "amount", amount);
    json::write_bool(w, "refunded", refunded);
  });
}

Result<PaymentRefunded> PaymentRefunded::decode(std::string_view data) {
  return decode_object<PaymentRefunded>(data, [](Reader& r, PaymentRefunded& e) {
    e.order_id = r.text("orderId");
    e.amount = r.opt_integer("amount", 0).value_or(0);
    e.refunded = r.boolean("refunded", false);
  });
}

// --- notifications -----------------------------------------------------------------------------

std::string NotificationSent::encode() const {
  return json::object([&](Writer& w) {
    json::write_string(w, "notificationId", notification_id);
    json::write_string(w, "orderId", order_id);
    json::write_string(w, "customerId", customer_id);
    json::write_string(w, "orderStatus", order_status);
    json::write_string(w, "channel", channel);
    json::write_string(w, "subject", subject_line);
    json::write_int64(w, "attempts", attempts);
    json::write_string(w, "sentAt", sent_at);
  });
}

Result<NotificationSent> NotificationSent::decode(std::string_view data) {
  return decode_object<NotificationSent>(data, [](Reader& r, NotificationSent& e) {
    e.notification_id = r.text("notificationId");
    e.order_id = r.text("orderId");
    e.customer_id = r.text("customerId");
    e.order_status = r.text("orderStatus");
    e.channel = r.text("channel");
    e.subject_line = r.opt_text("subject").value_or("");
    e.attempts = r.integer("attempts", 0);
    e.sent_at = r.text("sentAt");
  });
}

}  // namespace ecom::contract
