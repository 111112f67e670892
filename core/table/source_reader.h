// core/table/source_reader.h
//
// Reads Postfix's table source format as postmap(1) does, streaming, from a file
// descriptor: one `key whitespace value` entry per logical line; `#` comment lines and
// empty lines are skipped; a line that starts with whitespace continues the previous
// logical line (the newline is dropped, the leading whitespace kept); trailing whitespace
// is removed from the value. Bad lines are warned about through moat::log with the file
// name and line number, with Postfix's wording, and skipped:
//
//   FILE, line N: expected format: key whitespace value
//   FILE, line N: logical line must not start with whitespace: "..."
//
// Control plane only (postmap, table loading). Not thread-safe: one reader per thread.
// Parses untrusted input (any bytes); logical lines are limited to kLineBytesMax.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace moat::table {

struct SourceEntry {
  std::string_view key;    // folded when the reader folds keys
  std::string_view value;  // never empty when values are required
  uint64_t line = 0;       // line number where the logical line starts (1-based)
};

class SourceReader {
 public:
  static constexpr size_t kLineBytesMax = 64u << 20;

  // Reads from `fd` (not owned, not closed). `name` is used in messages. With
  // require_value false, a line with a key alone is returned with an empty value (cidr
  // tables use that for `endif`).
  SourceReader(int fd, std::string name, bool fold_keys, bool require_value = true);

  // Returns true and fills *entry (views valid until the next call) or false at the end of
  // input or on a read error (then status() says which).
  bool Next(SourceEntry* entry);
  const absl::Status& status() const { return status_; }
  uint64_t bad_lines() const { return bad_lines_; }
  uint64_t physical_lines() const { return line_; }

 private:
  // Next physical line without its newline; false at EOF or error.
  bool ReadLine(std::string_view* line);
  // Parses pending_ into *entry; false (after a warning) if it has no value.
  bool ParsePending(SourceEntry* entry);

  int fd_;
  std::string name_;
  bool fold_keys_;
  bool require_value_;
  absl::Status status_;
  std::string buffer_;  // alloc: read buffer, kReadBytes plus the longest physical line
  size_t begin_ = 0;    // unread bytes are buffer_[begin_, end_)
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t line_ = 0;
  uint64_t bad_lines_ = 0;
  std::string current_;  // the logical line being assembled
  uint64_t current_line_ = 0;
  bool have_current_ = false;
  std::string pending_;  // the completed logical line handed out by Next()
  uint64_t pending_line_ = 0;
};

}  // namespace moat::table
