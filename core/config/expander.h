// core/config/expander.h
//
// Postfix's "$name" expansion for main.cf values (postconf(5) "SYNTAX", mac_expand(3)):
//   $name, ${name}, $(name)   the value of name, itself expanded (recursive)
//   ${name?value}             value (expanded) when name's value is non-empty, else nothing
//   ${name:value}             value (expanded) when name's value is empty or undefined
//   ${name?{a}:{b}}           Postfix 3.0's if-then-else form; {value} braces are stripped
//   $$                        a literal '$'
// Like Postfix, the condition looks at the raw value of name. An undefined name expands to
// nothing and is reported to the caller (postconf warns "undefined parameter"). Expansion
// loops (a = $b, b = $a) and nesting deeper than kExpansionDepthMax are errors naming the
// chain. The expander keeps its own explicit stack (no recursion), so hostile input cannot
// exhaust the thread's stack. Parses untrusted input (operator files). Stateless, thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moat::config {

inline constexpr int kExpansionDepthMax = 100;

// Returns the raw (unexpanded) value of a parameter, or nullptr when it is not defined. The
// pointed-to string must stay valid and unchanged during the Expand() call.
using RawLookup = std::function<const std::string*(std::string_view name)>;

// Expands the value of parameter `name` (whose raw value is `raw`). Names found undefined are
// appended to `undefined` (once each). Errors: InvalidArgument with a message such as
// `expansion loop: a -> b -> a` or `unterminated "${" in "${x"`.
absl::StatusOr<std::string> ExpandParameter(std::string_view name, std::string_view raw,
                                            const RawLookup& lookup,
                                            std::vector<std::string>* undefined);

// Every parameter name that `raw` refers to, in any branch of a conditional, as Postfix does to
// decide that a user-defined name is "used". Syntax errors are ignored here (Expand reports them).
std::vector<std::string> ReferencedNames(std::string_view raw);

}  // namespace moat::config
