// Round trips source -> compiler -> FILE.moat -> mmap reader, and the reader's defences:
// truncated, corrupted, foreign and empty files are clear errors, never a crash.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "core/table/compiled_map.h"
#include "core/table/format.h"
#include "core/table/map.h"
#include "core/table/table_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"
#include "xxhash.h"

namespace moat::table {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

class CompiledMapTest : public ::testing::Test {
 protected:
  void SetUp() override { log::CaptureForTest(&log_); }
  void TearDown() override { log::CaptureForTest(nullptr); }

  // Writes `source` to NAME, compiles it to NAME.moat, returns the source path.
  std::string Compile(const std::string& name, const std::string& source,
                      CompileStats* stats = nullptr) {
    std::string path = dir_.Write(name, source);
    CompileOptions options;
    options.sync = false;
    absl::StatusOr<CompileStats> result = CompileFile(path, path + ".moat", options);
    EXPECT_TRUE(result.ok()) << result.status();
    if (stats != nullptr && result.ok()) {
      *stats = *result;
    }
    return path;
  }
  std::unique_ptr<Map> Open(const std::string& path) {
    absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + path);
    EXPECT_TRUE(map.ok()) << map.status();
    return map.ok() ? std::move(*map) : nullptr;
  }
  static std::string ReadAll(const std::string& path) { return testing::ReadFile(path); }
  void WriteAll(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  testing::TempDir dir_;
  std::string log_;
};

TEST_F(CompiledMapTest, RoundTripWithPostfixSourceRules) {
  std::string path = Compile("relay_recipients",
                             "# relay_recipients from the Postfix guide\n"
                             "user1@example.com   x\n"
                             "User2@Example.COM\tOK\n"
                             "@example.net        x\n"
                             "multi  first part\n"
                             "   second part\n"
                             "# a comment between continuation lines\n"
                             "\tthird   \n"
                             "trailing   value with spaces   \r\n"
                             "last-line-without-newline v");
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->size(), 6u);
  EXPECT_THAT(map->Find("user1@example.com"), Optional(std::string_view("x")));
  EXPECT_THAT(map->Find("user2@example.com"), Optional(std::string_view("OK")));
  EXPECT_EQ(map->Find("User2@Example.COM"), std::nullopt) << "Find() takes folded keys";
  EXPECT_THAT(map->Find("@example.net"), Optional(std::string_view("x")));
  EXPECT_THAT(map->Find("multi"), Optional(std::string_view("first part   second part\tthird")));
  EXPECT_THAT(map->Find("trailing"), Optional(std::string_view("value with spaces")));
  EXPECT_THAT(map->Find("last-line-without-newline"), Optional(std::string_view("v")));
  EXPECT_EQ(map->Find("user3@example.com"), std::nullopt);
  EXPECT_EQ(map->Find(""), std::nullopt);
  EXPECT_EQ(log_, "");
}

TEST_F(CompiledMapTest, DuplicateKeysKeepTheFirstValueAndWarnWithLineNumbers) {
  CompileStats stats;
  std::string path = Compile("dups",
                             "Foo@Example.com first\n"
                             "bar one\n"
                             "foo@example.com second\n"
                             "FOO@EXAMPLE.COM third\n",
                             &stats);
  EXPECT_EQ(stats.rows, 2u);
  EXPECT_EQ(stats.duplicates, 2u);
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(map->Find("foo@example.com"), Optional(std::string_view("first")));
  EXPECT_THAT(log_, HasSubstr("dups, line 3: duplicate entry: \"foo@example.com\" (first at "
                              "line 1, which is kept)"));
  EXPECT_THAT(log_, HasSubstr("dups, line 4: duplicate entry"));
}

TEST_F(CompiledMapTest, BadLinesAreWarnedWithLineNumbersAndSkipped) {
  CompileStats stats;
  std::string path = Compile("bad",
                             "  leading white space\n"
                             "good value\n"
                             "novalue\n"
                             "novalue2   \n",
                             &stats);
  EXPECT_EQ(stats.rows, 1u);
  EXPECT_EQ(stats.bad_lines, 3u);
  EXPECT_THAT(log_, HasSubstr("bad, line 1: logical line must not start with whitespace"));
  EXPECT_THAT(log_, HasSubstr("bad, line 3: expected format: key whitespace value"));
  EXPECT_THAT(log_, HasSubstr("bad, line 4: expected format: key whitespace value"));
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->Find("novalue"), std::nullopt);
  EXPECT_THAT(map->Find("good"), Optional(std::string_view("value")));
}

TEST_F(CompiledMapTest, EmptySourceGivesAValidZeroRowTable) {
  for (const char* source : {"", "# only comments\n\n   \n"}) {
    CompileStats stats;
    std::string path = Compile("empty", source, &stats);
    EXPECT_EQ(stats.rows, 0u);
    auto map = Open(path);
    ASSERT_NE(map, nullptr);
    EXPECT_EQ(map->size(), 0u);
    EXPECT_EQ(map->Find("anything"), std::nullopt);
    EXPECT_EQ(map->Find(""), std::nullopt);
  }
}

TEST_F(CompiledMapTest, EightBitAndUtf8KeysRoundTripAndLatin1CapitalsFold) {
  std::string path = Compile("utf8",
                             "KÉY@Exämple.COM utf8-value-ü\n"
                             "\xff\xfe\x80raw bytes\n"
                             "日本@例え.jp japanese\n");
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(map->Find("kéy@exämple.com"), Optional(std::string_view("utf8-value-ü")));
  EXPECT_THAT(map->Find("\xff\xfe\x80raw"), Optional(std::string_view("bytes")));
  EXPECT_THAT(map->Find("日本@例え.jp"), Optional(std::string_view("japanese")));
}

TEST_F(CompiledMapTest, VeryLongKeysAndValues) {
  std::string long_key(100000, 'k');
  std::string long_value(3 << 20, 'v');
  long_value[12345] = 'x';
  std::string path = Compile("long", long_key + " short\nshort " + long_value + "\n");
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(map->Find(long_key), Optional(std::string_view("short")));
  EXPECT_THAT(map->Find("short"), Optional(std::string_view(long_value)));
  EXPECT_EQ(map->Find(long_key.substr(1)), std::nullopt);
}

TEST_F(CompiledMapTest, ManyRowsAllFoundAndMissesMissed) {
  std::string source;
  constexpr int kRows = 200000;
  for (int i = 0; i < kRows; ++i) {
    absl::StrAppendFormat(&source, "user%d@domain%d.example value-%d\n", i, i % 97, i);
  }
  CompileStats stats;
  std::string path = Compile("many", source, &stats);
  EXPECT_EQ(stats.rows, static_cast<uint64_t>(kRows));
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  for (int i = 0; i < kRows; ++i) {
    std::string key = absl::StrFormat("user%d@domain%d.example", i, i % 97);
    ASSERT_THAT(map->Find(key), Optional(std::string_view(absl::StrFormat("value-%d", i))))
        << key;
    ASSERT_EQ(map->Find(absl::StrFormat("user%d@domain%d.example", i, i % 97 + 1)),
              std::nullopt);
  }
  auto* compiled = dynamic_cast<const CompiledMap*>(map.get());
  ASSERT_NE(compiled, nullptr);
  EXPECT_TRUE(compiled->VerifyData().ok());
  uint64_t seen = 0;
  compiled->ForEach([&](std::string_view, std::string_view) { ++seen; });
  EXPECT_EQ(seen, static_cast<uint64_t>(kRows));
}

// OpenOptions::huge_pages reads the file into anonymous (THP) memory: the same answers,
// the same validation, and the copy does not change when the file is replaced.
TEST_F(CompiledMapTest, HugePageCopyAnswersAsTheMappingAndValidatesTheSame) {
  std::string source;
  constexpr int kRows = 20000;
  for (int i = 0; i < kRows; ++i) {
    absl::StrAppendFormat(&source, "user%d@domain%d.example value-%d\n", i, i % 97, i);
  }
  std::string path = Compile("huge", source);
  OpenOptions options;
  options.huge_pages = true;
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + path, options);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ((*map)->size(), static_cast<uint64_t>(kRows));
  for (int i = 0; i < kRows; i += 7) {
    ASSERT_THAT((*map)->Find(absl::StrFormat("user%d@domain%d.example", i, i % 97)),
                Optional(std::string_view(absl::StrFormat("value-%d", i))));
  }
  EXPECT_EQ((*map)->Find("nobody@domain1.example"), std::nullopt);
  auto* compiled = dynamic_cast<const CompiledMap*>(map->get());
  ASSERT_NE(compiled, nullptr);
  EXPECT_TRUE(compiled->VerifyData().ok());
  // Replaced by another table: the copy keeps the old answers.
  Compile("huge", "other value\n");
  EXPECT_THAT((*map)->Find("user0@domain0.example"), Optional(std::string_view("value-0")));
  // A corrupt file is refused exactly as with a mapping.
  std::string bytes = ReadAll(path + ".moat");
  bytes[bytes.size() - 1] = static_cast<char>(bytes[bytes.size() - 1] ^ 1);
  WriteAll(dir_.path() + "/bad.moat", bytes);
  absl::StatusOr<std::unique_ptr<Map>> bad = OpenMap("hash:" + dir_.path() + "/bad", options);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("index checksum mismatch"));
  WriteAll(dir_.path() + "/bad.moat", bytes.substr(0, 4096 + 10));
  EXPECT_FALSE(OpenMap("hash:" + dir_.path() + "/bad", options).ok());
}

TEST_F(CompiledMapTest, FileIsPageAlignedWithValidHeader) {
  std::string path = Compile("layout", "a b\nc d\n");
  std::string bytes = ReadAll(path + ".moat");
  ASSERT_GE(bytes.size(), kPageBytes);
  FileHeader h;
  memcpy(&h, bytes.data(), sizeof(h));
  EXPECT_EQ(h.data_offset, kPageBytes);
  EXPECT_EQ(std::string_view(h.magic, 8), std::string_view(kMagic, 8));
  EXPECT_EQ(h.version, kFormatVersion);
  EXPECT_EQ(h.row_count, 2u);
  EXPECT_EQ(h.file_bytes, bytes.size());
  EXPECT_EQ(h.index_offset % kPageBytes, 0u);
  EXPECT_NE(h.hash_seed, 0u);
}

TEST_F(CompiledMapTest, MissingFileIsAClearError) {
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + dir_.path() + "/nope");
  ASSERT_FALSE(map.ok());
  EXPECT_THAT(std::string(map.status().message()),
              HasSubstr("open database " + dir_.path() + "/nope.moat: No such file"));
}

TEST_F(CompiledMapTest, EmptyAndForeignFilesAreRejected) {
  std::string empty = dir_.Write("empty.moat", "");
  std::string text = dir_.Write("text.moat", std::string(10000, 'a'));
  for (const std::string& p : {empty, text}) {
    absl::StatusOr<std::unique_ptr<Map>> map =
        OpenMap("hash:" + p.substr(0, p.size() - 5));
    ASSERT_FALSE(map.ok()) << p;
    EXPECT_EQ(map.status().code(), absl::StatusCode::kDataLoss) << map.status();
  }
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + text.substr(0, text.size() - 5));
  EXPECT_THAT(std::string(map.status().message()), HasSubstr("not a moat table"));
}

TEST_F(CompiledMapTest, TruncatedFilesAreRejectedAtEverySize) {
  std::string source;
  for (int i = 0; i < 2000; ++i) {
    absl::StrAppendFormat(&source, "key%d value%d\n", i, i);
  }
  std::string path = Compile("trunc", source);
  std::string bytes = ReadAll(path + ".moat");
  std::string cut = dir_.path() + "/cut";
  std::vector<size_t> sizes = {0, 1, 100, kPageBytes - 1, kPageBytes, kPageBytes + 1,
                               bytes.size() / 2, bytes.size() - kPageBytes, bytes.size() - 1};
  for (size_t size : sizes) {
    WriteAll(cut + ".moat", bytes.substr(0, size));
    absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + cut);
    ASSERT_FALSE(map.ok()) << size;
    EXPECT_EQ(map.status().code(), absl::StatusCode::kDataLoss) << size << map.status();
  }
  WriteAll(cut + ".moat", bytes + "extra");
  EXPECT_FALSE(OpenMap("hash:" + cut).ok());
}

TEST_F(CompiledMapTest, CorruptHeaderAndIndexAreRejected) {
  std::string path = Compile("corrupt", "a b\nc d\ne f\n");
  std::string bytes = ReadAll(path + ".moat");
  FileHeader h;
  memcpy(&h, bytes.data(), sizeof(h));
  std::string bad = dir_.path() + "/bad";
  // One flipped bit anywhere in the header or the index is detected.
  std::vector<size_t> positions;
  for (size_t i = 0; i < sizeof(FileHeader); ++i) {
    positions.push_back(i);
  }
  for (size_t i = h.index_offset; i < bytes.size(); i += 7) {
    positions.push_back(i);
  }
  for (size_t pos : positions) {
    std::string copy = bytes;
    copy[pos] = static_cast<char>(copy[pos] ^ 0x10);
    WriteAll(bad + ".moat", copy);
    absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + bad);
    ASSERT_FALSE(map.ok()) << "flipped byte " << pos;
  }
  // A data byte is not checked at open (that would be O(size)), but VerifyData finds it
  // and lookups stay in bounds.
  std::string copy = bytes;
  copy[h.data_offset] = static_cast<char>(copy[h.data_offset] ^ 0x7f);
  WriteAll(bad + ".moat", copy);
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + bad);
  ASSERT_TRUE(map.ok()) << map.status();
  auto* compiled = dynamic_cast<const CompiledMap*>(map->get());
  ASSERT_NE(compiled, nullptr);
  EXPECT_FALSE(compiled->VerifyData().ok());
  for (const char* key : {"a", "c", "e", "x"}) {
    (void)(*map)->Find(key);
  }
}

// Random damage to a valid file, header checksum re-sealed so the damage reaches the size
// checks and the lookups: Open() either refuses or lookups work without reading out of
// bounds (ASan would report). Also with the index check off.
TEST_F(CompiledMapTest, RandomCorruptionNeverCrashes) {
  std::string source;
  for (int i = 0; i < 300; ++i) {
    absl::StrAppendFormat(&source, "key%d value%d\n", i, i);
  }
  std::string path = Compile("fuzz", source);
  const std::string bytes = ReadAll(path + ".moat");
  std::string bad = dir_.path() + "/fuzzed";
  std::mt19937_64 rng(42);
  OpenOptions unverified;
  unverified.verify_index = false;
  int opened = 0;
  for (int round = 0; round < 400; ++round) {
    std::string copy = bytes;
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) {
      size_t pos = rng() % copy.size();
      if (round % 2 == 0) {
        pos = rng() % sizeof(FileHeader);
      }
      copy[pos] = static_cast<char>(rng());
    }
    FileHeader h;
    memcpy(&h, copy.data(), sizeof(h));
    h.header_checksum = XXH3_64bits(&h, offsetof(FileHeader, header_checksum));
    memcpy(copy.data(), &h, sizeof(h));
    WriteAll(bad + ".moat", copy);
    for (const OpenOptions& options : {OpenOptions{}, unverified}) {
      absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("hash:" + bad, options);
      if (!map.ok()) {
        continue;
      }
      ++opened;
      for (int i = 0; i < 310; i += 3) {
        (void)(*map)->Find(absl::StrFormat("key%d", i));
      }
    }
  }
  EXPECT_GT(opened, 0) << "some damage (in data or the index, unverified) still opens";
}

TEST_F(CompiledMapTest, RecompileReplacesAtomicallyAndOldMappingStaysValid) {
  std::string path = Compile("swap", "k old\n");
  auto old_map = Open(path);
  ASSERT_NE(old_map, nullptr);
  std::string_view old_value = *old_map->Find("k");
  Compile("swap", "k new\n");
  auto new_map = Open(path);
  ASSERT_NE(new_map, nullptr);
  EXPECT_THAT(new_map->Find("k"), Optional(std::string_view("new")));
  EXPECT_EQ(old_value, "old") << "the old inode stays mapped and intact";
  // No temporary files are left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2);  // swap, swap.moat
}

TEST_F(CompiledMapTest, SourceNewerThanCompiledFileWarns) {
  std::string path = Compile("stale", "k v\n");
  struct timespec times[2] = {{0, UTIME_OMIT}, {0, 0}};
  clock_gettime(CLOCK_REALTIME, &times[1]);
  times[1].tv_sec += 10;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  log_.clear();
  auto map = Open(path);
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(log_, HasSubstr("database " + path + ".moat is older than source file " + path));
  Compile("stale", "k v\n");
  times[1].tv_sec -= 20;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  log_.clear();
  map = Open(path);
  EXPECT_EQ(log_, "");
}

TEST_F(CompiledMapTest, AllCompiledTypesAndProxyResolveToTheSameFile) {
  std::string path = Compile("types", "k v\n");
  for (const char* type : {"hash:", "btree:", "cdb:", "lmdb:", "proxy:hash:", "proxy:btree:"}) {
    absl::StatusOr<std::unique_ptr<Map>> map = OpenMap(type + path);
    ASSERT_TRUE(map.ok()) << type << map.status();
    EXPECT_THAT((*map)->Find("k"), Optional(std::string_view("v"))) << type;
  }
  absl::StatusOr<std::unique_ptr<Map>> proxied = OpenMap("proxy:hash:" + path);
  ASSERT_TRUE(proxied.ok());
  EXPECT_EQ((*proxied)->spec(), "hash:" + path);
  EXPECT_EQ(OpenMap("regexp:" + path).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(OpenMap(path).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CompiledMapTest, TexthashCompilesInMemoryFromTheSource) {
  std::string path = dir_.Write("text", "Key Value\nother  x\n");
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("texthash:" + path);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_THAT((*map)->Find("key"), Optional(std::string_view("Value")));
  EXPECT_EQ((*map)->size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(path + ".moat"));
}

TEST_F(CompiledMapTest, StaticMapAnswersEveryKey) {
  absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("static:smtp:[10.0.0.1]:25");
  ASSERT_TRUE(map.ok());
  EXPECT_THAT((*map)->Find("anything"), Optional(std::string_view("smtp:[10.0.0.1]:25")));
}

TEST_F(CompiledMapTest, CompileFromAPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string text = "piped@example.com OK\n";
  ASSERT_EQ(write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fds[1]);
  std::string out = dir_.path() + "/piped.moat";
  CompileOptions options;
  absl::StatusOr<CompileStats> stats = CompileToFile(fds[0], "stdin", out, options);
  close(fds[0]);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->rows, 1u);
  auto map = Open(dir_.path() + "/piped");
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(map->Find("piped@example.com"), Optional(std::string_view("OK")));
}

}  // namespace
}  // namespace moat::table
