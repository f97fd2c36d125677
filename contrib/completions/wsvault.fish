# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_wsvault_global_optspecs
    string join \n h/help V/version
end

function __fish_wsvault_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_wsvault_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_wsvault_using_subcommand
    set -l cmd (__fish_wsvault_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c wsvault -n "__fish_wsvault_needs_command" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_needs_command" -s V -l version -d 'Print version'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "run" -d 'Run the daemon: migrate, connect every source, record until SIGTERM'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "check-config" -d 'Validate a config file and print what it configures'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "migrate" -d 'Create or upgrade the database schema, then exit; with --partition, also convert PostgreSQL history tables that are not partitioned yet'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "simulate" -d 'Serve a loopback simulator of an upstream API (tests, demo, benchmarks)'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "backup" -d 'Copy the database consistently while the daemon runs (SQLite), or print the pg_dump command (PostgreSQL)'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "status" -d 'Show each source\'s connection state and the row counts, from the database'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "demo" -d 'Record three simulated sources into ./wsvault-demo.db for a few seconds and show what was stored'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "bench" -d 'End-to-end benchmarks (simulator → daemon → database) or the fault soak'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "generate" -d 'Write the man page and shell completions under DIR (for packaging)'
complete -c wsvault -n "__fish_wsvault_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wsvault -n "__fish_wsvault_using_subcommand run" -s c -l config -d 'Config file (TOML); WSVAULT__SECTION__KEY variables override its keys' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand run" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand check-config" -s c -l config -d 'Config file (TOML); WSVAULT__SECTION__KEY variables override its keys' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand migrate" -s c -l config -d 'Config file (TOML); WSVAULT__SECTION__KEY variables override its keys' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand migrate" -l ranges -d 'With --partition: copy at most N partition ranges in this run, then stop (a later run resumes), to spread the copy over quiet hours' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand migrate" -l partition -d 'PostgreSQL: convert tracker_states, tracker_readings, events and traffic into time partitions when they are not yet (a database that held rows when the partitioning migration ran). Copies range by range with progress, resumes where an earlier run stopped, keeps each old table as `<table>_old`'
complete -c wsvault -n "__fish_wsvault_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and not __fish_seen_subcommand_from navixy tradernet jsonrpc help" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and not __fish_seen_subcommand_from navixy tradernet jsonrpc help" -f -a "navixy" -d 'Navixy Atmosphere event subscription (plus user/auth over HTTP on the same port)'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and not __fish_seen_subcommand_from navixy tradernet jsonrpc help" -f -a "tradernet" -d 'Tradernet security sessions'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and not __fish_seen_subcommand_from navixy tradernet jsonrpc help" -f -a "jsonrpc" -d 'JSON-RPC notification stream (Qlik engine style)'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and not __fish_seen_subcommand_from navixy tradernet jsonrpc help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l listen -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l trackers -d 'Number of trackers' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l updates -d 'Updates per tracker after its initial state (unlimited when absent)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l rate -d 'Updates per second over all trackers (0 = as fast as the client reads)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l batch-size -d 'Most items per batch frame' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l heartbeat-interval -d 'Client heartbeat interval announced in the handshake (e.g. "30s")' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l server-heartbeat -d 'Server heartbeat after this much write silence (e.g. "30s")' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l api-key -d 'Accepted API key hash (repeatable; default: the built-in demo key)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l login -d 'Login accepted by the auth call' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l password -d 'Password accepted by the auth call' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l blocked -d 'Tracker ids reported as blocked (no data), comma separated' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l response-shape -d 'Shape of subscribe response entries' -r -f -a "documented\t'`{"success": true, "value": {...}}`'
without-success\t'`{"value": {...}}`'
bare\t'`{...}` directly'"
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l wrap-items -d 'Wrapping of state_batch items' -r -f -a "alternate\t'Even positions wrapped, odd positions bare (both forms in every batch)'
always\t''
never\t''"
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l utc-offset-secs -d 'User timezone offset in seconds east of UTC' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l drop-every -d 'Drop every connection (no close frame) this long after it opened' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l report-interval -d 'Moving fleet: every tracker reports every this long in real time (e.g. "10s"), history served by track/read; overrides --rate' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l no-readings -d 'Do not send readings_batch data'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l two-factor -d 'Answer correct logins with second_factor_required'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l seq -d 'Add additional.seq to every state (for gap detection)'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -l run-without-subscribers -d 'Generate updates even with no subscriber'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from navixy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l listen -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l sid -d 'Accepted SID (repeatable; default: the built-in demo SID)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l api-key -d 'Accepted API key pair as PUBLIC:PRIVATE (repeatable)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l initial-sessions -d 'Sessions open from the start' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l push-interval -d 'Full-list push period (e.g. "10s")' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l churn-every -d 'Open a new session this often (e.g. "30s")' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l churn-lifetime -d 'How long each churned session stays open' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l drop-every -d 'Drop every connection (no close frame) this long after it opened' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l demo -d 'Treat every connection as unauthenticated'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -l no-answer -d 'Never answer the sessions subscribe'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from tradernet" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l listen -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l interval -d 'Period between notifications (e.g. "1s")' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l count -d 'Stop after this many notifications' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l method -d 'Notification method (repeatable; default OnProgress, OnChange, OnTick)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l error-method -d 'Method whose requests fail with an error object' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l drop-every -d 'Drop every connection (no close frame) this long after it opened' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -l attach-on-reconnect -d 'Reconnections get SESSION_ATTACHED'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from jsonrpc" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "navixy" -d 'Navixy Atmosphere event subscription (plus user/auth over HTTP on the same port)'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "tradernet" -d 'Tradernet security sessions'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "jsonrpc" -d 'JSON-RPC notification stream (Qlik engine style)'
complete -c wsvault -n "__fish_wsvault_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wsvault -n "__fish_wsvault_using_subcommand backup" -s c -l config -d 'Config file (TOML); WSVAULT__SECTION__KEY variables override its keys' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand backup" -l to -d 'Where the copy goes (SQLite: required, must not exist) or the dump file the printed pg_dump command writes (PostgreSQL: default wsvault.dump)' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand backup" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand status" -s c -l config -d 'Config file (TOML); WSVAULT__SECTION__KEY variables override its keys' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand status" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand demo" -l seconds -d 'How long to record' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand demo" -l db -d 'The SQLite file to record into (overwritten)' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand demo" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l backend -d 'Which backends to measure; default: both when a PostgreSQL URL is known, else sqlite' -r -f -a "sqlite\t'A temp SQLite file'
postgres\t'A fresh database on the PostgreSQL server of the admin URL'
both\t'SQLite, then PostgreSQL'"
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l postgres-url -d 'PostgreSQL admin URL; a fresh database is created from it and dropped after' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l records -d 'Tracker states to ingest in the throughput run (readings come on top); 0 skips it' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l rate -d 'Offered rates (tracker states/s) of the latency runs, comma separated; 0 skips them' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l seconds -d 'Length of each latency run, in seconds' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l stall -d 'Length of the database stall during the memory run, in seconds; 0 skips it' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l repeat -d 'Throughput runs (ingest + ceiling) per backend; min and median are reported' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l batch-size -d '`[storage] batch_size` of the daemon (and commit size of the per-batch ceiling)' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l queue-capacity -d '`[storage] queue_capacity` of the daemon; default: the daemon\'s default' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l soak -d 'Run the fault soak for this long instead of the benchmarks (e.g. "5m")' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l seed -d 'Seed of the soak\'s fault schedule' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l daemon-exe -d 'The daemon binary to run; default: this executable' -r -F
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l rows -d 'Tracker states of the `--queries` fill' -r
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l no-readings -d 'States only: no readings_batch subscription'
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -l queries -d 'Run the SQL cookbook benchmark instead: fill a database with `--rows` tracker states (and readings, events, sessions in proportion) and time every cookbook statement, its plan and the retention runs'
complete -c wsvault -n "__fish_wsvault_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wsvault -n "__fish_wsvault_using_subcommand generate" -s h -l help -d 'Print help'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "run" -d 'Run the daemon: migrate, connect every source, record until SIGTERM'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "check-config" -d 'Validate a config file and print what it configures'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "migrate" -d 'Create or upgrade the database schema, then exit; with --partition, also convert PostgreSQL history tables that are not partitioned yet'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "simulate" -d 'Serve a loopback simulator of an upstream API (tests, demo, benchmarks)'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "backup" -d 'Copy the database consistently while the daemon runs (SQLite), or print the pg_dump command (PostgreSQL)'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "status" -d 'Show each source\'s connection state and the row counts, from the database'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "demo" -d 'Record three simulated sources into ./wsvault-demo.db for a few seconds and show what was stored'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "bench" -d 'End-to-end benchmarks (simulator → daemon → database) or the fault soak'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "generate" -d 'Write the man page and shell completions under DIR (for packaging)'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and not __fish_seen_subcommand_from run check-config migrate simulate backup status demo bench generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and __fish_seen_subcommand_from simulate" -f -a "navixy" -d 'Navixy Atmosphere event subscription (plus user/auth over HTTP on the same port)'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and __fish_seen_subcommand_from simulate" -f -a "tradernet" -d 'Tradernet security sessions'
complete -c wsvault -n "__fish_wsvault_using_subcommand help; and __fish_seen_subcommand_from simulate" -f -a "jsonrpc" -d 'JSON-RPC notification stream (Qlik engine style)'
