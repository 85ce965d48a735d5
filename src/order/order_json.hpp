#pragma once
// The order module's wire format: the JSON of its HTTP answers, the stored `items`, and the
// canonical request used for Idempotency-Key comparison.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "order_store.hpp"
#include "validation.hpp"

namespace ecom::order {

/// The items array of `o` as JSON text (`unitAmount` only where the client quoted one).
std::string encode_items(const NewOrder& o);

/// The canonical request (what canonical_json(o) returns, and stored Idempotency-Keys compare
/// against), reusing `items` = encode_items(o) so a POST encodes its items once.
std::string canonical_request(const NewOrder& o, std::string_view items);

/// `{"orderId","status","correlationId"}`: the 202 of a POST.
std::string accepted_json(const store::Created& c);
/// One order; with its `history` when `with_history`.
std::string order_json(const store::OrderView& o, bool with_history);
/// `{"orders":[...],"nextCursor"?}` without history; `nextCursor` only when another page follows.
std::string order_list_json(const store::OrderPage& page);

/// The opaque `cursor` of GET /api/orders for a page key: base64url of "v1|<created ms>|<id>", so
/// clients pass it back unchanged and the format can change behind a new version tag.
std::string encode_cursor(const store::PageKey& key);
/// The page key of a cursor encode_cursor() made; nullopt for anything else.
std::optional<store::PageKey> decode_cursor(std::string_view cursor);
/// `{"orderId","status","cancellationRequested":true}`: the 202 of a cancel.
std::string cancel_json(std::string_view order_id, std::string_view status);

}  // namespace ecom::order
