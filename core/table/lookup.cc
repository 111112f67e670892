// core/table/lookup.cc: Postfix search orders (see lookup.h). Every function here builds
// its candidate keys in one stack buffer: no heap allocation per lookup.
#include "core/table/lookup.h"

#include <cstring>
#include <string>

#include "core/table/fold.h"

namespace moat::table {
namespace {

// The folded query in the first half, the candidate being tried in the second half.
struct Scratch {
  char query[kQueryBytesMax];
  char key[kQueryBytesMax + 2];
};

// How a search order runs: kPrefetch walks every candidate key and only prefetches (it
// never matches), so that the kFind walk that follows finds the index slots of all
// candidates already on their way from memory: the misses overlap instead of queueing.
enum class Mode { kPrefetch, kFind };

// Tries `key` in every map; pattern maps only when `whole` (the query as a whole).
std::optional<Match> Probe(const MapList& maps, std::string_view key, KeyForm form, bool whole,
                           Mode mode = Mode::kFind) {
  for (const std::shared_ptr<const Map>& map : maps.maps()) {
    if (map->IsPattern() && !whole) {
      continue;
    }
    if (mode == Mode::kPrefetch) {
      map->Prefetch(key);
    } else if (std::optional<std::string_view> value = map->Find(key)) {
      return Match{*value, map.get(), form};
    }
  }
  return std::nullopt;
}

bool Fold(std::string_view in, Scratch* s, std::string_view* out) {
  if (in.size() > kQueryBytesMax) {
    return false;
  }
  FoldCaseCopy(in.data(), in.size(), s->query);
  *out = std::string_view(s->query, in.size());
  return true;
}

std::string_view Concat(Scratch* s, std::string_view a, std::string_view b) {
  memcpy(s->key, a.data(), a.size());
  memcpy(s->key + a.size(), b.data(), b.size());
  return std::string_view(s->key, a.size() + b.size());
}

// A folded address split as Postfix does: user+ext@domain.
struct Address {
  std::string_view whole;
  std::string_view localpart;  // user+ext
  std::string_view user;       // user (== localpart when there is no extension)
  std::string_view extension;  // "+ext" including the delimiter, or empty
  std::string_view domain;     // empty when there is no '@'
  bool has_domain = false;
};

Address Split(std::string_view whole, std::string_view delimiters) {
  Address a;
  a.whole = whole;
  size_t at = whole.rfind('@');
  if (at == std::string_view::npos) {
    a.localpart = whole;
  } else {
    a.localpart = whole.substr(0, at);
    a.domain = whole.substr(at + 1);
    a.has_domain = true;
  }
  a.user = a.localpart;
  if (delimiters.empty() || a.localpart.empty()) {
    return a;
  }
  // Postfix split_addr(): these local parts are never split.
  std::string_view lp = a.localpart;
  if (lp == "postmaster" || lp == "mailer-daemon" || lp == "double-bounce") {
    return a;
  }
  if (delimiters.find('-') != std::string_view::npos &&
      (lp.substr(0, 6) == "owner-" ||
       (lp.size() > 8 && lp.substr(lp.size() - 8) == "-request"))) {
    return a;
  }
  // Not find_first_of: libstdc++ calls memchr once per byte of the local part.
  size_t pos = 0;
  if (delimiters.size() == 1) {
    const void* hit = memchr(lp.data(), delimiters[0], lp.size());
    pos = hit == nullptr ? std::string_view::npos
                         : static_cast<size_t>(static_cast<const char*>(hit) - lp.data());
  } else {
    auto is_delimiter = [&](char c) {
      for (char d : delimiters) {
        if (d == c) {
          return true;
        }
      }
      return false;
    };
    while (pos < lp.size() && !is_delimiter(lp[pos])) {
      ++pos;
    }
    if (pos == lp.size()) {
      pos = std::string_view::npos;
    }
  }
  if (pos == std::string_view::npos || pos == 0) {  // never leave an empty local part
    return a;
  }
  a.user = lp.substr(0, pos);
  a.extension = lp.substr(pos);
  return a;
}

// domain, then its parents per parent_matches_subdomains. `whole`: the domain is the whole
// query (pattern tables see it); false when it is the domain part of an address.
std::optional<Match> ProbeDomain(const MapList& maps, std::string_view domain,
                                 bool parent_matches_subdomains, bool whole) {
  if (domain.empty()) {
    return std::nullopt;
  }
  if (auto m = Probe(maps, domain, KeyForm::kDomain, whole)) {
    return m;
  }
  for (size_t dot = domain.find('.', 1); dot != std::string_view::npos;
       dot = domain.find('.', dot + 1)) {
    std::string_view parent =
        parent_matches_subdomains ? domain.substr(dot + 1) : domain.substr(dot);
    if (parent.empty() || parent == ".") {
      break;
    }
    if (auto m = Probe(maps, parent, KeyForm::kParentDomain, false)) {
      return m;
    }
  }
  return std::nullopt;
}

// user+ext@domain, user@domain; then user+ext, user when `localpart_forms`.
std::optional<Match> ProbeAddress(const MapList& maps, const Address& a, bool localpart_forms,
                                  Scratch* s, Mode mode = Mode::kFind) {
  if (auto m = Probe(maps, a.whole, KeyForm::kAddress, true, mode)) {
    return m;
  }
  if (!a.extension.empty()) {
    std::string_view key = a.user;
    if (a.has_domain) {  // user@domain, built in s->key
      Concat(s, a.user, "@");
      memcpy(s->key + a.user.size() + 1, a.domain.data(), a.domain.size());
      key = std::string_view(s->key, a.user.size() + 1 + a.domain.size());
    }
    if (auto m = Probe(maps, key, KeyForm::kAddressNoExt, false, mode)) {
      return m;
    }
  }
  if (localpart_forms && a.has_domain) {
    if (auto m = Probe(maps, a.localpart, KeyForm::kLocalPart, false, mode)) {
      return m;
    }
    if (!a.extension.empty()) {
      if (auto m = Probe(maps, a.user, KeyForm::kLocalPartNoExt, false, mode)) {
        return m;
      }
    }
  }
  return std::nullopt;
}

std::optional<Match> ProbeLocalPartAt(const MapList& maps, const Address& a, Scratch* s,
                                      Mode mode = Mode::kFind) {
  if (!a.has_domain) {
    return std::nullopt;
  }
  if (auto m = Probe(maps, Concat(s, a.localpart, "@"), KeyForm::kLocalPartAt, false, mode)) {
    return m;
  }
  if (!a.extension.empty()) {
    if (auto m = Probe(maps, Concat(s, a.user, "@"), KeyForm::kLocalPartNoExtAt, false, mode)) {
      return m;
    }
  }
  return std::nullopt;
}

std::optional<Match> ProbeAtDomain(const MapList& maps, const Address& a, Scratch* s,
                                   Mode mode = Mode::kFind) {
  if (!a.has_domain) {
    return std::nullopt;
  }
  return Probe(maps, Concat(s, "@", a.domain), KeyForm::kAtDomain, false, mode);
}

}  // namespace

absl::StatusOr<MapList> MapList::Open(std::string_view specs, const OpenOptions& options) {
  std::vector<std::shared_ptr<const Map>> maps;
  size_t i = 0;
  while (i < specs.size()) {
    size_t end = specs.find_first_of(", \t\r\n", i);
    if (end == std::string_view::npos) {
      end = specs.size();
    }
    if (end > i) {
      absl::StatusOr<std::unique_ptr<Map>> map = OpenMap(specs.substr(i, end - i), options);
      if (!map.ok()) {
        return map.status();
      }
      maps.push_back(std::shared_ptr<const Map>(std::move(*map)));
    }
    i = end + 1;
  }
  return MapList(std::move(maps));
}

std::optional<Match> MapList::Find(std::string_view key) const {
  return Probe(*this, key, KeyForm::kExact, true);
}

std::optional<Match> FindKey(const MapList& maps, std::string_view key) {
  Scratch s;
  std::string_view folded;
  if (!Fold(key, &s, &folded)) {
    return std::nullopt;
  }
  return Probe(maps, folded, KeyForm::kExact, true);
}

std::optional<Match> FindRecipient(const MapList& maps, std::string_view address,
                                   std::string_view delimiters, bool domain_is_local) {
  Scratch s;
  std::string_view folded;
  if (address.empty() || !Fold(address, &s, &folded)) {
    return std::nullopt;
  }
  Address a = Split(folded, delimiters);
  ProbeAddress(maps, a, domain_is_local, &s, Mode::kPrefetch);
  ProbeLocalPartAt(maps, a, &s, Mode::kPrefetch);
  ProbeAtDomain(maps, a, &s, Mode::kPrefetch);
  if (auto m = ProbeAddress(maps, a, domain_is_local, &s)) {
    return m;
  }
  if (auto m = ProbeLocalPartAt(maps, a, &s)) {
    return m;
  }
  return ProbeAtDomain(maps, a, &s);
}

std::optional<Match> FindVirtualAlias(const MapList& maps, std::string_view address,
                                      std::string_view delimiters, bool domain_is_local) {
  Scratch s;
  std::string_view folded;
  if (address.empty() || !Fold(address, &s, &folded)) {
    return std::nullopt;
  }
  Address a = Split(folded, delimiters);
  ProbeAddress(maps, a, domain_is_local, &s, Mode::kPrefetch);
  ProbeAtDomain(maps, a, &s, Mode::kPrefetch);
  if (auto m = ProbeAddress(maps, a, domain_is_local, &s)) {
    return m;
  }
  return ProbeAtDomain(maps, a, &s);
}

std::optional<Match> FindAccessAddress(const MapList& maps, std::string_view address,
                                       std::string_view delimiters,
                                       bool parent_matches_subdomains) {
  Scratch s;
  std::string_view folded;
  if (address.empty() || !Fold(address, &s, &folded)) {
    return std::nullopt;
  }
  Address a = Split(folded, delimiters);
  if (auto m = ProbeAddress(maps, a, /*localpart_forms=*/false, &s)) {
    return m;
  }
  // The domain part goes to fixed tables only: a pattern table saw the whole address.
  if (auto m = ProbeDomain(maps, a.domain, parent_matches_subdomains, /*whole=*/false)) {
    return m;
  }
  return ProbeLocalPartAt(maps, a, &s);
}

std::optional<Match> FindDomain(const MapList& maps, std::string_view domain,
                                bool parent_matches_subdomains) {
  Scratch s;
  std::string_view folded;
  if (!Fold(domain, &s, &folded)) {
    return std::nullopt;
  }
  return ProbeDomain(maps, folded, parent_matches_subdomains, /*whole=*/true);
}

std::optional<Match> FindClient(const MapList& maps, std::string_view address,
                                std::string_view hostname, bool parent_matches_subdomains) {
  Scratch s;
  std::string_view folded;
  if (!hostname.empty() && Fold(hostname, &s, &folded)) {
    if (auto m = ProbeDomain(maps, folded, parent_matches_subdomains, /*whole=*/true)) {
      return m;
    }
  }
  if (address.empty() || !Fold(address, &s, &folded)) {
    return std::nullopt;
  }
  if (auto m = Probe(maps, folded, KeyForm::kClientAddress, true)) {
    return m;
  }
  const char delimiter = folded.find(':') != std::string_view::npos ? ':' : '.';
  std::string_view network = folded;
  while (true) {
    size_t cut = network.rfind(delimiter);
    if (cut == std::string_view::npos || cut == 0) {
      break;
    }
    network = network.substr(0, cut);
    if (auto m = Probe(maps, network, KeyForm::kNetwork, false)) {
      return m;
    }
  }
  return std::nullopt;
}

std::optional<Match> FindTransport(const MapList& maps, std::string_view address,
                                   std::string_view delimiters, bool parent_matches_subdomains) {
  Scratch s;
  std::string_view folded;
  if (address.empty() || !Fold(address, &s, &folded)) {
    return std::nullopt;
  }
  Address a = Split(folded, delimiters);
  if (auto m = ProbeAddress(maps, a, /*localpart_forms=*/false, &s)) {
    return m;
  }
  if (auto m = ProbeDomain(maps, a.domain, parent_matches_subdomains, /*whole=*/false)) {
    return m;
  }
  return Probe(maps, "*", KeyForm::kWildcard, false);
}

}  // namespace moat::table
