// SourceReader: Postfix's logical-line rules read directly, including from a pipe in
// small pieces, and random bytes (must never crash; run under ASan in the Sanitize build).
#include <unistd.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/log/log.h"
#include "core/table/source_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moat::table {
namespace {

struct Entry {
  std::string key;
  std::string value;
  uint64_t line;
  bool operator==(const Entry&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Entry& e) {
  return os << e.line << ":" << e.key << "=" << e.value;
}

// Feeds `text` through a pipe, `chunk` bytes per write, and collects the entries.
std::vector<Entry> ReadAll(const std::string& text, bool fold, bool require_value,
                           size_t chunk, std::string* log, uint64_t* bad = nullptr) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  std::thread writer([&] {
    for (size_t i = 0; i < text.size(); i += chunk) {
      size_t n = std::min(chunk, text.size() - i);
      EXPECT_EQ(write(fds[1], text.data() + i, n), static_cast<ssize_t>(n));
    }
    close(fds[1]);
  });
  log::CaptureForTest(log);
  std::vector<Entry> entries;
  SourceReader reader(fds[0], "src", fold, require_value);
  SourceEntry e;
  while (reader.Next(&e)) {
    entries.push_back({std::string(e.key), std::string(e.value), e.line});
  }
  log::CaptureForTest(nullptr);
  writer.join();
  close(fds[0]);
  EXPECT_TRUE(reader.status().ok()) << reader.status();
  if (bad != nullptr) {
    *bad = reader.bad_lines();
  }
  return entries;
}

TEST(SourceReaderTest, LogicalLinesAsPostmapReadsThem) {
  const std::string text =
      "# comment\n"
      "Key1 value one\n"
      "  continued\n"
      "\n"
      "   \n"
      "\t# indented comment\n"
      "\tmore\n"
      "key2\tv2\r\n"
      "key3 v3";
  for (size_t chunk : {1, 3, 7, 4096}) {
    std::string log;
    auto entries = ReadAll(text, true, true, chunk, &log);
    ASSERT_EQ(entries.size(), 3u) << chunk;
    EXPECT_EQ(entries[0], (Entry{"key1", "value one  continued   \tmore", 2})) << chunk;
    EXPECT_EQ(entries[1], (Entry{"key2", "v2", 8}));
    EXPECT_EQ(entries[2], (Entry{"key3", "v3", 9}));
    EXPECT_EQ(log, "");
  }
}

TEST(SourceReaderTest, KeysAreFoldedOnlyWhenAsked) {
  std::string log;
  auto folded = ReadAll("MiXeD@ÉXAMPLE.com VaLuE\n", true, true, 100, &log);
  ASSERT_EQ(folded.size(), 1u);
  EXPECT_EQ(folded[0].key, "mixed@éxample.com");
  EXPECT_EQ(folded[0].value, "VaLuE");
  auto kept = ReadAll("MiXeD x\n", false, true, 100, &log);
  EXPECT_EQ(kept[0].key, "MiXeD");
}

TEST(SourceReaderTest, KeyAloneIsSkippedOrReturnedOnRequest) {
  std::string log;
  uint64_t bad = 0;
  auto strict = ReadAll("alone\nk v\nalone2  \n", true, true, 100, &log, &bad);
  EXPECT_EQ(strict.size(), 1u);
  EXPECT_EQ(bad, 2u);
  EXPECT_THAT(log, ::testing::HasSubstr("src, line 1: expected format: key whitespace value"));
  EXPECT_THAT(log, ::testing::HasSubstr("src, line 3: expected format"));
  log.clear();
  auto lax = ReadAll("endif\nk v\n", false, false, 100, &log);
  ASSERT_EQ(lax.size(), 2u);
  EXPECT_EQ(lax[0], (Entry{"endif", "", 1}));
  EXPECT_EQ(log, "");
}

TEST(SourceReaderTest, LongPhysicalLinesAcrossBufferRefills) {
  std::string value(3 << 20, 'v');
  std::string log;
  auto entries = ReadAll("k " + value + "\nnext x\n", true, true, 65536, &log);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].value.size(), value.size());
  EXPECT_EQ(entries[1], (Entry{"next", "x", 2}));
}

TEST(SourceReaderTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(7);
  const char alphabet[] = {' ', '\t', '\n', '\r', '#', 'a', 'B', '\0', '\xc3', '\x80', '\xff'};
  for (int round = 0; round < 200; ++round) {
    std::string text(rng() % 2000, ' ');
    for (char& c : text) {
      c = rng() % 4 == 0 ? static_cast<char>(rng()) : alphabet[rng() % sizeof(alphabet)];
    }
    std::string log;
    auto entries = ReadAll(text, round % 2 == 0, round % 3 != 0, 1 + rng() % 300, &log);
    for (const Entry& e : entries) {
      EXPECT_FALSE(e.key.empty());
      EXPECT_EQ(e.key.find_first_of(" \t\n\r"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace moat::table
