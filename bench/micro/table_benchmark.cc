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
// Each lookup benchmark runs with Arg(0) = independent lookups (throughput: the CPU
// overlaps misses) and Arg(1) = each lookup's query depends on the previous result
// (latency). Queries are in random order. Run:
//   moat_micro_bench --benchmark_filter='Table|Cdb|FlatHashMap' --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true   (one command line)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
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
