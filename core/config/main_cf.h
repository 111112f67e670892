// core/config/main_cf.h
//
// The lexical layer of main.cf, with Postfix's rules (postconf(5) "SYNTAX"):
//   - a logical line starts with non-white-space text and has the form "name = value";
//   - a line that starts with white space continues the current logical line;
//   - empty lines, white-space-only lines and lines whose first non-white-space character is
//     '#' are ignored, and they do not end a logical line (so a comment may sit between
//     continuation lines); '#' elsewhere is part of the value, as in Postfix;
//   - white space around the name, around '=' and at the ends of the value is dropped.
// Nothing is expanded or typed here (see expander.h and config.h). Parses untrusted input
// (an operator's file): every malformed line is a Diagnostic, never a crash. Stateless and
// thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config/diagnostic.h"

namespace moat::config {

struct MainCfEntry {
  std::string name;
  std::string value;  // as written, continuation lines joined with one space
  int line = 0;       // the line the logical line starts on (1-based)
};

// Splits `text` (the contents of `file_name`) into entries in file order. Duplicates are kept
// (the caller decides that the last one wins). Problems are appended to `diagnostics`.
std::vector<MainCfEntry> ParseMainCf(std::string_view text, const std::string& file_name,
                                     Diagnostics& diagnostics);

// True for a valid parameter name: letters, digits and '_'.
bool IsValidParameterName(std::string_view name);

}  // namespace moat::config
