#pragma once
/// A small blocking HTTP/1.1 client for outgoing calls (webhooks). Beast stays inside src/http.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom::http {

/// A response received by the client.
struct ClientResponse {
  int status = 0;
  std::string body;
};

/// Sends one request to an `http://host[:port]/path` URL (https is not supported: error
/// UNSUPPORTED_SCHEME). Connection failures and timeouts are retryable errors. Thread-safe (no
/// shared state).
Result<ClientResponse> request(std::string_view method, std::string_view url, std::string body,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               std::chrono::milliseconds timeout);

}  // namespace ecom::http
