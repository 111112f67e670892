// core/table/live_tables.cc: live maps over a published TableSet (see live_tables.h).
#include "core/table/live_tables.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::table {
namespace {

// A fixed Map whose lookups go to slot `slot_` of the set current at the time of the call:
// one atomic load (TableSetPublisher::Current) and a virtual call. The slot exists in every
// set published after this map was handed out (sets only grow).
class LiveMap final : public Map {
 public:
  LiveMap(std::string spec, const TableSetPublisher* publisher, size_t slot, bool pattern)
      : Map(std::move(spec)), publisher_(publisher), slot_(slot), pattern_(pattern) {}

  std::optional<std::string_view> Find(std::string_view key) const override {
    return Mapping().Find(key);
  }
  void Prefetch(std::string_view key) const override { Mapping().Prefetch(key); }
  bool IsPattern() const override { return pattern_; }
  uint64_t size() const override { return Mapping().size(); }

 private:
  const Map& Mapping() const { return publisher_->Current()->slot(slot_); }

  const TableSetPublisher* const publisher_;
  const size_t slot_;
  const bool pattern_;  // a spec's type never changes, so neither does this
};

}  // namespace

std::string WatchedPath(std::string_view spec) {
  std::string_view type;
  std::string_view name;
  if (!SplitSpec(spec, &type, &name) || name.empty()) {
    return "";
  }
  if (IsCompiledType(type)) {
    return absl::StrCat(std::string(name), ".moat");
  }
  if (type == "texthash" || type == "cidr") {
    return std::string(name);
  }
  return "";
}

FileVersion StatFile(const std::string& path) {
  FileVersion v;
  struct stat st;
  if (path.empty() || stat(path.c_str(), &st) != 0) {
    return v;
  }
  v.exists = true;
  v.device = st.st_dev;
  v.inode = st.st_ino;
  v.size = st.st_size;
  v.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return v;
}

LiveTables::LiveTables(OpenOptions options) : options_(options) {
  absl::MutexLock lock(&mu_);
  PublishLocked({});  // Current() is never null
}

LiveTables::~LiveTables() { StopWatching(); }

void LiveTables::PublishLocked(const std::vector<std::shared_ptr<const Map>>& maps) {
  TableSet::Builder builder;
  for (const std::shared_ptr<const Map>& map : maps) {
    builder.AddSlot(map);
  }
  publisher_.Publish(builder.Build());
}

absl::StatusOr<std::shared_ptr<const Map>> LiveTables::Open(std::string_view spec) {
  absl::MutexLock lock(&mu_);
  std::string_view type;
  std::string_view name;
  if (SplitSpec(spec, &type, &name)) {
    const std::string canonical = absl::StrCat(std::string(type), ":", std::string(name));
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].spec == canonical) {
        return live_[i];
      }
    }
  }
  Entry entry;
  entry.path = WatchedPath(spec);
  entry.version = StatFile(entry.path);  // before the open: a later change is seen next time
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap(spec, options_);
  if (!map.ok()) {
    return map.status();
  }
  entry.spec = (*map)->spec();
  const bool pattern = (*map)->IsPattern();
  const size_t slot = mapped_.size();
  mapped_.push_back(std::shared_ptr<const Map>(*std::move(map)));
  live_.push_back(std::make_shared<LiveMap>(entry.spec, &publisher_, slot, pattern));
  entries_.push_back(std::move(entry));
  PublishLocked(mapped_);
  return live_.back();
}

size_t LiveTables::CheckForChanges() {
  absl::MutexLock lock(&mu_);
  size_t reloaded = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    if (e.path.empty()) {
      continue;
    }
    FileVersion now = StatFile(e.path);
    if (now == e.version || (e.failed.has_value() && *e.failed == now)) {
      continue;
    }
    absl::StatusOr<std::unique_ptr<Map>> map = OpenMap(e.spec, options_);
    if (!map.ok() || (*map)->IsPattern() != live_[i]->IsPattern()) {
      log::Error("table %s: %s; the previous version stays in use", e.spec,
                 map.ok() ? "table kind changed" : map.status().message());
      e.failed = now;
      continue;
    }
    log::Info("table %s reloaded (%d rows)", e.spec, (*map)->size());
    mapped_[i] = std::shared_ptr<const Map>(*std::move(map));
    e.version = now;
    e.failed.reset();
    ++reloaded;
  }
  if (reloaded > 0) {
    PublishLocked(mapped_);
  }
  return reloaded;
}

void LiveTables::StartWatching(absl::Duration interval, std::function<void()> after_publish) {
  if (interval <= absl::ZeroDuration() || watcher_.joinable()) {
    return;
  }
  {
    absl::MutexLock lock(&watch_mu_);
    stop_ = false;
  }
  after_publish_ = std::move(after_publish);
  watcher_ = std::thread([this, interval] { WatchLoop(interval); });
}

void LiveTables::StopWatching() {
  if (!watcher_.joinable()) {
    return;
  }
  {
    absl::MutexLock lock(&watch_mu_);
    stop_ = true;
  }
  watcher_.join();
}

void LiveTables::WatchLoop(absl::Duration interval) {
  for (;;) {
    {
      absl::MutexLock lock(&watch_mu_);
      if (watch_mu_.AwaitWithTimeout(absl::Condition(&stop_), interval)) {
        return;
      }
    }
    Reclaim();
    // Wake the shards after a publish, and while old sets wait for an idle shard.
    if ((CheckForChanges() > 0 || RetiredCount() > 0) && after_publish_) {
      after_publish_();
    }
  }
}

}  // namespace moat::table
