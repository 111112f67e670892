// LiveTables: live maps follow the published mapping of their file; a changed file is
// reloaded by CheckForChanges() (and by the watcher thread) without a config reload; a
// corrupt or missing file keeps the previous mapping; old mappings are unmapped only after
// every reader has quiesced (checked with a fake shard loop doing lookups during 50 swaps:
// a use after unmap crashes, and ASan reports it).
#include "core/table/live_tables.h"

#include <stdio.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "core/table/lookup.h"
#include "core/table/table_builder.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::table {
namespace {

// Compiles `rows` into dir/name.moat the way `moat postmap` does (temporary file, rename).
void Postmap(const testing::TempDir& dir, const std::string& name, const std::string& rows) {
  std::string source = dir.Write(name, rows);
  CompileOptions options;
  options.sync = false;
  ASSERT_TRUE(CompileFile(source, source + ".moat", options).ok());
}

// Replaces `path` atomically with `bytes` (what an operator's bad copy would do).
void SwapIn(const testing::TempDir& dir, const std::string& path, const std::string& bytes) {
  std::string tmp = dir.Write("swap.tmp", bytes);
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);
}

std::string Value(const Map& map, std::string_view key) {
  std::optional<std::string_view> v = map.Find(key);
  return v.has_value() ? std::string(*v) : "(none)";
}

TEST(LiveTablesTest, WatchedPathNamesTheFileOpenMapReads) {
  EXPECT_EQ(WatchedPath("hash:/etc/moat/r"), "/etc/moat/r.moat");
  EXPECT_EQ(WatchedPath("proxy:btree:/etc/moat/r"), "/etc/moat/r.moat");
  EXPECT_EQ(WatchedPath("cidr:/etc/moat/nets"), "/etc/moat/nets");
  EXPECT_EQ(WatchedPath("texthash:/etc/moat/t"), "/etc/moat/t");
  EXPECT_EQ(WatchedPath("static:OK"), "");
  EXPECT_EQ(WatchedPath("nonsense"), "");
}

TEST(LiveTablesTest, OpenReturnsOneLiveMapPerSpec) {
  testing::TempDir dir;
  Postmap(dir, "r", "a@example.com OK\n");
  std::string cidr = dir.Write("nets", "10.0.0.0/8 REJECT\n");
  LiveTables tables;
  uint64_t start = tables.generation();
  auto a = tables.Open("hash:" + dir.path() + "/r");
  auto b = tables.Open("proxy:hash:" + dir.path() + "/r");
  auto c = tables.Open("cidr:" + cidr);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->get(), b->get()) << "proxy: names the same table";
  EXPECT_EQ((*a)->spec(), "hash:" + dir.path() + "/r");
  EXPECT_EQ(Value(**a, "a@example.com"), "OK");
  EXPECT_EQ(Value(**a, "b@example.com"), "(none)");
  EXPECT_EQ((*a)->size(), 1u);
  EXPECT_FALSE((*a)->IsPattern());
  EXPECT_TRUE((*c)->IsPattern());
  EXPECT_EQ(Value(**c, "10.1.2.3"), "REJECT");
  EXPECT_EQ(tables.generation(), start + 2) << "one publish per newly opened table";
  auto missing = tables.Open("hash:" + dir.path() + "/absent");
  EXPECT_FALSE(missing.ok());
  EXPECT_EQ(tables.generation(), start + 2);
  EXPECT_EQ(tables.CheckForChanges(), 0u) << "nothing changed";
}

TEST(LiveTablesTest, ChangedFileIsReloadedAndTheOldMappingLivesUntilReadersQuiesce) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  Postmap(dir, "r", "a@example.com OK\n");
  LiveTables tables;
  TableSetReader* reader = tables.RegisterReader();
  auto map = tables.Open("hash:" + dir.path() + "/r");
  ASSERT_TRUE(map.ok());
  reader->Quiesce();
  std::optional<std::string_view> held = (*map)->Find("a@example.com");  // a view, this "turn"
  ASSERT_TRUE(held.has_value());

  Postmap(dir, "r", "a@example.com NEW\nb@example.com OK\n");
  EXPECT_EQ(tables.CheckForChanges(), 1u);
  EXPECT_EQ(Value(**map, "b@example.com"), "OK") << "the next lookup sees the new file";
  EXPECT_EQ(Value(**map, "a@example.com"), "NEW");
  EXPECT_EQ((*map)->size(), 2u);
  EXPECT_EQ(tables.Reclaim(), 0u) << "the reader may still hold a view into the old file";
  EXPECT_EQ(*held, "OK") << "still mapped";
  reader->Quiesce();
  EXPECT_EQ(tables.Reclaim(), 1u);
  EXPECT_EQ(tables.RetiredCount(), 0u);
  EXPECT_EQ(tables.CheckForChanges(), 0u);
  log::CaptureForTest(nullptr);
  EXPECT_NE(log.find(absl::StrCat("table hash:", dir.path(), "/r reloaded (2 rows)")),
            std::string::npos)
      << log;
  tables.UnregisterReader(reader);
}

TEST(LiveTablesTest, CorruptOrMissingFileKeepsThePreviousMappingAndIsLoggedOnce) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  Postmap(dir, "r", "a@example.com OK\n");
  const std::string compiled = dir.path() + "/r.moat";
  LiveTables tables;
  auto map = tables.Open("hash:" + dir.path() + "/r");
  ASSERT_TRUE(map.ok());
  uint64_t generation = tables.generation();

  SwapIn(dir, compiled, std::string(8192, 'x'));
  EXPECT_EQ(tables.CheckForChanges(), 0u);
  EXPECT_EQ(tables.CheckForChanges(), 0u);
  EXPECT_EQ(Value(**map, "a@example.com"), "OK");
  EXPECT_EQ(tables.generation(), generation) << "nothing published";

  ASSERT_EQ(unlink(compiled.c_str()), 0);
  EXPECT_EQ(tables.CheckForChanges(), 0u);
  EXPECT_EQ(Value(**map, "a@example.com"), "OK");

  Postmap(dir, "r", "a@example.com FIXED\n");
  EXPECT_EQ(tables.CheckForChanges(), 1u);
  EXPECT_EQ(Value(**map, "a@example.com"), "FIXED");
  log::CaptureForTest(nullptr);

  const std::string corrupt = absl::StrCat("table hash:", dir.path(), "/r: ");
  size_t first = log.find(corrupt);
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_NE(log.find("not a moat table", first), std::string::npos) << log;
  EXPECT_NE(log.find("the previous version stays in use", first), std::string::npos) << log;
  size_t second = log.find(corrupt, first + 1);
  ASSERT_NE(second, std::string::npos) << "the missing file is a new version: " << log;
  EXPECT_NE(log.find("No such file", second), std::string::npos) << log;
  EXPECT_EQ(log.find(corrupt, second + 1), std::string::npos)
      << "each bad version is logged once: " << log;
}

// A fake shard loop: lookups, then Quiesce() at the end of each turn, while the control
// thread swaps the file 50 times. Every row's value names the version that wrote it, so a
// lookup sees one whole version, and versions never go backwards within the loop.
TEST(LiveTablesTest, FiftySwapsUnderConcurrentLookups) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  auto rows = [](int version) {
    std::string s;
    for (int i = 0; i < 200; ++i) {
      absl::StrAppendFormat(&s, "user%d@example.com v%d\n", i, version);
    }
    absl::StrAppendFormat(&s, "new%d@example.com v%d\n", version, version);
    return s;
  };
  Postmap(dir, "r", rows(0));
  LiveTables tables;
  auto opened = tables.Open("hash:" + dir.path() + "/r");
  ASSERT_TRUE(opened.ok());
  std::shared_ptr<const Map> map = *opened;
  MapList list({map});

  constexpr int kReaders = 3;
  constexpr int kSwaps = 50;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<uint64_t> lookups{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    TableSetReader* reader = tables.RegisterReader();
    readers.emplace_back([&, reader, r] {
      int last = 0;
      uint64_t turn = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 20; ++i) {
          std::string key = absl::StrFormat("user%d@example.com", (r * 31 + i + turn) % 200);
          std::optional<Match> m = FindRecipient(list, key, "+");
          if (!m.has_value() || m->value.size() < 2 || m->value[0] != 'v') {
            errors.fetch_add(1);
            continue;
          }
          int version = std::stoi(std::string(m->value.substr(1)));
          if (version < last) {
            errors.fetch_add(1);
          }
          last = version;
          lookups.fetch_add(1, std::memory_order_relaxed);
        }
        reader->Quiesce();  // end of the turn: no view is held past here
        ++turn;
      }
    });
  }
  for (int v = 1; v <= kSwaps; ++v) {
    Postmap(dir, "r", rows(v));
    EXPECT_EQ(tables.CheckForChanges(), 1u) << v;
    EXPECT_EQ(Value(*map, absl::StrFormat("new%d@example.com", v)), absl::StrCat("v", v));
    tables.Reclaim();
  }
  // Every reader turns again, so everything retired can go.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (tables.Reclaim(), tables.RetiredCount() > 0 &&
                               std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(tables.RetiredCount(), 0u);
  stop.store(true);
  for (std::thread& t : readers) {
    t.join();
  }
  log::CaptureForTest(nullptr);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(lookups.load(), 0u);
  EXPECT_EQ(Value(*map, "user7@example.com"), absl::StrCat("v", kSwaps));
}

TEST(LiveTablesTest, WatcherReloadsAChangedFileAndWakesTheShards) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  Postmap(dir, "r", "a@example.com OK\n");
  LiveTables tables;
  auto map = tables.Open("hash:" + dir.path() + "/r");
  ASSERT_TRUE(map.ok());
  std::atomic<int> wakes{0};
  tables.StartWatching(absl::Milliseconds(20), [&wakes] { wakes.fetch_add(1); });
  Postmap(dir, "r", "a@example.com OK\nb@example.com OK\n");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((Value(**map, "b@example.com") != "OK" || wakes.load() == 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  tables.StopWatching();
  log::CaptureForTest(nullptr);
  EXPECT_EQ(Value(**map, "b@example.com"), "OK");
  EXPECT_GE(wakes.load(), 1);
}

}  // namespace
}  // namespace moat::table
