# Medians of benchmark lines as one row per metric: runs, the median per
# VMM and the ratios gureum/X for every other VMM X; then the failed runs
# per VMM (failures.awk). Unlike
# medians.awk, each (VMM, metric)
# pair is summarised over the lines that carry it, so a benchmark may
# print its metrics on several lines per run (scripts/bench/vpc does).
# Input lines: "@@BENCH vmm=<v> run=<i> <metric>=<number> ..."; a value
# that is not a number (a failed measurement prints "-") is skipped.
/^@@BENCH / {
  v = ""
  for (i = 2; i <= NF; i++) if ($i ~ /^vmm=/) v = substr($i, 5)
  if (!(v in seen)) { seen[v] = 1; vmms[++nv] = v }
  for (i = 2; i <= NF; i++) {
    split($i, kv, "=")
    if (kv[1] == "vmm" || kv[1] == "run") continue
    if (!(kv[1] in known)) { known[kv[1]] = 1; metrics[++nm] = kv[1] }
    if (kv[2] !~ /^-?[0-9]+(\.[0-9]+)?$/) continue
    cnt[v, kv[1]]++
    val[v, kv[1], cnt[v, kv[1]]] = kv[2] + 0
  }
}
function median(v, m,   c, a, i, j, t) {
  c = cnt[v, m]
  for (i = 1; i <= c; i++) a[i] = val[v, m, i]
  for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
}
END {
  # The ratios: gureum against every VMM whose name is not gureum's.
  for (x = 1; x <= nv; x++) if (vmms[x] !~ /^gureum/) others[++no] = vmms[x]
  printf "%-24s", "metric (median)"
  for (x = 1; x <= nv; x++) printf " %16s", vmms[x] " (n)"
  if ("gureum" in seen) for (y = 1; y <= no; y++) printf " %8s", "g/" substr(others[y], 1, 1)
  printf "\n"
  for (k = 1; k <= nm; k++) {
    m = metrics[k]
    printf "%-24s", m
    for (x = 1; x <= nv; x++) {
      v = vmms[x]
      if (cnt[v, m]) { med[v] = median(v, m); printf " %12.1f (%d)", med[v], cnt[v, m] }
      else { med[v] = ""; printf " %16s", "-" }
    }
    if ("gureum" in seen) for (y = 1; y <= no; y++) {
      o = others[y]
      if (med["gureum"] != "" && med[o] != "" && med[o] != 0) printf " %8.3f", med["gureum"] / med[o]
      else printf " %8s", "-"
    }
    printf "\n"
  }
  print_failures(seen)
}
