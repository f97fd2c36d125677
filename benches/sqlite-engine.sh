#!/bin/bash
# What the SQLite engine itself costs for wsvault's rows, without wsvault or sqlx:
# the sqlite3 CLI copies the tracker states and readings of a finished ingest run into
# a fresh database of the same schema with INSERT … SELECT, one transaction per batch
# of BATCH rows (a state and its 4 readings per 5 rows, like the daemon's batches),
# under variants of the schema and pragmas. Used for the profile in BENCHMARKS.md.
#
# Usage: benches/sqlite-engine.sh SOURCE.db [BATCH]
#   SOURCE.db: e.g. from `WSVAULT_BENCH_KEEP=1 wsvault bench --backend sqlite
#              --records 50000 --rate 0 --stall 0` (the "kept" ingest directory).
# Needs sqlite3 and python3. Writes only under a temp directory.
set -euo pipefail
SRC=$(realpath "$1")
BATCH=${2:-500}
HERE=$(dirname "$(realpath "$0")")
MIG="$HERE/../migrations/sqlite/0001_storage_contract.sql"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STATES=$(sqlite3 "$SRC" "SELECT COUNT(*) FROM tracker_states")
READINGS=$(sqlite3 "$SRC" "SELECT COUNT(*) FROM tracker_readings")

run() {
  local name=$1 schema_sed=$2 pragmas=$3
  rm -f "$WORK"/exp.db*
  sqlite3 "$WORK/exp.db" "PRAGMA journal_mode=WAL;" >/dev/null
  sed "$schema_sed" "$MIG" | sqlite3 "$WORK/exp.db"
  python3 - "$BATCH" "$STATES" "$pragmas" "$SRC" > "$WORK/exp.sql" <<'EOF'
import sys
batch, states, pragmas, src = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ns = max(1, batch // 5)
print(f"PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384; {pragmas} ATTACH '{src}' AS s;")
cols_s = "source,source_id,state_time,received_at,lat,lng,speed,heading,connection_status,movement_status,payload"
cols_r = "source,tracker_id,reading_kind,name,value,value_num,units,update_time,received_at,payload"
for k in range(0, states, ns):
    print(f"BEGIN; INSERT INTO tracker_states({cols_s}) SELECT {cols_s} FROM s.tracker_states "
          f"WHERE id > {k} AND id <= {k + ns}; INSERT INTO tracker_readings({cols_r}) SELECT {cols_r} "
          f"FROM s.tracker_readings WHERE id > {4 * k} AND id <= {4 * (k + ns)}; COMMIT;")
EOF
  local s e
  s=$(date +%s.%N)
  sqlite3 "$WORK/exp.db" < "$WORK/exp.sql" >/dev/null
  e=$(date +%s.%N)
  python3 -c "import sys; t=$e-$s; print(f'{sys.argv[1]:<58} {t:6.2f} s  {($STATES+$READINGS)/t:8.0f} rows/s  {$STATES/t:7.0f} states/s')" "$name"
}

echo "batch $BATCH rows; $STATES states + $READINGS readings from $SRC"
run "schema as shipped, wal_autocheckpoint 1000 (default)" 's/x/x/' ""
run "schema as shipped, wal_autocheckpoint 10000 (wsvault)" 's/x/x/' "PRAGMA wal_autocheckpoint=10000;"
run "  + synchronous=OFF (no fsync at checkpoints)" 's/x/x/' "PRAGMA wal_autocheckpoint=10000; PRAGMA synchronous=OFF;"
run "  - json_valid CHECKs" 's/CHECK (json_valid([a-z]*))//' "PRAGMA wal_autocheckpoint=10000;"
run "  - index tracker_readings_tracker_name_time" '/CREATE INDEX tracker_readings_tracker_name_time/,+1d' "PRAGMA wal_autocheckpoint=10000;"
run "  - every non-unique index on states and readings" '/CREATE INDEX tracker_readings_tracker_name_time/,+1d; /CREATE INDEX tracker_readings_source_received_at/d; /CREATE INDEX tracker_states_source_received_at/d' "PRAGMA wal_autocheckpoint=10000;"
