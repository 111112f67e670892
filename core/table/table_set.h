// core/table/table_set.h
//
// Lock-free reload of lookup tables (DESIGN section 1), by quiescent-state reclamation:
//
//   TableSet           an immutable bundle of named MapLists for one config generation
//                      ("relay_recipient_maps" -> [hash:/etc/moat/relay_recipients]).
//   TableSetPublisher  the control thread: Publish(new set) is ONE atomic store (exchange);
//                      the old set is retired and destroyed (its files unmapped) only once
//                      every registered reader has passed a quiescent point after it.
//   TableSetReader     one per shard: Current() is ONE atomic load; Quiesce() (one load and
//                      one store) is called by the shard once per loop turn, at a point where
//                      it holds no pointer obtained from Current() (nor views into its maps).
//
// Readers never block and take no lock; the publisher's own bookkeeping (retired list)
// sits behind a mutex used by control-plane threads only. A reader that stops quiescing
// (a stuck shard) delays reclamation, never correctness; Unregister() a reader whose
// thread has ended.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/table/lookup.h"
#include "core/table/map.h"

namespace moat::table {

class TableSet {
 public:
  class Builder {
   public:
    explicit Builder(OpenOptions options = {}) : options_(options) {}
    // Opens every map named in `specs` (a main.cf value such as "hash:/a, cidr:/b") and
    // files the list under `name`. A map named by several lists is opened once.
    absl::Status Add(std::string_view name, std::string_view specs);
    // Files an already-built list (tests, callers that open maps themselves).
    void AddList(std::string_view name, MapList list);
    // Appends `map` to the set's numbered slots and returns its number (0, 1, ...): what
    // LiveTables (live_tables.h) reaches a map through, without a name lookup.
    size_t AddSlot(std::shared_ptr<const Map> map);
    std::unique_ptr<const TableSet> Build();

   private:
    OpenOptions options_;
    absl::flat_hash_map<std::string, std::shared_ptr<const Map>> opened_;
    absl::flat_hash_map<std::string, MapList> lists_;
    std::vector<std::shared_ptr<const Map>> slots_;
  };

  // The list filed under `name`, or an empty list (which matches nothing).
  const MapList& Get(std::string_view name) const;
  bool Has(std::string_view name) const;
  // The map in slot `i`. REQUIRES: i < slot_count().
  const Map& slot(size_t i) const { return *slots_[i]; }
  size_t slot_count() const { return slots_.size(); }
  // Set by the publisher: 1 for the first published set, then +1 per Publish().
  uint64_t generation() const { return generation_; }

 private:
  friend class TableSetPublisher;
  TableSet() = default;
  absl::flat_hash_map<std::string, MapList> lists_;
  std::vector<std::shared_ptr<const Map>> slots_;
  uint64_t generation_ = 0;
};

class TableSetPublisher;

class TableSetReader {
 public:
  // The current set: one atomic load. Valid until this reader's next Quiesce(). Never null
  // once something was published (before that: nullptr).
  const TableSet* Current() const {
    return current_->load(std::memory_order_acquire);
  }
  // Declares that this thread holds nothing obtained from Current() any more.
  void Quiesce() {
    epoch_.store(global_epoch_->load(std::memory_order_acquire), std::memory_order_release);
  }

 private:
  friend class TableSetPublisher;
  TableSetReader(const std::atomic<const TableSet*>* current,
                 const std::atomic<uint64_t>* global_epoch, uint64_t epoch)
      : current_(current), global_epoch_(global_epoch), epoch_(epoch) {}

  const std::atomic<const TableSet*>* current_;
  const std::atomic<uint64_t>* global_epoch_;
  alignas(64) std::atomic<uint64_t> epoch_;  // own cache line: shards do not share it
  std::atomic<bool> active_{true};
};

class TableSetPublisher {
 public:
  TableSetPublisher();
  // REQUIRES: no reader uses its TableSetReader any more.
  ~TableSetPublisher();
  TableSetPublisher(const TableSetPublisher&) = delete;
  TableSetPublisher& operator=(const TableSetPublisher&) = delete;

  // A reader for one shard; the pointer stays valid for the publisher's lifetime.
  // Control thread, typically before the shards start.
  TableSetReader* RegisterReader();
  // The reader's thread has ended: it no longer holds up reclamation.
  void UnregisterReader(TableSetReader* reader);

  // Makes `set` current (one atomic exchange), retires the previous set, then reclaims
  // what it can. Returns the new generation number.
  uint64_t Publish(std::unique_ptr<const TableSet> set);
  // Destroys every retired set that all active readers have passed. Call after Publish
  // and periodically (e.g. on a control-thread timer). Returns how many were destroyed.
  size_t Reclaim();
  // Sets retired but not yet destroyed.
  size_t RetiredCount();
  const TableSet* Current() const { return current_.load(std::memory_order_acquire); }

 private:
  struct Retired {
    std::unique_ptr<const TableSet> set;
    uint64_t epoch;  // free once every active reader's epoch >= this
  };

  std::atomic<const TableSet*> current_{nullptr};
  std::atomic<uint64_t> global_epoch_{1};
  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<TableSetReader>> readers_ ABSL_GUARDED_BY(mu_);
  std::vector<Retired> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moat::table
