// tls/session_cache.cc: see session_cache.h.
#include "tls/session_cache.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
// clang-format on

namespace moat::tls {

ClientSessionCache::~ClientSessionCache() {
  for (auto& [key, session] : sessions_) {
    (void)key;
    wolfSSL_SESSION_free(static_cast<WOLFSSL_SESSION*>(session));
  }
}

void* ClientSessionCache::Find(const std::string& key) const {
  auto it = sessions_.find(key);
  return it == sessions_.end() ? nullptr : it->second;
}

void ClientSessionCache::Keep(const std::string& key, void* session) {
  if (session == nullptr) {
    return;
  }
  auto it = sessions_.find(key);
  if (it != sessions_.end()) {
    wolfSSL_SESSION_free(static_cast<WOLFSSL_SESSION*>(it->second));
    it->second = session;
    return;
  }
  if (max_entries_ == 0) {
    wolfSSL_SESSION_free(static_cast<WOLFSSL_SESSION*>(session));
    return;
  }
  if (sessions_.size() >= max_entries_) {
    auto victim = sessions_.begin();
    wolfSSL_SESSION_free(static_cast<WOLFSSL_SESSION*>(victim->second));
    sessions_.erase(victim);
  }
  sessions_.emplace(key, session);
}

}  // namespace moat::tls
