// core/table/table_builder.h
//
// The table compiler: turns Postfix source text into moat's compiled format (format.h).
// It streams: each entry is appended to the output as it is read, and only 24 bytes per
// row (hash, offset, line) plus the index (8 bytes per slot) are held in memory, so peak
// memory stays well under twice the output size. Duplicate keys are warned about with
// both line numbers and the FIRST value is kept, as postmap(1) does.
//
// A file is written to a temporary file in the target's folder, fsynced, then renamed
// over the target (and the folder fsynced), so readers see the old table or the new one,
// never a partial file.
//
// Control plane only (postmap, reload, texthash loading); not thread-safe. The source is
// untrusted text (see SourceReader).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moat::table {

struct CompileOptions {
  bool fold_keys = true;  // lower-case keys as Postfix does for hash tables
  bool sync = true;       // fsync the file and its folder (off only in tests)
  uint64_t hash_seed = 0;  // 0 = a fresh random seed
};

struct CompileStats {
  uint64_t rows = 0;        // distinct keys in the table
  uint64_t duplicates = 0;  // entries dropped because their key came earlier
  uint64_t bad_lines = 0;   // lines skipped with a warning
  uint64_t lines = 0;       // physical source lines read
  uint64_t file_bytes = 0;
};

// Where compiled bytes go: a file or a memory buffer.
class TableSink {
 public:
  virtual ~TableSink() = default;
  virtual absl::Status Append(const char* data, size_t n) = 0;
  virtual absl::Status ReadAt(uint64_t offset, size_t n, char* out) = 0;
  virtual absl::Status WriteAt(uint64_t offset, const char* data, size_t n) = 0;
  virtual uint64_t size() const = 0;
};

// Builds one table into a sink. Usage: Add() every entry, then Finish() once.
class TableBuilder {
 public:
  // REQUIRES: sink is empty and outlives the builder. `source_name` is used in warnings.
  TableBuilder(TableSink* sink, std::string source_name, uint64_t hash_seed, bool keys_folded);
  ~TableBuilder();
  TableBuilder(const TableBuilder&) = delete;
  TableBuilder& operator=(const TableBuilder&) = delete;

  // Capacity hint (e.g. from the source size); optional.
  void Reserve(uint64_t rows);
  // Appends one entry. `line` is only used in duplicate warnings.
  absl::Status Add(std::string_view key, std::string_view value, uint64_t line);
  // Writes the index and the header. Returns rows and duplicates (other fields zero).
  absl::StatusOr<CompileStats> Finish();

 private:
  struct Row {
    uint64_t hash;
    uint64_t offset;
    uint64_t line;
  };
  absl::Status Start();
  absl::StatusOr<std::string> ReadKey(uint64_t offset);

  TableSink* sink_;
  std::string source_name_;
  uint64_t hash_seed_;
  bool keys_folded_;
  bool started_ = false;
  std::vector<Row> rows_;  // alloc: 24 bytes per source entry, the compile's main cost
  void* data_hash_state_;  // XXH3_state_t*, the data checksum
};

// Compiles the source read from `source_fd` into `output_path` (atomic replace).
// Warnings go to moat::log; the result is an error only if nothing was written.
absl::StatusOr<CompileStats> CompileToFile(int source_fd, const std::string& source_name,
                                           const std::string& output_path,
                                           const CompileOptions& options);
// Same, reading the file at `source_path`.
absl::StatusOr<CompileStats> CompileFile(const std::string& source_path,
                                         const std::string& output_path,
                                         const CompileOptions& options);
// Compiles into memory (texthash tables): the bytes of a complete compiled table.
absl::StatusOr<std::string> CompileToMemory(int source_fd, const std::string& source_name,
                                            const CompileOptions& options,
                                            CompileStats* stats);

}  // namespace moat::table
