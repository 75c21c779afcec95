# The machine's own apt sources, read so that setup adds a suite (e.g.
# bookworm-backports) from the mirror the machine already uses instead of
# a host named here. Source it; do not run it.
# shellcheck shell=bash

# Prints "URI<TAB>SIGNED-BY" (SIGNED-BY empty when the source names no
# keyring file) for every enabled binary source under root directory $1
# that serves suite $2 (e.g. bookworm), in apt's order: sources.list,
# then sources.list.d/*.list and *.sources.
apt_mirrors() {
  local root=$1 suite=$2 f
  local files=()
  [[ -f $root/etc/apt/sources.list ]] && files+=("$root/etc/apt/sources.list")
  for f in "$root"/etc/apt/sources.list.d/*.list "$root"/etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  for f in "${files[@]}"; do
    case $f in
      *.sources) _apt_deb822 "$suite" <"$f" ;;
      *) _apt_one_line "$suite" <"$f" ;;
    esac
  done
}

# One-line format: "deb [opt=val ...] URI SUITE COMPONENT...", # comments.
_apt_one_line() {
  awk -v want="$1" '
    { sub(/#.*/, "") }
    $1 != "deb" || $2 ~ /^cdrom:/ { next }
    {
      i = 2; signed = ""
      if ($i ~ /^\[/) {
        # Options run to the field that ends with "]".
        for (; i <= NF; i++) {
          opt = $i; gsub(/[][]/, "", opt)
          if (opt ~ /^signed-by=/) { sub(/^signed-by=/, "", opt); signed = opt }
          if ($i ~ /\]$/) { i++; break }
        }
      }
      if (i + 1 <= NF && $(i + 1) == want) print $i "\t" signed
    }'
}

# deb822 format: stanzas of "Field: value" lines (continuation lines start
# with a blank), separated by empty lines; field names in any case.
_apt_deb822() {
  awk -v want="$1" '
    function flush(   n, uris, k, types, suites, ok) {
      if (f["types"] != "" && f["enabled"] != "no") {
        ok = 0
        split(f["types"], types, /[ \t]+/)
        for (k in types) if (types[k] == "deb") ok++
        split(f["suites"], suites, /[ \t]+/)
        for (k in suites) if (suites[k] == want) ok++
        # A keyring written inline cannot go on one line: left out.
        signed = f["signed-by"] ~ /^\// ? f["signed-by"] : ""
        if (ok == 2) {
          n = split(f["uris"], uris, /[ \t]+/)
          for (k = 1; k <= n; k++) if (uris[k] != "") print uris[k] "\t" signed
        }
      }
      delete f; last = ""
    }
    /^#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]/ { if (last != "") f[last] = f[last] " " $0; next }
    {
      key = tolower(substr($0, 1, index($0, ":") - 1))
      value = substr($0, index($0, ":") + 1)
      gsub(/^[ \t]+|[ \t]+$/, "", value)
      f[key] = value; last = key
    }
    END { flush() }'
}

# The first mirror apt_mirrors finds: "URI<TAB>SIGNED-BY", or nothing.
# (All read, then the first kept: `| head` could end apt_mirrors early
# with SIGPIPE, which pipefail turns into a failure.)
first_apt_mirror() {
  local all
  all=$(apt_mirrors "$1" "$2")
  printf '%s' "${all%%$'\n'*}"
}

# Prints the apt line for suite $2 (e.g. bookworm-backports) from the
# mirror that serves its release (bookworm) on the machine rooted at $1;
# fails, saying so, when none does.
backports_line() {
  local root=$1 suite=$2 release=${2%-backports} mirror uri signed
  mirror=$(first_apt_mirror "$root" "$release")
  if [[ -z $mirror ]]; then
    printf 'no apt source for Debian %s in %s/etc/apt (sources.list, sources.list.d/*.list or *.sources): add the Debian mirror this machine uses, then run this again\n' \
      "$release" "${root%/}" >&2
    return 1
  fi
  IFS=$'\t' read -r uri signed <<<"$mirror"
  printf 'deb %s%s %s main\n' "${signed:+[signed-by=$signed] }" "$uri" "$suite"
}
