# Failed runs per VMM, for medians.awk and medians-rows.awk (read first,
# `awk -f failures.awk -f medians.awk`): "@@BENCH-FAIL vmm=<v> run=<i>
# [why=<w>] ..." counts one (run 0 is a VMM that could not start at all).
/^@@BENCH-FAIL / {
  v = ""; w = "other"
  for (i = 2; i <= NF; i++) {
    if ($i ~ /^vmm=/) v = substr($i, 5)
    if ($i ~ /^why=/) w = substr($i, 5)
  }
  if (!(v in nfail)) fails[++nf] = v
  nfail[v]++
  why[v] = why[v] (why[v] == "" ? "" : " ") w
  next
}
# Prints the failed runs of every VMM in vmms[1..nv], and of those that
# never got through a run (not in `known`).
function print_failures(known,   x, v) {
  for (x = 1; x <= nf; x++) if (!(fails[x] in known)) vmms[++nv] = fails[x]
  printf "failed runs:"
  for (x = 1; x <= nv; x++) {
    v = vmms[x]
    printf " %s %d%s%s", v, nfail[v], nfail[v] ? " (" why[v] ")" : "", x < nv ? "," : ""
  }
  printf "\n"
}
