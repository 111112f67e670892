// core/config/diagnostic.h
//
// One problem found while loading a configuration: a warning or an error, with the file and
// line it came from ("/etc/moat/main.cf:12: ..."). Owned by the config area. Plain value
// type; thread-compatible. Loading collects diagnostics instead of stopping at the first one so
// that `moat check` reports every problem in one run.
#pragma once

#include <string>
#include <vector>

namespace moat::config {

struct Diagnostic {
  enum class Severity { kWarning, kError };

  Severity severity = Severity::kError;
  std::string file;  // the file the problem is in (main.cf or an included /file/name)
  int line = 0;      // 1-based; 0 when the problem has no line (e.g. a default value)
  std::string message;

  bool IsError() const { return severity == Severity::kError; }
  // "FILE:LINE: MESSAGE" (or "FILE: MESSAGE" without a line).
  std::string ToString() const;
};

// Appends diagnostics; a small helper so that parsers share one shape.
class Diagnostics {
 public:
  void Warning(const std::string& file, int line, std::string message);
  void Error(const std::string& file, int line, std::string message);
  void Append(const Diagnostics& other);
  // Stable sort: those in `main_file` first, by line; then the others (included files).
  void SortByLine(const std::string& main_file);

  const std::vector<Diagnostic>& items() const { return items_; }
  int errors() const;
  int warnings() const;
  bool HasErrors() const { return errors() > 0; }

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace moat::config
