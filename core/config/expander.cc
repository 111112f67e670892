// core/config/expander.cc: see expander.h.
#include "core/config/expander.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace moat::config {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

struct Reference {
  enum class Kind { kLiteralDollar, kValue, kIfSet, kIfUnset, kIfElse };
  Kind kind = Kind::kValue;
  std::string_view name;
  std::string_view then_text;  // kIfSet, kIfUnset (the value), kIfElse (the "then" part)
  std::string_view else_text;  // kIfElse
  size_t end = 0;              // position just after the reference
};

std::string Snippet(std::string_view text) {
  constexpr size_t kSnippetMax = 60;
  if (text.size() > kSnippetMax) {
    return std::string(text.substr(0, kSnippetMax)) + "...";
  }
  return std::string(text);
}

// Position of the bracket that closes one already opened just before `pos`; npos if none.
size_t FindClose(std::string_view text, size_t pos, char open, char close) {
  int depth = 1;
  for (size_t i = pos; i < text.size(); ++i) {
    if (text[i] == open) {
      ++depth;
    } else if (text[i] == close) {
      if (--depth == 0) {
        return i;
      }
    }
  }
  return std::string_view::npos;
}

// "{x}" -> "x" when the braces enclose the whole text (Postfix 3.0 value syntax).
std::string_view StripBraces(std::string_view text) {
  if (text.size() >= 2 && text.front() == '{' && FindClose(text, 1, '{', '}') == text.size() - 1) {
    return text.substr(1, text.size() - 2);
  }
  return text;
}

absl::Status SyntaxError(std::string_view what, std::string_view text) {
  return absl::InvalidArgumentError(absl::StrFormat("%s in \"%s\"", std::string(what), Snippet(text)));
}

// Parses the reference that starts at text[pos] == '$'.
absl::StatusOr<Reference> ParseReference(std::string_view text, size_t pos) {
  Reference ref;
  size_t p = pos + 1;
  if (p >= text.size()) {
    return SyntaxError("\"$\" at the end of the value (write $$ for a literal $)", text);
  }
  char c = text[p];
  if (c == '$') {
    ref.kind = Reference::Kind::kLiteralDollar;
    ref.end = p + 1;
    return ref;
  }
  if (IsNameChar(c)) {
    size_t q = p;
    while (q < text.size() && IsNameChar(text[q])) {
      ++q;
    }
    ref.name = text.substr(p, q - p);
    ref.end = q;
    return ref;
  }
  if (c != '{' && c != '(') {
    return SyntaxError("bad \"$\" syntax (write $$ for a literal $)", text.substr(pos));
  }
  char open = c;
  char close = c == '{' ? '}' : ')';
  size_t close_pos = FindClose(text, p + 1, open, close);
  if (close_pos == std::string_view::npos) {
    return SyntaxError(absl::StrFormat("unterminated \"$%c\"", open), text.substr(pos));
  }
  std::string_view inner = text.substr(p + 1, close_pos - p - 1);
  ref.end = close_pos + 1;
  size_t q = 0;
  while (q < inner.size() && IsNameChar(inner[q])) {
    ++q;
  }
  ref.name = inner.substr(0, q);
  if (ref.name.empty()) {
    if (!inner.empty() && inner.front() == '{') {
      return SyntaxError("relational expressions \"${{...}}\" are not supported",
                         text.substr(pos));
    }
    return SyntaxError("empty parameter name", text.substr(pos, ref.end - pos));
  }
  if (q == inner.size()) {
    return ref;  // ${name}
  }
  char op = inner[q];
  std::string_view rest = inner.substr(q + 1);
  if (op == ':') {
    ref.kind = Reference::Kind::kIfUnset;
    ref.then_text = StripBraces(rest);
    return ref;
  }
  if (op != '?') {
    return SyntaxError(absl::StrFormat("unexpected \"%c\" after parameter name", op),
                       text.substr(pos, ref.end - pos));
  }
  if (rest.empty() || rest.front() != '{') {
    ref.kind = Reference::Kind::kIfSet;
    ref.then_text = rest;
    return ref;
  }
  // ${name?{then}} or ${name?{then}:{else}}
  size_t then_close = FindClose(rest, 1, '{', '}');
  if (then_close == std::string_view::npos) {
    return SyntaxError("unterminated \"{\"", text.substr(pos, ref.end - pos));
  }
  ref.then_text = rest.substr(1, then_close - 1);
  std::string_view after = rest.substr(then_close + 1);
  if (after.empty()) {
    ref.kind = Reference::Kind::kIfSet;
    return ref;
  }
  if (after.size() >= 3 && after[0] == ':' && after[1] == '{' &&
      FindClose(after, 2, '{', '}') == after.size() - 1) {
    ref.kind = Reference::Kind::kIfElse;
    ref.else_text = after.substr(2, after.size() - 3);
    return ref;
  }
  return SyntaxError("bad \"${name?{value}:{value}}\" syntax", text.substr(pos, ref.end - pos));
}

struct Frame {
  std::string_view text;
  size_t pos = 0;
  std::string out;
  std::string_view name;  // set when this frame expands a parameter's value
};

}  // namespace

absl::StatusOr<std::string> ExpandParameter(std::string_view name, std::string_view raw,
                                            const RawLookup& lookup,
                                            std::vector<std::string>* undefined) {
  auto note_undefined = [undefined](std::string_view n) {
    if (undefined != nullptr &&
        std::find(undefined->begin(), undefined->end(), n) == undefined->end()) {
      undefined->emplace_back(n);
    }
  };
  std::vector<Frame> stack;
  stack.push_back({raw, 0, {}, name});
  // Each turn either consumes text of the top frame, pushes a frame (bounded by
  // kExpansionDepthMax), or pops one, so the loop ends.
  while (true) {
    Frame& top = stack.back();
    size_t dollar = top.text.find('$', top.pos);
    if (dollar == std::string_view::npos) {
      top.out.append(top.text.substr(top.pos));
      std::string done = std::move(top.out);
      stack.pop_back();
      if (stack.empty()) {
        return done;
      }
      stack.back().out.append(done);
      continue;
    }
    top.out.append(top.text.substr(top.pos, dollar - top.pos));
    absl::StatusOr<Reference> ref = ParseReference(top.text, dollar);
    if (!ref.ok()) {
      return ref.status();
    }
    top.pos = ref->end;
    if (ref->kind == Reference::Kind::kLiteralDollar) {
      top.out.push_back('$');
      continue;
    }
    const std::string* value = lookup(ref->name);
    if (value == nullptr) {
      note_undefined(ref->name);
    }
    bool non_empty = value != nullptr && !value->empty();
    std::string_view push_text;
    std::string_view push_name;
    switch (ref->kind) {
      case Reference::Kind::kValue:
        if (value == nullptr) {
          continue;
        }
        push_text = *value;
        push_name = ref->name;
        break;
      case Reference::Kind::kIfSet:
        if (!non_empty) {
          continue;
        }
        push_text = ref->then_text;
        break;
      case Reference::Kind::kIfUnset:
        if (non_empty) {
          continue;
        }
        push_text = ref->then_text;
        break;
      case Reference::Kind::kIfElse:
        push_text = non_empty ? ref->then_text : ref->else_text;
        break;
      case Reference::Kind::kLiteralDollar:
        continue;
    }
    if (!push_name.empty()) {
      for (size_t i = 0; i < stack.size(); ++i) {
        if (stack[i].name != push_name) {
          continue;
        }
        std::string chain;
        for (size_t j = i; j < stack.size(); ++j) {
          if (!stack[j].name.empty()) {
            chain.append(stack[j].name);
            chain.append(" -> ");
          }
        }
        chain.append(push_name);
        return absl::InvalidArgumentError("expansion loop: " + chain);
      }
    }
    if (stack.size() >= static_cast<size_t>(kExpansionDepthMax)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("expansion nested deeper than %d levels", kExpansionDepthMax));
    }
    stack.push_back({push_text, 0, {}, push_name});
  }
}

std::vector<std::string> ReferencedNames(std::string_view raw) {
  std::vector<std::string> names;
  std::vector<std::string_view> work = {raw};
  // Each item pushed is a strict substring of the one being scanned, so this ends.
  while (!work.empty()) {
    std::string_view text = work.back();
    work.pop_back();
    size_t pos = 0;
    while ((pos = text.find('$', pos)) != std::string_view::npos) {
      absl::StatusOr<Reference> ref = ParseReference(text, pos);
      if (!ref.ok()) {
        ++pos;
        continue;
      }
      pos = ref->end;
      if (ref->kind == Reference::Kind::kLiteralDollar) {
        continue;
      }
      if (std::find(names.begin(), names.end(), ref->name) == names.end()) {
        names.emplace_back(ref->name);
      }
      if (!ref->then_text.empty()) {
        work.push_back(ref->then_text);
      }
      if (!ref->else_text.empty()) {
        work.push_back(ref->else_text);
      }
    }
  }
  return names;
}

}  // namespace moat::config
