// core/config/diagnostic.cc: see diagnostic.h.
#include "core/config/diagnostic.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace moat::config {

std::string Diagnostic::ToString() const {
  if (line > 0) {
    return absl::StrFormat("%s:%d: %s", file, line, message);
  }
  return absl::StrFormat("%s: %s", file, message);
}

void Diagnostics::Warning(const std::string& file, int line, std::string message) {
  items_.push_back({Diagnostic::Severity::kWarning, file, line, std::move(message)});
}

void Diagnostics::Error(const std::string& file, int line, std::string message) {
  items_.push_back({Diagnostic::Severity::kError, file, line, std::move(message)});
}

void Diagnostics::Append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

void Diagnostics::SortByLine(const std::string& main_file) {
  std::stable_sort(items_.begin(), items_.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    bool a_other = a.file != main_file;
    bool b_other = b.file != main_file;
    if (a_other != b_other) {
      return b_other;
    }
    return !a_other && a.line < b.line;
  });
}

int Diagnostics::errors() const {
  int n = 0;
  for (const Diagnostic& d : items_) {
    n += d.IsError() ? 1 : 0;
  }
  return n;
}

int Diagnostics::warnings() const { return static_cast<int>(items_.size()) - errors(); }

}  // namespace moat::config
