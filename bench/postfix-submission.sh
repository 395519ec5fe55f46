#!/usr/bin/env bash
# A throw-away Postfix instance configured as an ISP submission service, the peer
# that portcullis is benchmarked against: STARTTLS required, AUTH PLAIN/LOGIN through
# Cyrus SASL (sasldb), relaying everything to a sink on loopback.
#
#   bench/postfix-submission.sh start DIR PORT SINK_PORT USER PASSWORD
#   bench/postfix-submission.sh stop DIR
#   bench/postfix-submission.sh reload DIR   (idle smtpd and smtp processes exit)
#
# default_process_limit (Postfix's default: 100) is POSTFIX_PROCESS_LIMIT, 10100 when
# unset: Postfix runs one smtpd process per session, and the benchmark holds 10,000.
#
# Everything lives under DIR (config, queue, data, log); the system's Postfix is
# neither used nor touched. Listens on 127.0.0.1 only.
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")

if [[ $cmd == reload ]]; then
    exec postfix -c "$dir/etc" reload >/dev/null 2>&1
fi

if [[ $cmd == stop ]]; then
    pid=$(cat "$dir/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
    # Its children too: after the sessions benchmark thousands of smtpd processes
    # outlive the master for seconds, and the next benchmark would share the cores
    # with their exits.
    children=$([[ -n $pid ]] && pgrep -P "$pid" | tr '\n' ' ' || true)
    [[ -f $dir/etc/main.cf ]] && postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    # `postfix stop` returns before they are gone; wait for them (at most a minute).
    for _ in $(seq 600); do
        alive=0
        for p in $pid $children; do
            [[ -d /proc/$p ]] && { alive=1; break; }
        done
        ((alive)) || exit 0
        sleep 0.1
    done
    echo "postfix-submission.sh: processes of $dir still running a minute after stop" >&2
    exit 0
fi

port=${3:?PORT}; sink=${4:?SINK_PORT}; user=${5:?USER}; password=${6:?PASSWORD}
host=bench.portcullis.test
mkdir -p "$dir/etc/sasl" "$dir/queue" "$dir/data"
chown postfix "$dir/data"

if [[ ! -f $dir/etc/tls.pem ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$host" \
        -keyout "$dir/etc/tls.key" -out "$dir/etc/tls.pem" 2>/dev/null
fi

cat > "$dir/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
maillog_file = $dir/maillog
myhostname = $host
mydomain = portcullis.test
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
relayhost = [127.0.0.1]:$sink
smtp_tls_security_level = none
smtpd_tls_cert_file = $dir/etc/tls.pem
smtpd_tls_key_file = $dir/etc/tls.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/etc/sasl
smtpd_sasl_local_domain = $host
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
message_size_limit = 36700160
default_process_limit = ${POSTFIX_PROCESS_LIMIT:-10100}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
anvil_rate_time_unit = 60s
smtp_destination_concurrency_limit = 100
default_destination_concurrency_limit = 100
in_flow_delay = 0
CF

cat > "$dir/etc/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF

cat > "$dir/etc/sasl/smtpd.conf" <<CF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $dir/etc/sasldb2
CF
echo "$password" | saslpasswd2 -p -f "$dir/etc/sasldb2" -c -u "$host" "$user"
chown postfix "$dir/etc/sasldb2"

postfix -c "$dir/etc" check >/dev/null 2>&1 || postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
postfix -c "$dir/etc" start
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && exit 0
    sleep 0.1
done
echo "postfix did not listen on 127.0.0.1:$port; see $dir/maillog" >&2
exit 1
