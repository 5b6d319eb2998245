# phase TEXT: a CI section's header with the minutes since .ci/run started (DSV4_CI_START),
# so that a log shows where the time went.
phase() {
  local start=${DSV4_CI_START:-$(date +%s)}
  printf '== [%s, %d min in] %s ==\n' "$(date -u +%H:%M:%S)" $((($(date +%s) - start) / 60)) "$*"
}
