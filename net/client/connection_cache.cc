// net/client/connection_cache.cc: see connection_cache.h. Owned by: outbound.
#include "net/client/connection_cache.h"

#include <algorithm>
#include <string>

namespace moat::client {

bool ConnectionCache::Put(std::string_view destination, uint64_t connection, absl::Time opened,
                          int uses, absl::Time now) {
  if (limits_.idle <= absl::ZeroDuration() || index_.contains(connection)) {
    return false;
  }
  if (now - opened >= limits_.reuse_time) {
    return false;
  }
  if (limits_.reuse_count > 0 && uses >= limits_.reuse_count) {
    return false;
  }
  if (index_.size() >= limits_.total_max) {
    return false;
  }
  const std::string key(destination);
  std::deque<Entry>& entries = by_destination_[key];
  if (entries.size() >= limits_.per_destination_max) {
    return false;
  }
  // The idle deadline never extends past the reuse time limit.
  const absl::Time deadline = std::min(now + limits_.idle, opened + limits_.reuse_time);
  entries.push_back(Entry{connection, deadline});
  index_.emplace(connection, key);
  return true;
}

std::optional<uint64_t> ConnectionCache::Take(std::string_view destination, absl::Time now) {
  auto it = by_destination_.find(std::string(destination));
  if (it == by_destination_.end()) {
    return std::nullopt;
  }
  std::deque<Entry>& entries = it->second;
  // Newest first; stale ones stay for Expire() so the driver closes them politely.
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
    if (e->idle_deadline > now) {
      const uint64_t connection = e->connection;
      entries.erase(std::next(e).base());
      index_.erase(connection);
      if (entries.empty()) {
        by_destination_.erase(it);
      }
      return connection;
    }
  }
  return std::nullopt;
}

bool ConnectionCache::Remove(uint64_t connection) {
  auto it = index_.find(connection);
  if (it == index_.end()) {
    return false;
  }
  auto d = by_destination_.find(it->second);
  index_.erase(it);
  if (d != by_destination_.end()) {
    auto& entries = d->second;
    entries.erase(
        std::remove_if(entries.begin(), entries.end(),
                       [connection](const Entry& e) { return e.connection == connection; }),
        entries.end());
    if (entries.empty()) {
      by_destination_.erase(d);
    }
  }
  return true;
}

std::vector<uint64_t> ConnectionCache::Expire(absl::Time now) {
  std::vector<uint64_t> expired;
  for (auto d = by_destination_.begin(); d != by_destination_.end();) {
    auto& entries = d->second;
    for (auto e = entries.begin(); e != entries.end();) {
      if (e->idle_deadline <= now) {
        expired.push_back(e->connection);
        index_.erase(e->connection);
        e = entries.erase(e);
      } else {
        ++e;
      }
    }
    if (entries.empty()) {
      by_destination_.erase(d++);
    } else {
      ++d;
    }
  }
  std::sort(expired.begin(), expired.end());
  return expired;
}

absl::Time ConnectionCache::NextExpiry() const {
  absl::Time t = absl::InfiniteFuture();
  for (const auto& [key, entries] : by_destination_) {
    for (const Entry& e : entries) {
      t = std::min(t, e.idle_deadline);
    }
  }
  return t;
}

}  // namespace moat::client
