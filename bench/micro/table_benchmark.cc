// bench/micro/table_benchmark.cc
//
// Lookup tables (core/table) side by side with tinycdb (Debian libcdb-dev, what Postfix's
// cdb: maps use) and an in-memory absl::flat_hash_map (the reference), on the same
// generated keys: realistic recipient addresses ("first.lastN@domainK.example", 25-40
// bytes), 10 million rows by default (MOAT_BENCH_ROWS=1000000 for a quick run).
//
// Back of the envelope: 10 M rows x ~45 bytes of record + 16 M slots x 8 bytes is ~0.6 GB,
// far beyond the caches, so a random lookup costs about two DRAM misses (index slot, then
// record) ~ 2 x 80-100 ns, less when independent lookups overlap. tinycdb needs three
// dependent misses (top table, hash table, record); flat_hash_map two (control bytes and
// slot, then the key bytes). Compile is a sequential parse + append (hundreds of MB/s)
// plus one random index store per row.
//
// Also: BM_MemoryLatencyFloor (what one dependent cache + TLB miss costs on this machine,
// over a buffer as large as the table), BM_Table_HugePages_* (the table read into
// transparent huge pages, OpenOptions::huge_pages) and BM_InlineCellsPrototype_* (a
// one-miss layout, records inline in 64-byte cells: a prototype, not the file format).
// Figures: core/table/README.md.
//
// Each lookup benchmark runs with Arg(0) = independent lookups (throughput: the CPU
// overlaps misses) and Arg(1) = each lookup's query depends on the previous result
// (latency). Queries are in random order. Run:
//   moat_micro_bench --benchmark_filter='Table|Cdb|FlatHashMap' --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true   (one command line)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "core/log/log.h"
#include "core/table/compiled_map.h"
#include "core/table/lookup.h"
#include "core/table/map.h"
#include "core/table/table_builder.h"
#include "xxhash.h"

#ifdef MOAT_HAVE_CDB
#include <cdb.h>
#endif

namespace moat::table {
namespace {

constexpr uint64_t kDefaultRows = 10'000'000;
constexpr size_t kQueriesMax = 1 << 20;
constexpr uint64_t kSmallRows = 1'000'000;

const char* const kFirst[] = {"james", "mary", "john", "patricia", "robert", "jennifer",
                              "michael", "linda", "william", "elizabeth", "david", "barbara",
                              "richard", "susan", "joseph", "jessica", "thomas", "sarah",
                              "charles", "karen", "lena", "jonas", "emma", "lukas", "mia",
                              "noah", "sofia", "elias", "hanna", "paul", "lea", "felix"};
const char* const kLast[] = {"smith", "johnson", "williams", "brown", "jones", "garcia",
                             "miller", "davis", "rodriguez", "martinez", "hernandez", "lopez",
                             "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore",
                             "jackson", "martin", "lee", "perez", "thompson", "white",
                             "mueller", "schmidt", "schneider", "fischer", "weber", "meyer",
                             "wagner", "becker", "schulz", "hoffmann", "koch", "richter"};
constexpr int kFirstCount = sizeof(kFirst) / sizeof(kFirst[0]);
constexpr int kLastCount = sizeof(kLast) / sizeof(kLast[0]);
constexpr int kDomains = 20000;

uint64_t Rows() {
  const char* env = std::getenv("MOAT_BENCH_ROWS");
  return env != nullptr && std::atoll(env) > 0 ? static_cast<uint64_t>(std::atoll(env))
                                               : kDefaultRows;
}

std::string Address(uint64_t i) {
  uint64_t mix = i * 0x9e3779b97f4a7c15ull;
  int sep = static_cast<int>((mix >> 20) % 3);
  return absl::StrFormat("%s%s%s%d@%s%d.example", kFirst[i % kFirstCount],
                         sep == 0 ? "." : sep == 1 ? "_" : "",
                         kLast[(i / kFirstCount) % kLastCount], i / (kFirstCount * kLastCount),
                         (mix >> 40) % 2 == 0 ? "mail" : "mx-corp", (mix >> 8) % kDomains);
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Built once per process, on first use.
struct Fixture {
  std::filesystem::path dir;
  uint64_t rows = 0;
  std::string source;  // "address OK\n" x rows
  std::string source_path;
  std::string small_source_path;  // the first kSmallRows rows
  std::string arena;   // hit queries then miss queries, back to back
  std::vector<std::string_view> hits;
  std::vector<std::string_view> misses;
  std::unique_ptr<Map> map;

  Fixture() {
    log::SetProgramName("table_benchmark");
    rows = Rows();
    char tmpl[] = "/tmp/moat-table-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    auto t0 = std::chrono::steady_clock::now();
    source.reserve(rows * 40);
    std::string small;
    for (uint64_t i = 0; i < rows; ++i) {
      source += Address(i);
      source += " OK\n";
      if (i + 1 == kSmallRows) {
        small = source;
      }
    }
    if (small.empty()) {
      small = source;
    }
    source_path = (dir / "recipients").string();
    small_source_path = (dir / "recipients_small").string();
    WriteFile(source_path, source);
    WriteFile(small_source_path, small);
    std::mt19937_64 rng(20261123);
    size_t queries = std::min<uint64_t>(kQueriesMax, rows);
    std::vector<std::pair<size_t, size_t>> spans;
    for (size_t q = 0; q < queries; ++q) {
      std::string a = Address(rng() % rows);
      spans.emplace_back(arena.size(), a.size());
      arena += a;
    }
    for (size_t q = 0; q < queries; ++q) {
      std::string a("x");  // never in the table
      a += Address(rng() % rows);
      spans.emplace_back(arena.size(), a.size());
      arena += a;
    }
    for (size_t q = 0; q < spans.size(); ++q) {
      std::string_view v(arena.data() + spans[q].first, spans[q].second);
      (q < queries ? hits : misses).push_back(v);
    }
    auto t1 = std::chrono::steady_clock::now();
    CompileOptions options;
    options.sync = false;
    auto stats = CompileFile(source_path, source_path + ".moat", options);
    if (!stats.ok() || !CompileFile(small_source_path, small_source_path + ".moat", options).ok()) {
      log::Fatal("compile failed: %s", stats.status().ToString());
    }
    auto opened = OpenMap("hash:" + source_path);
    if (!opened.ok()) {
      log::Fatal("open failed: %s", opened.status().ToString());
    }
    map = std::move(*opened);
    auto t2 = std::chrono::steady_clock::now();
    log::Info("fixture: %d rows generated in %.1f s, compiled and opened in %.1f s (%s)", rows,
              Seconds(t1 - t0), Seconds(t2 - t1), dir.string());
  }
  ~Fixture() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  static void WriteFile(const std::string& path, const std::string& bytes) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    size_t done = 0;
    while (fd >= 0 && done < bytes.size()) {
      ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
      if (n <= 0) {
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (fd < 0 || done != bytes.size()) {
      log::Fatal("write %s failed", path);
    }
    close(fd);
  }
};

Fixture* g_fixture = nullptr;

// The fixtures live until exit (the maps view into them); the temporary folder (~1.5 GB
// at 10 M rows) is removed at exit.
Fixture& F() {
  if (g_fixture == nullptr) {
    g_fixture = new Fixture();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(g_fixture->dir, ec);
    });
  }
  return *g_fixture;
}

// Runs `find(query) -> std::optional<std::string_view>` over `queries`. With dependent
// lookups the next query's index depends on the previous result (a pointer bit that is
// always zero, which the compiler cannot know), so misses cannot overlap.
template <typename FindFn>
void RunLookups(benchmark::State& state, const std::vector<std::string_view>& queries,
                bool expect_hit, FindFn find) {
  const bool dependent = state.range(0) != 0;
  const size_t mask = queries.size() - 1;  // a power of two (or rows < kQueriesMax)
  size_t i = 0;
  uint64_t found = 0;
  for (auto _ : state) {
    std::optional<std::string_view> v = find(queries[i & mask]);
    found += v.has_value();
    size_t step = 1;
    if (dependent) {
      step += v ? (reinterpret_cast<uintptr_t>(v->data()) >> 63) : 0;
    }
    benchmark::DoNotOptimize(v);
    i += step;
  }
  if (found != (expect_hit ? static_cast<uint64_t>(state.iterations()) : 0)) {
    state.SkipWithError("unexpected lookup result");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetLabel(dependent ? "latency (dependent)" : "throughput (independent)");
}

void BM_Table_FindHit(benchmark::State& state) {
  Fixture& f = F();
  RunLookups(state, f.hits, true, [&](std::string_view q) { return f.map->Find(q); });
}
void BM_Table_FindMiss(benchmark::State& state) {
  Fixture& f = F();
  RunLookups(state, f.misses, false, [&](std::string_view q) { return f.map->Find(q); });
}
// The full relay_recipient_maps path: fold into a stack buffer, then the Postfix order
// (a miss tries user@domain, user@, @domain: 3 probes).
void BM_Table_FindRecipientHit(benchmark::State& state) {
  Fixture& f = F();
  MapList list({std::shared_ptr<const Map>(f.map.get(), [](const Map*) {})});
  RunLookups(state, f.hits, true, [&](std::string_view q) -> std::optional<std::string_view> {
    auto m = FindRecipient(list, q, "+");
    return m ? std::optional<std::string_view>(m->value) : std::nullopt;
  });
}
void BM_Table_FindRecipientMiss(benchmark::State& state) {
  Fixture& f = F();
  MapList list({std::shared_ptr<const Map>(f.map.get(), [](const Map*) {})});
  RunLookups(state, f.misses, false, [&](std::string_view q) -> std::optional<std::string_view> {
    auto m = FindRecipient(list, q, "+");
    return m ? std::optional<std::string_view>(m->value) : std::nullopt;
  });
}

void BM_Table_Compile(benchmark::State& state) {
  Fixture& f = F();
  const bool small = state.range(0) != 0;
  const std::string& source = small ? f.small_source_path : f.source_path;
  CompileStats stats;
  for (auto _ : state) {
    CompileOptions options;  // fsync on, as moat postmap does
    auto result = CompileFile(source, (f.dir / "compiled.moat").string(), options);
    if (!result.ok()) {
      state.SkipWithError("compile failed");
      return;
    }
    stats = *result;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stats.rows));
  state.counters["rows"] = static_cast<double>(stats.rows);
  state.counters["file_MB"] = static_cast<double>(stats.file_bytes) / 1e6;
  state.counters["bytes_per_row"] =
      static_cast<double>(stats.file_bytes) / static_cast<double>(stats.rows);
}

// Open (mmap + validate) and close. Arg 0: rows (0 = all, 1 = kSmallRows); arg 1: 0 = header
// checks only (O(1)), 1 = + index checksum (default), 2 = + MAP_POPULATE.
void BM_Table_Open(benchmark::State& state) {
  Fixture& f = F();
  const std::string& path = state.range(0) != 0 ? f.small_source_path : f.source_path;
  OpenOptions options;
  options.verify_index = state.range(1) >= 1;
  options.populate = state.range(1) == 2;
  uint64_t rows = 0;
  for (auto _ : state) {
    auto map = OpenMap("hash:" + path, options);
    if (!map.ok()) {
      state.SkipWithError("open failed");
      return;
    }
    rows = (*map)->size();
  }
  state.counters["rows"] = static_cast<double>(rows);
  state.SetLabel(state.range(1) == 0   ? "header only"
                 : state.range(1) == 1 ? "verify index"
                                       : "verify index + MAP_POPULATE");
}

// absl::flat_hash_map<string_view, string_view> over the source text: the in-memory
// reference (no file, nothing to load, ~2x the memory).
struct HashMapFixture {
  absl::flat_hash_map<std::string_view, std::string_view> map;
  double build_seconds = 0;
  HashMapFixture() {
    Fixture& f = F();
    auto t0 = std::chrono::steady_clock::now();
    map.reserve(f.rows);
    std::string_view s = f.source;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t nl = s.find('\n', pos);
      size_t space = s.find(' ', pos);
      map.emplace(s.substr(pos, space - pos), s.substr(space + 1, nl - space - 1));
      pos = nl + 1;
    }
    build_seconds = Seconds(std::chrono::steady_clock::now() - t0);
  }
};
HashMapFixture& H() {
  static HashMapFixture* fixture = new HashMapFixture();
  return *fixture;
}

std::optional<std::string_view> FlatFind(std::string_view q) {
  auto& m = H().map;
  auto it = m.find(q);
  return it == m.end() ? std::nullopt : std::optional<std::string_view>(it->second);
}
void BM_FlatHashMap_FindHit(benchmark::State& state) {
  H();
  RunLookups(state, F().hits, true, FlatFind);
  state.counters["build_rows_per_s"] = static_cast<double>(F().rows) / H().build_seconds;
}
void BM_FlatHashMap_FindMiss(benchmark::State& state) {
  H();
  RunLookups(state, F().misses, false, FlatFind);
}

// The memory latency floor: a pointer chase (each load's address is the previous load's
// value) in random order over a buffer as large as the compiled table, one load per
// 64-byte line. It is what ONE cache miss + TLB miss costs here, so a lookup that needs two
// dependent misses (index slot, then record) cannot be faster than twice this. Arg 0:
// 4 KiB pages (what a file mapping of the page cache gets); Arg 1: transparent huge pages
// (2 MiB), which take the page walk out.
struct ChaseBuffer {
  uint32_t* lines = nullptr;  // 16 x uint32 per 64-byte line; lines[16 * i] = next line
  size_t bytes = 0;
  size_t line_count = 0;
  explicit ChaseBuffer(bool huge) {
    Fixture& f = F();
    struct stat st;
    bytes = stat((f.source_path + ".moat").c_str(), &st) == 0
                ? static_cast<size_t>(st.st_size)
                : size_t{512} << 20;
    bytes = (bytes + (size_t{2} << 20) - 1) & ~((size_t{2} << 20) - 1);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      log::Fatal("mmap %d bytes failed", bytes);
    }
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    lines = static_cast<uint32_t*>(p);
    line_count = bytes / 64;
    // Sattolo's algorithm: a random permutation that is one single cycle.
    std::vector<uint32_t> next(line_count);
    for (size_t i = 0; i < line_count; ++i) {
      next[i] = static_cast<uint32_t>(i);
    }
    std::mt19937_64 rng(42);
    for (size_t i = line_count - 1; i > 0; --i) {
      std::swap(next[i], next[rng() % i]);
    }
    for (size_t i = 0; i < line_count; ++i) {
      lines[16 * i] = next[i];
    }
  }
};

void BM_MemoryLatencyFloor(benchmark::State& state) {
  static ChaseBuffer* small_pages = new ChaseBuffer(false);
  static ChaseBuffer* huge_pages = new ChaseBuffer(true);
  const ChaseBuffer& b = state.range(0) != 0 ? *huge_pages : *small_pages;
  uint32_t i = 0;
  for (auto _ : state) {
    i = b.lines[16 * static_cast<size_t>(i)];
    benchmark::DoNotOptimize(i);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["buffer_MB"] = static_cast<double>(b.bytes) / 1e6;
  state.SetLabel(state.range(0) != 0 ? "memory latency floor, one dependent miss, 2 MiB pages"
                                     : "memory latency floor, one dependent miss, 4 KiB pages");
}
BENCHMARK(BM_MemoryLatencyFloor)->Arg(0)->Arg(1);

// The same compiled table opened with OpenOptions::huge_pages (what moat serve does): read
// into anonymous memory with transparent huge pages, so a miss costs no 4 KiB page walk.
const Map& HugePageCopy() {
  static const Map* map = [] {
    OpenOptions options;
    options.huge_pages = true;
    auto m = OpenMap("hash:" + F().source_path, options);
    if (!m.ok()) {
      log::Fatal("open with huge_pages: %s", m.status().ToString());
    }
    return m->release();
  }();
  return *map;
}
void BM_Table_HugePages_FindHit(benchmark::State& state) {
  const Map& m = HugePageCopy();
  RunLookups(state, F().hits, true, [&](std::string_view q) { return m.Find(q); });
}
void BM_Table_HugePages_FindMiss(benchmark::State& state) {
  const Map& m = HugePageCopy();
  RunLookups(state, F().misses, false, [&](std::string_view q) { return m.Find(q); });
}
BENCHMARK(BM_Table_HugePages_FindHit)->Arg(0)->Arg(1);
BENCHMARK(BM_Table_HugePages_FindMiss)->Arg(0)->Arg(1);

// PROTOTYPE (not the file format): the one-miss layout. Open addressing over 64-byte cells
// that hold the record inline ([1][key_bytes][value_bytes][key][value], records up to 61
// bytes; all benchmark rows fit), so a lookup touches one line (plus the next on a probe).
// Costs ~2x the file size (16 M cells x 64 B for 10 M rows). Range 1 picks the pages:
// 0 = 4 KiB, 1 = 2 MiB (range 0: independent / dependent, as everywhere).
struct InlineCells {
  char* cells = nullptr;
  uint64_t mask = 0;
  uint64_t seed = 0x243f6a8885a308d3ull;
  explicit InlineCells(bool huge) {
    Fixture& f = F();
    uint64_t count = std::bit_ceil(f.rows + f.rows / 2 + 1);
    size_t bytes = count * 64;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      log::Fatal("mmap failed");
    }
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    cells = static_cast<char*>(p);
    mask = count - 1;
    std::string_view s = f.source;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t nl = s.find('\n', pos);
      size_t space = s.find(' ', pos);
      std::string_view key = s.substr(pos, space - pos);
      std::string_view value = s.substr(space + 1, nl - space - 1);
      pos = nl + 1;
      if (key.size() + value.size() > 61) {
        log::Fatal("row too long for the prototype");
      }
      uint64_t i = XXH3_64bits_withSeed(key.data(), key.size(), seed) & mask;
      while (cells[i * 64] != 0) {
        i = (i + 1) & mask;
      }
      char* c = cells + i * 64;
      c[0] = 1;
      c[1] = static_cast<char>(key.size());
      c[2] = static_cast<char>(value.size());
      memcpy(c + 3, key.data(), key.size());
      memcpy(c + 3 + key.size(), value.data(), value.size());
    }
  }
  std::optional<std::string_view> Find(std::string_view key) const {
    uint64_t i = XXH3_64bits_withSeed(key.data(), key.size(), seed) & mask;
    for (uint64_t probes = 0; probes <= mask; ++probes) {
      const char* c = cells + i * 64;
      if (c[0] == 0) {
        return std::nullopt;
      }
      const auto key_bytes = static_cast<uint8_t>(c[1]);
      if (key_bytes == key.size() && memcmp(c + 3, key.data(), key_bytes) == 0) {
        return std::string_view(c + 3 + key_bytes, static_cast<uint8_t>(c[2]));
      }
      i = (i + 1) & mask;
    }
    return std::nullopt;
  }
};
const InlineCells& Inline(bool huge) {
  static InlineCells* small_pages = nullptr;
  static InlineCells* huge_pages = nullptr;
  InlineCells*& slot = huge ? huge_pages : small_pages;
  if (slot == nullptr) {
    slot = new InlineCells(huge);
  }
  return *slot;
}
void BM_InlineCellsPrototype_FindHit(benchmark::State& state) {
  const InlineCells& t = Inline(state.range(1) != 0);
  RunLookups(state, F().hits, true, [&](std::string_view q) { return t.Find(q); });
  state.SetLabel(absl::StrFormat("%s, %s pages", state.range(0) != 0 ? "latency" : "throughput",
                                 state.range(1) != 0 ? "2 MiB" : "4 KiB"));
}
void BM_InlineCellsPrototype_FindMiss(benchmark::State& state) {
  const InlineCells& t = Inline(state.range(1) != 0);
  RunLookups(state, F().misses, false, [&](std::string_view q) { return t.Find(q); });
  state.SetLabel(absl::StrFormat("%s, %s pages", state.range(0) != 0 ? "latency" : "throughput",
                                 state.range(1) != 0 ? "2 MiB" : "4 KiB"));
}
BENCHMARK(BM_InlineCellsPrototype_FindHit)->ArgsProduct({{0, 1}, {0, 1}});
BENCHMARK(BM_InlineCellsPrototype_FindMiss)->ArgsProduct({{0, 1}, {0, 1}});

#ifdef MOAT_HAVE_CDB
struct CdbFixture {
  struct cdb db;
  int fd = -1;
  double build_seconds = 0;
  uint64_t file_bytes = 0;
  CdbFixture() {
    Fixture& f = F();
    std::string path = (f.dir / "recipients.cdb").string();
    auto t0 = std::chrono::steady_clock::now();
    Build(path);
    build_seconds = Seconds(std::chrono::steady_clock::now() - t0);
    fd = open(path.c_str(), O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    file_bytes = static_cast<uint64_t>(st.st_size);
    if (cdb_init(&db, fd) != 0) {
      log::Fatal("cdb_init failed");
    }
  }
  static void Build(const std::string& path) {
    int out = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    struct cdb_make make;
    cdb_make_start(&make, out);
    std::string_view s = F().source;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t nl = s.find('\n', pos);
      size_t space = s.find(' ', pos);
      cdb_make_add(&make, s.data() + pos, static_cast<unsigned>(space - pos),
                   s.data() + space + 1, static_cast<unsigned>(nl - space - 1));
      pos = nl + 1;
    }
    if (cdb_make_finish(&make) != 0) {
      log::Fatal("cdb_make_finish failed");
    }
    fsync(out);
    close(out);
  }
};
CdbFixture& C() {
  static CdbFixture* fixture = new CdbFixture();
  return *fixture;
}
std::optional<std::string_view> CdbFind(std::string_view q) {
  struct cdb* db = &C().db;
  if (cdb_find(db, q.data(), static_cast<unsigned>(q.size())) <= 0) {
    return std::nullopt;
  }
  const void* data = cdb_getdata(db);
  return std::string_view(static_cast<const char*>(data), cdb_datalen(db));
}
void BM_Cdb_FindHit(benchmark::State& state) {
  C();
  RunLookups(state, F().hits, true, CdbFind);
}
void BM_Cdb_FindMiss(benchmark::State& state) {
  C();
  RunLookups(state, F().misses, false, CdbFind);
}
void BM_Cdb_Make(benchmark::State& state) {
  Fixture& f = F();
  for (auto _ : state) {
    CdbFixture::Build((f.dir / "made.cdb").string());
  }
  struct stat st;
  stat((f.dir / "made.cdb").c_str(), &st);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f.rows));
  state.counters["file_MB"] = static_cast<double>(st.st_size) / 1e6;
  state.counters["bytes_per_row"] = static_cast<double>(st.st_size) / static_cast<double>(f.rows);
}
BENCHMARK(BM_Cdb_FindHit)->Arg(0)->Arg(1);
BENCHMARK(BM_Cdb_FindMiss)->Arg(0)->Arg(1);
BENCHMARK(BM_Cdb_Make)->Iterations(1)->Unit(benchmark::kMillisecond);
#endif

BENCHMARK(BM_Table_FindHit)->Arg(0)->Arg(1);
BENCHMARK(BM_Table_FindMiss)->Arg(0)->Arg(1);
BENCHMARK(BM_Table_FindRecipientHit)->Arg(0)->Arg(1);
BENCHMARK(BM_Table_FindRecipientMiss)->Arg(0)->Arg(1);
BENCHMARK(BM_FlatHashMap_FindHit)->Arg(0)->Arg(1);
BENCHMARK(BM_FlatHashMap_FindMiss)->Arg(0)->Arg(1);
BENCHMARK(BM_Table_Compile)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Table_Open)
    ->ArgsProduct({{0, 1}, {0, 1, 2}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace moat::table
