// Lookups make zero heap allocations: this binary replaces the global operator new with a
// counting one and runs every search order against compiled, texthash, cidr and static
// maps, hits and misses.
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "core/log/log.h"
#include "core/table/lookup.h"
#include "core/table/table_builder.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// g++ 12 sees the replacement operator delete inlined after operator new and flags
// free() of "new" memory; both replacements use malloc/free, so the pairing is right.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace moat::table {
namespace {

TEST(LookupAllocTest, EverySearchOrderIsAllocationFree) {
  std::string log;
  log::CaptureForTest(&log);
  testing::TempDir dir;
  std::string hash = dir.Write("hash",
                               "user@example.com x\n@example.org y\nexample.net smtp:[in]:25\n"
                               ".example.net sub\nabuse@ z\n1.2.3 net\nhost.example.com h\n"
                               "* default\n");
  CompileOptions options;
  options.sync = false;
  ASSERT_TRUE(CompileFile(hash, hash + ".moat", options).ok());
  std::string text = dir.Write("text", "Other@Example.com t\n");
  std::string cidr = dir.Write("cidr", "10.0.0.0/8 OK\n2001:db8::/32 OK6\n");
  absl::StatusOr<MapList> list = MapList::Open("hash:" + hash + ", texthash:" + text +
                                               ", cidr:" + cidr + ", static:fallback");
  ASSERT_TRUE(list.ok()) << list.status();
  MapList no_static(std::vector<std::shared_ptr<const Map>>(list->maps().begin(),
                                                            list->maps().end() - 1));
  const std::string long_query(3000, 'q');

  long before = g_allocations.load();
  int hits = 0;
  for (int round = 0; round < 1000; ++round) {
    hits += FindRecipient(*list, "User+Ext@Example.COM", "+-").has_value();
    hits += FindRecipient(no_static, "nobody+x@nowhere.example", "+", true).has_value();
    hits += FindVirtualAlias(no_static, "someone@example.org", "+", false).has_value();
    hits += FindAccessAddress(no_static, "abuse+x@deep.sub.example.net", "+", false).has_value();
    hits += FindDomain(no_static, "a.b.c.example.net", true).has_value();
    hits += FindClient(no_static, "1.2.3.4", "Host.Example.COM", false).has_value();
    hits += FindClient(no_static, "2001:db8::1", "", false).has_value();
    hits += FindClient(no_static, "192.0.2.1", "unknown", false).has_value();
    hits += FindTransport(no_static, "x@y.example.net", "+", false).has_value();
    hits += FindTransport(no_static, "x@nowhere", "+", true).has_value();
    hits += FindKey(no_static, "OTHER@example.com").has_value();
    hits += FindRecipient(*list, long_query, "+").has_value();
    hits += no_static.Find("user@example.com").has_value();
  }
  long after = g_allocations.load();
  log::CaptureForTest(nullptr);
  EXPECT_EQ(after - before, 0) << "heap allocations during 13000 lookups";
  EXPECT_EQ(hits, 10 * 1000) << "the lookups really ran and found what they should";
}

}  // namespace
}  // namespace moat::table
