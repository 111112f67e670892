// net/client/connection_cache.h
//
// ConnectionCache: the outbound connection cache's bookkeeping (Postfix's scache, reduced
// to one shard). A connection whose transaction finished with CanReuse() is offered with
// Put(); the next job for the same destination Take()s it (the machine then sends RSET and
// the next MAIL), otherwise it closes after smtp_connection_cache_time_limit idle. Reuse
// stops after smtp_connection_reuse_time_limit since the connection opened or
// smtp_connection_reuse_count_limit transactions (0 = no limit), as in Postfix.
// PURE: stores connection ids, no sockets, time passed in. Owned by one shard; not
// thread-safe. No untrusted input.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace moat::client {

struct ConnectionCacheLimits {
  absl::Duration idle = absl::Seconds(2);          // smtp_connection_cache_time_limit
  absl::Duration reuse_time = absl::Seconds(300);  // smtp_connection_reuse_time_limit
  int reuse_count = 0;                             // smtp_connection_reuse_count_limit
  size_t per_destination_max = 20;  // at most the destination's concurrency is useful
  size_t total_max = 1000;          // idle connections kept by one shard
};

class ConnectionCache {
 public:
  explicit ConnectionCache(ConnectionCacheLimits limits = {}) : limits_(limits) {}

  // Offers an idle connection. `opened` is when it was connected, `uses` how many
  // transactions it carried. False: do not cache it, send QUIT and close it now.
  bool Put(std::string_view destination, uint64_t connection, absl::Time opened, int uses,
           absl::Time now);
  // The most recently cached live connection for `destination` (it leaves the cache), or
  // nullopt.
  std::optional<uint64_t> Take(std::string_view destination, absl::Time now);
  // Removes a connection the server closed (or that failed) while idle. False if unknown.
  bool Remove(uint64_t connection);
  // The connections idle for too long: they leave the cache; the driver QUITs them.
  std::vector<uint64_t> Expire(absl::Time now);
  // When Expire() will next have something (InfiniteFuture when empty).
  absl::Time NextExpiry() const;
  size_t size() const { return index_.size(); }

 private:
  struct Entry {
    uint64_t connection;
    absl::Time idle_deadline;
  };
  ConnectionCacheLimits limits_;
  absl::flat_hash_map<std::string, std::deque<Entry>> by_destination_;
  absl::flat_hash_map<uint64_t, std::string> index_;  // connection -> destination
};

}  // namespace moat::client
