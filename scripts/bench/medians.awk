# Medians of benchmark lines, per VMM, and the ratios gureum/X for every
# other VMM X (or the one ratio num/den, given with -v); then the failed
# runs per VMM.
# Input lines: "@@BENCH vmm=<v> run=<i> <metric>=<number> ..."; every
# metric other than vmm and run is summarised, in order of appearance.
# Failed runs are failures.awk's.
/^@@BENCH / {
  v = ""
  for (i = 2; i <= NF; i++) {
    split($i, kv, "=")
    if (kv[1] == "vmm") { v = kv[2]; n[v]++; if (!(v in seen)) { seen[v] = 1; vmms[++nv] = v } }
  }
  for (i = 2; i <= NF; i++) {
    split($i, kv, "=")
    if (kv[1] == "vmm" || kv[1] == "run") continue
    if (!(kv[1] in known)) { known[kv[1]] = 1; metrics[++nm] = kv[1] }
    val[v, kv[1], n[v]] = kv[2] + 0
  }
}
function median(v, m, cnt,   a, i, j, t) {
  for (i = 1; i <= cnt; i++) a[i] = val[v, m, i]
  for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return cnt % 2 ? a[(cnt + 1) / 2] : (a[cnt / 2] + a[cnt / 2 + 1]) / 2
}
END {
  printf "%-14s %5s", "vmm", "runs"
  for (k = 1; k <= nm; k++) printf " %16s", metrics[k] "(med)"
  printf "\n"
  for (x = 1; x <= nv; x++) {
    v = vmms[x]
    printf "%-14s %5d", v, n[v]
    for (k = 1; k <= nm; k++) { med[v, metrics[k]] = median(v, metrics[k], n[v]); printf " %16.1f", med[v, metrics[k]] }
    printf "\n"
  }
  if (num != "") ratio(num, den)
  else for (x = 1; x <= nv; x++) if (vmms[x] !~ /^gureum/) ratio("gureum", vmms[x])
  print_failures(n)
}
function ratio(a, b,   k, q) {
  if (!(a in n) || !(b in n)) return
  printf "%-14s %5s", "ratio", substr(a, 1, 1) "/" substr(b, 1, 1)
  for (k = 1; k <= nm; k++) {
    q = med[b, metrics[k]]
    if (q != 0) printf " %16.3f", med[a, metrics[k]] / q; else printf " %16s", "-"
  }
  printf "\n"
}
