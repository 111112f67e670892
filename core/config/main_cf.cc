// core/config/main_cf.cc: see main_cf.h.
#include "core/config/main_cf.h"

#include <string>

#include "absl/strings/str_format.h"

namespace moat::config {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

struct LogicalLine {
  std::string text;
  int line = 0;
};

// Turns one logical line into an entry, or reports why it cannot be one.
void FinishLogicalLine(const LogicalLine& logical, const std::string& file_name,
                       Diagnostics& diagnostics, std::vector<MainCfEntry>& entries) {
  std::string_view text = logical.text;
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    diagnostics.Error(file_name, logical.line,
                      absl::StrFormat("missing \"=\" after parameter name in \"%s\"",
                                      std::string(Trim(text).substr(0, 60))));
    return;
  }
  std::string_view name = Trim(text.substr(0, eq));
  std::string_view value = Trim(text.substr(eq + 1));
  if (name.empty()) {
    diagnostics.Error(file_name, logical.line, "missing parameter name before \"=\"");
    return;
  }
  if (!IsValidParameterName(name)) {
    diagnostics.Error(file_name, logical.line,
                      absl::StrFormat("bad parameter name \"%s\"", std::string(name)));
    return;
  }
  entries.push_back({std::string(name), std::string(value), logical.line});
}

}  // namespace

bool IsValidParameterName(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::vector<MainCfEntry> ParseMainCf(std::string_view text, const std::string& file_name,
                                     Diagnostics& diagnostics) {
  std::vector<MainCfEntry> entries;
  LogicalLine current;
  bool have_current = false;
  int line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;

    std::string_view trimmed = Trim(line);
    if (trimmed.empty() || trimmed.front() == '#') {
      continue;  // comments and blank lines neither start nor end a logical line
    }
    if (line.find('\0') != std::string_view::npos) {
      diagnostics.Error(file_name, line_number, "NUL character in line");
      continue;
    }
    if (IsSpace(line.front())) {
      if (!have_current) {
        diagnostics.Error(file_name, line_number,
                          "continuation line (starts with white space) without a parameter "
                          "before it");
        continue;
      }
      // Join with one space: the line break and indentation are white space to every reader
      // of the value (lists, restrictions), and a banner never wants a newline.
      while (!current.text.empty() && IsSpace(current.text.back())) {
        current.text.pop_back();
      }
      current.text.push_back(' ');
      current.text.append(trimmed);
      continue;
    }
    if (have_current) {
      FinishLogicalLine(current, file_name, diagnostics, entries);
    }
    current.text.assign(line);
    current.line = line_number;
    have_current = true;
  }
  if (have_current) {
    FinishLogicalLine(current, file_name, diagnostics, entries);
  }
  return entries;
}

}  // namespace moat::config
