// core/table/source_reader.cc: Postfix source-format reader (see source_reader.h).
#include "core/table/source_reader.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "core/table/fold.h"

namespace moat::table {
namespace {

constexpr size_t kReadBytes = 1u << 20;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string Printable(std::string_view s) {
  constexpr size_t kShownBytesMax = 100;
  std::string out(s.substr(0, kShownBytesMax));
  if (s.size() > kShownBytesMax) {
    out += "...";
  }
  return out;
}

}  // namespace

SourceReader::SourceReader(int fd, std::string name, bool fold_keys, bool require_value)
    : fd_(fd), name_(std::move(name)), fold_keys_(fold_keys), require_value_(require_value) {
  buffer_.resize(kReadBytes);
}

bool SourceReader::ReadLine(std::string_view* line) {
  while (true) {
    if (begin_ < end_) {
      const char* start = buffer_.data() + begin_;
      const void* nl = memchr(start, '\n', end_ - begin_);
      if (nl != nullptr) {
        size_t n = static_cast<const char*>(nl) - start;
        *line = std::string_view(start, n);
        begin_ += n + 1;
        ++line_;
        return true;
      }
      if (eof_) {  // last line without a newline
        *line = std::string_view(start, end_ - begin_);
        begin_ = end_;
        ++line_;
        return true;
      }
    } else if (eof_) {
      return false;
    }
    // Need more bytes: move the partial line to the front, grow if it fills the buffer.
    if (begin_ > 0) {
      memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == buffer_.size()) {
      if (buffer_.size() >= kLineBytesMax) {
        status_ = absl::InvalidArgumentError(absl::StrFormat(
            "%s, line %d: line longer than %d bytes", name_, line_ + 1, kLineBytesMax));
        return false;
      }
      buffer_.resize(buffer_.size() * 2);
    }
    ssize_t got = read(fd_, buffer_.data() + end_, buffer_.size() - end_);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      status_ = absl::InternalError(absl::StrFormat("%s: read: %s", name_, strerror(errno)));
      return false;
    }
    if (got == 0) {
      eof_ = true;
    }
    end_ += static_cast<size_t>(got);
  }
}

bool SourceReader::ParsePending(SourceEntry* entry) {
  std::string_view text = pending_;
  size_t key_end = 0;
  while (key_end < text.size() && !IsSpace(text[key_end])) {
    ++key_end;
  }
  size_t value_begin = key_end;
  while (value_begin < text.size() && IsSpace(text[value_begin])) {
    ++value_begin;
  }
  size_t value_end = text.size();
  while (value_end > value_begin && IsSpace(text[value_end - 1])) {
    --value_end;
  }
  if (value_begin >= value_end && require_value_) {
    ++bad_lines_;
    log::Warning("%s, line %d: expected format: key whitespace value", name_, pending_line_);
    return false;
  }
  if (fold_keys_) {
    FoldCase(pending_.data(), key_end);
  }
  entry->key = std::string_view(pending_.data(), key_end);
  entry->value = value_begin >= value_end ? std::string_view()
                                          : std::string_view(pending_.data() + value_begin,
                                                             value_end - value_begin);
  entry->line = pending_line_;
  return true;
}

bool SourceReader::Next(SourceEntry* entry) {
  if (!status_.ok()) {
    return false;
  }
  std::string_view line;
  while (ReadLine(&line)) {
    size_t first = 0;
    while (first < line.size() && IsSpace(line[first])) {
      ++first;
    }
    if (first < line.size() && line[first] == '#') {
      continue;  // comment lines never end or continue a logical line
    }
    if (first == line.size() || first > 0) {  // empty, white space only, or continuation
      if (have_current_) {
        if (current_.size() + line.size() > kLineBytesMax) {
          status_ = absl::InvalidArgumentError(absl::StrFormat(
              "%s, line %d: logical line longer than %d bytes", name_, current_line_,
              kLineBytesMax));
          return false;
        }
        current_.append(line);
      } else if (first < line.size()) {
        ++bad_lines_;
        log::Warning("%s, line %d: logical line must not start with whitespace: \"%s\"", name_,
                     line_, Printable(line));
      }
      continue;
    }
    // A new logical line starts: the previous one (if any) is complete.
    bool had = have_current_;
    std::swap(pending_, current_);
    pending_line_ = current_line_;
    current_.assign(line);
    current_line_ = line_;
    have_current_ = true;
    if (had && ParsePending(entry)) {
      return true;
    }
  }
  if (!status_.ok()) {
    return false;
  }
  if (have_current_) {
    have_current_ = false;
    std::swap(pending_, current_);
    pending_line_ = current_line_;
    if (ParsePending(entry)) {
      return true;
    }
  }
  return false;
}

}  // namespace moat::table
