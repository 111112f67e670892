// tls/session_cache.h
//
// ClientSessionCache: the client side's TLS sessions worth offering again, by destination, so a
// new connection to a server that issued a ticket resumes (an abbreviated handshake) instead of
// doing a full one. Used by outbound STARTTLS (one cache per shard, keyed by next hop and TLS
// level) and by moat-loadgen's --tls-resume (one key).
//
// What is kept: only the session of a *full* handshake that carries a ticket (TlsTransform
// hands it over when the connection ends). With Debian's wolfSSL 5.5.4, a session taken from a
// resumed TLS 1.3 connection resumes again against wolfSSL, but OpenSSL servers (Postfix) answer
// it with a fatal alert (seen in bench/compare); re-offering the first ticket is fine for both
// (stateless tickets are not single-use). A server that no longer honours a ticket only costs a
// full handshake, whose new session then replaces the old one.
//
// Bounded: at most `max_entries` destinations; a new one past that evicts an arbitrary entry.
// Owner: one thread (a shard, the load generator's engine); not thread-safe. Parses nothing.
#pragma once

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace moat::tls {

class ClientSessionCache {
 public:
  explicit ClientSessionCache(size_t max_entries = 1024) : max_entries_(max_entries) {}
  ~ClientSessionCache();
  ClientSessionCache(const ClientSessionCache&) = delete;
  ClientSessionCache& operator=(const ClientSessionCache&) = delete;

  // The session to offer for `key` (a WOLFSSL_SESSION*, still owned here), or nullptr.
  void* Find(const std::string& key) const;
  // Takes ownership of a WOLFSSL_SESSION*, replacing what `key` held.
  void Keep(const std::string& key, void* session);
  size_t size() const { return sessions_.size(); }

 private:
  const size_t max_entries_;
  absl::flat_hash_map<std::string, void*> sessions_;  // alloc: one per destination, bounded
};

}  // namespace moat::tls
