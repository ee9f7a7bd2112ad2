#!/usr/bin/env bash
# Renders trainrr's HTML reports in a real browser (headless Chromium) and checks them:
#   - a replay that runs past its first divergence (--keep-going), one that stops at it, a reproduced replay,
#     and a diff of two recordings, from examples/digits_bn.toml recorded twice at level layer;
#   - each page loads with no console message at all (a parse error of an SVG attribute is one), the document
#     parses to its last section, it refers to nothing outside itself, and nothing on it is wider than the
#     window at 1280 and at 800 pixels (text wraps, nothing scrolls sideways), and no number of a table or
#     word of a command breaks across lines;
#   - a screenshot of each, 1280 x 2000, in OUT_DIR, for people to look at.
# Usage: scripts/render-report.sh [TRAINRR_BINARY] [OUT_DIR]
# Exit codes: 0 passed, 1 a check failed, 77 skipped (no Chromium installed: apt-get install chromium).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
trainrr="${1:-$root/build/trainrr}"
out="${2:-$root/build/report-render}"

browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [[ -z "$browser" ]]; then
  echo "SKIPPED: no Chromium found (apt-get install chromium): the HTML report is not rendered"
  exit 77
fi
[[ -x "$trainrr" ]] || { echo "FAILED: $trainrr is not an executable trainrr"; exit 1; }
trainrr="$(cd "$(dirname "$trainrr")" && pwd)/$(basename "$trainrr")"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The browser sees nothing of the network, of this user's profile, or of a GPU.
run_browser() {
  local profile
  profile="$(mktemp -d "$work/profile.XXXXXX")"
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
    --user-data-dir="$profile" --enable-logging=stderr --v=0 "$@"
}

fail=0
failed() { echo "FAILED: $*"; fail=1; }

# Two recordings of one racy run (two threads add the batch-normalization sums in completion order), with
# a validation split so that the page draws validation loss too.
record() {
  "$trainrr" record "$root/examples/digits_bn.toml" --level layer --set train.validation_split=0.1 -o "$1" \
    >"$work/record.log" 2>&1 || { cat "$work/record.log"; echo "FAILED: record"; exit 1; }
}
# The traces by their names alone, as a user in their folder would give them: the pages show them so.
cd "$work"
record run_a.trr
record run_b.trr

# Each page and the command that writes it (exit code 1: diverged, 0: reproduced).
pages=(keep-going stopped reproduced diff)
declare -A command=(
  [keep-going]="replay run_a.trr --force rng,split,shuffle,loader --keep-going"
  [stopped]="replay run_a.trr --force rng,split,shuffle,loader"
  [reproduced]="replay run_a.trr"
  [diff]="diff run_a.trr run_b.trr"
)
for name in "${pages[@]}"; do
  page="$out/report-$name.html"
  rm -f "$page"
  set +e
  # shellcheck disable=SC2086  # the commands are word lists without spaces inside words
  "$trainrr" ${command[$name]} --html "$page" >"$work/$name.log" 2>&1
  rc=$?
  set -e
  if [[ $rc -gt 1 || ! -s "$page" ]]; then
    cat "$work/$name.log"
    failed "$name: trainrr ${command[$name]} exited $rc"
    continue
  fi

  # Self-contained: no script, and every src or href a data: URL.
  if grep -qi '<script' "$page"; then failed "$name: the page holds a <script>"; fi
  if grep -oiE '(src|href)="[^"]*"' "$page" | grep -viqE '="(data:|#)'; then
    failed "$name: the page refers to something outside itself: $(grep -oiE '(src|href)="[^"]*"' "$page" |
      grep -viE '="(data:|#)' | head -3 | tr '\n' ' ')"
  fi
  if grep -qiE 'url\(|@import' "$page"; then failed "$name: the page's style loads something"; fi

  # Loads with no console message, and parses to its end.
  run_browser --dump-dom "file://$page" >"$work/$name.dom" 2>"$work/$name.browser.log" ||
    failed "$name: $browser --dump-dom exited $?"
  if grep -E 'CONSOLE|Uncaught' "$work/$name.browser.log"; then failed "$name: console messages (above)"; fi
  if ! grep -q '</main>' "$work/$name.dom"; then failed "$name: the document did not parse to its end"; fi

  # Nothing wider than the window: the page in a frame of each width, measured by the frame's parent (the
  # page itself has no script).
  for width in 1280 800; do
    cat >"$out/measure.html" <<EOF
<!doctype html><html><body style="margin:0"><pre id="out">not measured</pre>
<iframe id="f" src="report-$name.html" style="width:${width}px;height:1600px;border:0"></iframe>
<script>
document.getElementById('f').addEventListener('load', function () {
  var doc = this.contentDocument, d = doc.documentElement, split = 0;
  // A number of a table, or a word of a command, laid out on more than one line.
  [].forEach.call(doc.querySelectorAll('td.mono, code.cmd span'), function (e) {
    var r = doc.createRange();
    r.selectNodeContents(e);
    if (r.getClientRects().length > 1) split++;
  });
  document.getElementById('out').textContent =
      'scrollWidth=' + d.scrollWidth + ' clientWidth=' + d.clientWidth + ' split=' + split;
});
</script></body></html>
EOF
    run_browser --allow-file-access-from-files --window-size=1400,1800 --dump-dom "file://$out/measure.html" \
      >"$work/measure.dom" 2>"$work/measure.log" || true
    measured=$(grep -oE 'scrollWidth=[0-9]+ clientWidth=[0-9]+ split=[0-9]+' "$work/measure.dom" || true)
    if [[ -z "$measured" ]]; then
      failed "$name: the page could not be measured at $width px"
      continue
    fi
    scroll=${measured#scrollWidth=}; scroll=${scroll%% *}
    client=${measured#*clientWidth=}; client=${client%% *}
    split=${measured##*split=}
    if ((scroll > client)); then failed "$name: at $width px the page is $scroll px wide: it scrolls sideways"; fi
    if ((split > 0)); then failed "$name: at $width px $split numbers or command words break across lines"; fi
  done
  rm -f "$out/measure.html"

  run_browser --hide-scrollbars --window-size=1280,2000 --screenshot="$out/report-$name.png" "file://$page" \
    >/dev/null 2>"$work/$name.shot.log" || failed "$name: the screenshot failed"
  [[ -s "$out/report-$name.png" ]] || failed "$name: no screenshot"
  echo "$name: rendered, no console message, fits 800 and 1280 px: $out/report-$name.png"
done

if ((fail)); then exit 1; fi
echo "all pages passed"
