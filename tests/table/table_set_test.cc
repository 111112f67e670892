// TableSet publication and quiescent-state reclamation: retired sets live exactly until
// every reader has quiesced; under 1,000 reloads with concurrent readers every lookup
// sees one consistent generation (ASan/TSan would report a use after unmap).
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "core/table/lookup.h"
#include "core/table/table_builder.h"
#include "core/table/table_set.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::table {
namespace {

// A map that records its destruction.
class FlagMap final : public Map {
 public:
  FlagMap(std::string value, std::atomic<int>* destroyed)
      : Map("flag:" + value), value_(std::move(value)), destroyed_(destroyed) {}
  ~FlagMap() override { destroyed_->fetch_add(1); }
  std::optional<std::string_view> Find(std::string_view) const override { return value_; }
  uint64_t size() const override { return 1; }

 private:
  std::string value_;
  std::atomic<int>* destroyed_;
};

std::unique_ptr<const TableSet> FlagSet(const std::string& value, std::atomic<int>* destroyed) {
  TableSet::Builder builder;
  builder.AddList("maps", MapList({std::make_shared<FlagMap>(value, destroyed)}));
  return builder.Build();
}

TEST(TableSetTest, BuilderSharesMapsAndAnswersUnknownNamesWithAnEmptyList) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  std::string cidr = dir.Write("nets", "10.0.0.0/8 OK\n");
  TableSet::Builder builder;
  ASSERT_TRUE(builder.Add("mynetworks", "cidr:" + cidr).ok());
  ASSERT_TRUE(builder.Add("check_client_access", "cidr:" + cidr + ", static:DUNNO").ok());
  absl::Status bad = builder.Add("transport_maps", "hash:" + dir.path() + "/absent");
  EXPECT_FALSE(bad.ok());
  auto set = builder.Build();
  EXPECT_TRUE(set->Has("mynetworks"));
  EXPECT_FALSE(set->Has("transport_maps"));
  EXPECT_TRUE(set->Get("transport_maps").empty());
  EXPECT_EQ(set->Get("mynetworks").maps()[0].get(),
            set->Get("check_client_access").maps()[0].get())
      << "one map opened once for both lists";
  EXPECT_EQ(FindClient(set->Get("check_client_access"), "192.0.2.1", "", false)->value,
            "DUNNO");
  log::CaptureForTest(nullptr);
}

TEST(TableSetTest, OldSetLivesUntilEveryReaderQuiesces) {
  std::atomic<int> destroyed{0};
  TableSetPublisher publisher;
  TableSetReader* a = publisher.RegisterReader();
  TableSetReader* b = publisher.RegisterReader();
  EXPECT_EQ(a->Current(), nullptr);
  EXPECT_EQ(publisher.Publish(FlagSet("one", &destroyed)), 1u);
  const TableSet* held = a->Current();
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->generation(), 1u);

  EXPECT_EQ(publisher.Publish(FlagSet("two", &destroyed)), 2u);
  EXPECT_EQ(publisher.RetiredCount(), 1u);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(held->Get("maps").Find("x")->value, "one") << "still readable";

  a->Quiesce();
  EXPECT_EQ(publisher.Reclaim(), 0u) << "b has not quiesced yet";
  EXPECT_EQ(destroyed.load(), 0);
  b->Quiesce();
  EXPECT_EQ(publisher.Reclaim(), 1u);
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_EQ(a->Current()->Get("maps").Find("x")->value, "two");
  EXPECT_EQ(a->Current()->generation(), 2u);
}

TEST(TableSetTest, UnregisteredReaderDoesNotHoldUpReclamation) {
  std::atomic<int> destroyed{0};
  TableSetPublisher publisher;
  TableSetReader* live = publisher.RegisterReader();
  TableSetReader* gone = publisher.RegisterReader();
  publisher.Publish(FlagSet("one", &destroyed));
  publisher.Publish(FlagSet("two", &destroyed));
  live->Quiesce();
  EXPECT_EQ(publisher.Reclaim(), 0u);
  publisher.UnregisterReader(gone);
  EXPECT_EQ(publisher.RetiredCount(), 0u);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(TableSetTest, DestructorFreesEverything) {
  std::atomic<int> destroyed{0};
  {
    TableSetPublisher publisher;
    publisher.RegisterReader();  // never quiesces
    publisher.Publish(FlagSet("one", &destroyed));
    publisher.Publish(FlagSet("two", &destroyed));
    publisher.Publish(FlagSet("three", &destroyed));
    EXPECT_EQ(publisher.RetiredCount(), 2u);
  }
  EXPECT_EQ(destroyed.load(), 3);
}

// Readers look up keys while the control thread reloads compiled files 1,000 times. Each
// reload maps a file anew and the old mapping is unmapped once the readers quiesce, so a
// reader using a set after its unmap would crash or be reported by the sanitizers.
TEST(TableSetTest, StressReadersDuringThousandReloads) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  constexpr int kFiles = 4;
  constexpr int kKeys = 64;
  constexpr int kReloads = 1000;
  constexpr int kReaders = 3;
  std::vector<std::string> specs;
  for (int f = 0; f < kFiles; ++f) {
    std::string source;
    for (int k = 0; k < kKeys; ++k) {
      absl::StrAppendFormat(&source, "user%d@example.com gen%d\n", k, f);
    }
    std::string path = dir.Write(absl::StrFormat("recipients%d", f), source);
    CompileOptions options;
    options.sync = false;
    ASSERT_TRUE(CompileFile(path, path + ".moat", options).ok());
    specs.push_back("hash:" + path);
  }
  TableSetPublisher publisher;
  auto build = [&](int generation) {
    TableSet::Builder builder;
    absl::Status s = builder.Add("relay_recipient_maps", specs[(generation - 1) % kFiles]);
    EXPECT_TRUE(s.ok()) << s;
    return builder.Build();
  };
  publisher.Publish(build(1));

  std::atomic<bool> stop{false};
  std::atomic<long> lookups{0};
  std::atomic<long> errors{0};
  std::atomic<long> generations_seen{0};
  std::vector<TableSetReader*> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.push_back(publisher.RegisterReader());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      TableSetReader* reader = readers[r];
      uint64_t last_generation = 0;
      long local = 0;
      int key = r;
      while (!stop.load(std::memory_order_relaxed) &&
             std::chrono::steady_clock::now() < deadline) {
        const TableSet* set = reader->Current();
        const uint64_t generation = set->generation();
        if (generation < last_generation) {
          errors.fetch_add(1);
        }
        if (generation != last_generation) {
          generations_seen.fetch_add(1, std::memory_order_relaxed);
          last_generation = generation;
        }
        const std::string expected = absl::StrFormat("gen%d", (generation - 1) % kFiles);
        for (int i = 0; i < 8; ++i) {
          char address[64];
          int n = snprintf(address, sizeof(address), "User%d@Example.com", key % kKeys);
          key += 7;
          std::optional<Match> m = FindRecipient(set->Get("relay_recipient_maps"),
                                                 std::string_view(address, n), "+");
          if (!m || m->value != expected) {
            errors.fetch_add(1);
          }
          ++local;
        }
        reader->Quiesce();
      }
      lookups.fetch_add(local);
    });
  }
  for (int g = 2; g <= kReloads + 1; ++g) {
    ASSERT_EQ(publisher.Publish(build(g)), static_cast<uint64_t>(g));
    if (g % 64 == 0) {
      std::this_thread::yield();  // let readers run on a busy 2-core machine
    }
  }
  stop.store(true);
  for (std::thread& t : threads) {
    t.join();
  }
  for (TableSetReader* reader : readers) {
    publisher.UnregisterReader(reader);
  }
  EXPECT_EQ(publisher.RetiredCount(), 0u);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(lookups.load(), 0);
  EXPECT_GT(generations_seen.load(), kReaders) << "readers saw reloads happen";
  EXPECT_EQ(publisher.Current()->generation(), static_cast<uint64_t>(kReloads + 1));
  log::CaptureForTest(nullptr);
  EXPECT_EQ(log, "");
}

}  // namespace
}  // namespace moat::table
