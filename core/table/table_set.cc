// core/table/table_set.cc: TableSet and its quiescent-state reclamation (see table_set.h).
//
// Why it is safe: Publish() swaps `current_` (seq_cst), THEN advances the global epoch to E.
// A reader whose published epoch is >= E loaded that epoch value after the advance; its
// release store of the epoch orders every earlier use of a TableSet* before the
// publisher's acquire load of that epoch, and any later Current() of the reader (program
// order after its acquire load of E) sees the new set. So once every active reader's epoch
// is >= E, nobody can hold the set retired at E, and it is destroyed.
#include "core/table/table_set.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/string_view.h"
#include "core/log/assert.h"

namespace moat::table {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

absl::Status TableSet::Builder::Add(std::string_view name, std::string_view specs) {
  std::vector<std::shared_ptr<const Map>> maps;
  size_t i = 0;
  while (i < specs.size()) {
    size_t end = specs.find_first_of(", \t\r\n", i);
    if (end == std::string_view::npos) {
      end = specs.size();
    }
    if (end > i) {
      std::string spec(specs.substr(i, end - i));
      auto it = opened_.find(spec);
      if (it == opened_.end()) {
        absl::StatusOr<std::unique_ptr<Map>> map = OpenMap(spec, options_);
        if (!map.ok()) {
          return map.status();
        }
        it = opened_.emplace(spec, std::shared_ptr<const Map>(std::move(*map))).first;
      }
      maps.push_back(it->second);
    }
    i = end + 1;
  }
  lists_[AV(name)] = MapList(std::move(maps));
  return absl::OkStatus();
}

void TableSet::Builder::AddList(std::string_view name, MapList list) {
  lists_[AV(name)] = std::move(list);
}

size_t TableSet::Builder::AddSlot(std::shared_ptr<const Map> map) {
  MOAT_CHECK(map != nullptr);
  slots_.push_back(std::move(map));
  return slots_.size() - 1;
}

std::unique_ptr<const TableSet> TableSet::Builder::Build() {
  std::unique_ptr<TableSet> set(new TableSet());
  set->lists_ = std::move(lists_);
  set->slots_ = std::move(slots_);
  lists_.clear();
  slots_.clear();
  opened_.clear();
  return set;
}

const MapList& TableSet::Get(std::string_view name) const {
  static const MapList* const kEmpty = new MapList();
  auto it = lists_.find(AV(name));
  return it == lists_.end() ? *kEmpty : it->second;
}

bool TableSet::Has(std::string_view name) const { return lists_.contains(AV(name)); }

TableSetPublisher::TableSetPublisher() = default;

TableSetPublisher::~TableSetPublisher() {
  delete current_.exchange(nullptr, std::memory_order_acq_rel);
}

TableSetReader* TableSetPublisher::RegisterReader() {
  absl::MutexLock lock(&mu_);
  readers_.push_back(std::unique_ptr<TableSetReader>(new TableSetReader(
      &current_, &global_epoch_, global_epoch_.load(std::memory_order_acquire))));
  return readers_.back().get();
}

void TableSetPublisher::UnregisterReader(TableSetReader* reader) {
  {
    absl::MutexLock lock(&mu_);
    reader->active_.store(false, std::memory_order_release);
  }
  Reclaim();
}

uint64_t TableSetPublisher::Publish(std::unique_ptr<const TableSet> set) {
  MOAT_CHECK(set != nullptr);
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    generation = ++generation_;
    const_cast<TableSet*>(set.get())->generation_ = generation;
    const TableSet* old = current_.exchange(set.release(), std::memory_order_seq_cst);
    uint64_t epoch = global_epoch_.fetch_add(1, std::memory_order_seq_cst) + 1;
    if (old != nullptr) {
      retired_.push_back(Retired{std::unique_ptr<const TableSet>(old), epoch});
    }
  }
  Reclaim();
  return generation;
}

size_t TableSetPublisher::Reclaim() {
  std::vector<std::unique_ptr<const TableSet>> doomed;
  {
    absl::MutexLock lock(&mu_);
    uint64_t oldest = UINT64_MAX;
    for (const std::unique_ptr<TableSetReader>& reader : readers_) {
      if (reader->active_.load(std::memory_order_acquire)) {
        oldest = std::min(oldest, reader->epoch_.load(std::memory_order_acquire));
      }
    }
    size_t kept = 0;
    for (Retired& r : retired_) {
      if (r.epoch <= oldest) {
        doomed.push_back(std::move(r.set));
      } else {
        retired_[kept++] = std::move(r);
      }
    }
    retired_.resize(kept);
  }
  return doomed.size();  // destroyed (unmapped) here, outside the lock
}

size_t TableSetPublisher::RetiredCount() {
  absl::MutexLock lock(&mu_);
  return retired_.size();
}

}  // namespace moat::table
