#!/usr/bin/env bash
# Closing measurement of issue 12: a blind period of OUTAGE seconds (a manual
# suspension, SIGUSR1 … SIGUSR2) of a TRACKERS-tracker simulated fleet reporting every
# INTERVAL; prints the time from resume until the gap is done and the live ingest
# (tracker_states rows with origin 'live' per second) meanwhile.
#
#   cargo build --release && scripts/backfill-outage.sh
#   TRACKERS=2000 OUTAGE=60 RATE=50 scripts/backfill-outage.sh
set -euo pipefail
BIN=${BIN:-target/release/wsvault}
TRACKERS=${TRACKERS:-2000}
INTERVAL=${INTERVAL:-10s}
OUTAGE=${OUTAGE:-60}
RATE=${RATE:-10}
PORT=${PORT:-18765}
dir=$(mktemp -d)
db="$dir/vault.db"
q() { sqlite3 "$db" "$1"; }

"$BIN" simulate navixy --listen "127.0.0.1:$PORT" --trackers "$TRACKERS" \
  --report-interval "$INTERVAL" --no-readings --batch-size 500 >"$dir/sim.log" 2>&1 &
sim=$!
trap 'kill $sim ${daemon:-} 2>/dev/null || true' EXIT
sleep 1
cat >"$dir/wsvault.toml" <<TOML
[storage]
url = "sqlite://$db"

[[sources]]
name = "fleet"
kind = "navixy"
url = "ws://127.0.0.1:$PORT/v2/event/subscription"
api_key_hash = "0123456789abcdef0123456789abcdef"
backfill_rate = $RATE
backfill_delay = "1s"
TOML
"$BIN" run --config "$dir/wsvault.toml" 2>"$dir/daemon.log" &
daemon=$!
until [ "$(q "select count(*) from session_events where event = 'subscribed'" 2>/dev/null || echo 0)" -ge 1 ]; do sleep 0.5; done
sleep 15
kill -USR1 "$daemon"
sleep "$OUTAGE"
kill -USR2 "$daemon"
t0=$(date +%s.%N)
until [ "$(q "select count(*) from gaps" 2>/dev/null || echo 0)" -ge 1 ]; do sleep 0.2; done
live0=$(q "select count(*) from tracker_states where origin = 'live'")
until [ "$(q "select count(*) from gaps where status in ('done', 'partial', 'failed')")" -ge 1 ]; do sleep 0.2; done
t1=$(date +%s.%N)
live1=$(q "select count(*) from tracker_states where origin = 'live'")
secs=$(echo "$t1 - $t0" | bc -l)
echo "trackers=$TRACKERS interval=$INTERVAL outage=${OUTAGE}s backfill_rate=$RATE"
q "select 'gap', cause, status, trackers_done || '/' || trackers_total, points, attempts, coalesce(error, '') from gaps"
printf 'resume -> gap done: %.1f s\n' "$secs"
printf 'live tracker_states during the backfill: %d rows, %.1f rows/s\n' \
  "$((live1 - live0))" "$(echo "($live1 - $live0) / $secs" | bc -l)"
q "select 'reconnects during the run', count(*) - 2 from session_events where event = 'subscribed'"
kill "$daemon"; wait "$daemon" || true
