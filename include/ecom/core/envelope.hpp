#pragma once
/// The event envelope: CloudEvents 1.0 structured JSON, plus tracing extensions.

#include <string>
#include <string_view>

#include "ecom/core/result.hpp"

namespace ecom {

/// One event as it travels on the bus. `data` holds the payload as a JSON object text, so an
/// event is encoded once and never re-serialised on its way through outbox and bus.
struct Envelope {
  std::string id;      ///< UUID, unique per event; the inbox deduplicates on it
  std::string source;  ///< the role that emitted it, e.g. "order"
  std::string type;    ///< e.g. "ecom.order.created.v1"
  std::string specversion = "1.0";
  std::string time;            ///< RFC 3339 UTC
  std::string subject;         ///< order id or sku; also the partition key
  std::string correlation_id;  ///< extension `correlationid`: the whole order flow
  std::string causation_id;    ///< extension `causationid`: the event that caused this one
  std::string traceparent;     ///< extension `traceparent`: W3C trace context
  std::string data = "{}";     ///< JSON object text
};

/// Builds a new event with a fresh id and time. When `cause` is given, the correlation id and
/// trace are inherited from it and the causation id points at it; otherwise a new flow starts.
Envelope make_event(std::string_view source, std::string_view type, std::string subject,
                    std::string data_json, const Envelope* cause = nullptr);

/// Encodes as CloudEvents structured-mode JSON (`datacontenttype` application/json).
std::string encode_envelope(const Envelope& e);

/// Decodes and validates; never throws. The error names the attribute at fault.
Result<Envelope> decode_envelope(std::string_view json);

/// The ids of a W3C traceparent ("00-<32 hex trace id>-<16 hex parent span id>-<flags>"), as
/// views into it; both empty when it does not have that shape.
struct TraceIds {
  std::string_view trace_id;
  std::string_view span_id;
};
TraceIds trace_ids(std::string_view traceparent) noexcept;

}  // namespace ecom
