#include "ecom/core/envelope.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>

#include "ecom/core/clock.hpp"

namespace ecom {
namespace {

constexpr size_t kMaxAttributeLength = 1024;

Error invalid(std::string field, std::string message) {
  return Error{ErrorCode::kInvalidPayload, std::move(message), std::move(field), false};
}

bool is_traceparent(std::string_view s) {
  // version(2)-trace-id(32)-parent-id(16)-flags(2), lower-case hex.
  if (s.size() != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 2 || i == 35 || i == 52) continue;
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Reads an optional string attribute; `required` turns absence into an error.
std::optional<Error> read_string(const rapidjson::Value& obj, const char* name, bool required,
                                 std::string& out) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || (!required && it->value.IsNull())) {
    if (required) return invalid(name, fmt::format("{} is required", name));
    return std::nullopt;
  }
  if (!it->value.IsString()) return invalid(name, fmt::format("{} must be a string", name));
  if (it->value.GetStringLength() > kMaxAttributeLength)
    return invalid(name, fmt::format("{} is longer than {} characters", name, kMaxAttributeLength));
  out.assign(it->value.GetString(), it->value.GetStringLength());
  if (required && out.empty()) return invalid(name, fmt::format("{} must not be empty", name));
  return std::nullopt;
}

}  // namespace

Envelope make_event(std::string_view source, std::string_view type, std::string subject,
                    std::string data_json, const Envelope* cause) {
  Envelope e;
  e.id = new_uuid();
  e.source = source;
  e.type = type;
  e.time = now_rfc3339();
  e.subject = std::move(subject);
  e.data = data_json.empty() ? std::string("{}") : std::move(data_json);
  if (cause != nullptr) {
    e.correlation_id = cause->correlation_id.empty() ? cause->id : cause->correlation_id;
    e.causation_id = cause->id;
    e.traceparent = cause->traceparent;
  } else {
    e.correlation_id = e.id;
  }
  if (e.traceparent.empty()) e.traceparent = new_traceparent();
  return e;
}

std::string encode_envelope(const Envelope& e) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  auto field = [&w](const char* name, const std::string& value) {
    if (value.empty()) return;
    w.Key(name);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  field("specversion", e.specversion);
  field("id", e.id);
  field("source", e.source);
  field("type", e.type);
  field("time", e.time);
  field("subject", e.subject);
  w.Key("datacontenttype");
  w.String("application/json");
  field("correlationid", e.correlation_id);
  field("causationid", e.causation_id);
  field("traceparent", e.traceparent);
  w.Key("data");
  // data is already JSON: splice it in without a parse/serialise round trip.
  const std::string& data = e.data.empty() ? std::string("{}") : e.data;
  w.RawValue(data.data(), data.size(), rapidjson::kObjectType);
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

Result<Envelope> decode_envelope(std::string_view json) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  if (doc.HasParseError()) {
    return Error{ErrorCode::kInvalidPayload,
                 fmt::format("malformed JSON at offset {}: {}", doc.GetErrorOffset(),
                             rapidjson::GetParseError_En(doc.GetParseError())),
                 "", false};
  }
  if (!doc.IsObject()) return invalid("", "envelope must be a JSON object");
  Envelope e;
  if (auto err = read_string(doc, "specversion", true, e.specversion)) return *err;
  if (e.specversion != "1.0")
    return invalid("specversion",
                   fmt::format("specversion must be \"1.0\", got \"{}\"", e.specversion));
  if (auto err = read_string(doc, "id", true, e.id)) return *err;
  if (auto err = read_string(doc, "source", true, e.source)) return *err;
  if (auto err = read_string(doc, "type", true, e.type)) return *err;
  if (auto err = read_string(doc, "time", false, e.time)) return *err;
  if (!e.time.empty() && !is_rfc3339(e.time))
    return invalid("time", "time must be an RFC 3339 date-time");
  if (auto err = read_string(doc, "subject", false, e.subject)) return *err;
  std::string content_type;
  if (auto err = read_string(doc, "datacontenttype", false, content_type)) return *err;
  if (!content_type.empty() && content_type.rfind("application/json", 0) != 0)
    return invalid("datacontenttype", "datacontenttype must be application/json");
  if (auto err = read_string(doc, "correlationid", false, e.correlation_id)) return *err;
  if (auto err = read_string(doc, "causationid", false, e.causation_id)) return *err;
  if (auto err = read_string(doc, "traceparent", false, e.traceparent)) return *err;
  if (!e.traceparent.empty() && !is_traceparent(e.traceparent))
    return invalid("traceparent",
                   "traceparent must be a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)");
  if (doc.HasMember("data_base64"))
    return invalid("data_base64", "data_base64 is not supported; data must be a JSON object");
  auto data = doc.FindMember("data");
  if (data == doc.MemberEnd()) return invalid("data", "data is required");
  if (!data->value.IsObject()) return invalid("data", "data must be a JSON object");
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  data->value.Accept(w);
  e.data.assign(sb.GetString(), sb.GetSize());
  return e;
}

TraceIds trace_ids(std::string_view tp) noexcept {
  if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-') return {};
  return TraceIds{tp.substr(3, 32), tp.substr(36, 16)};
}

}  // namespace ecom
