#!/usr/bin/env bash
# A throw-away FreeRADIUS server (Debian package freeradius), the peer that
# portcullis' RADIUS server is benchmarked against: PAP from a users file, accounting
# answered, on 127.0.0.1 only.
#
#   bench/freeradius.sh start DIR AUTH_PORT ACCT_PORT SECRET USERS_FILE [ACCOUNTING]
#   bench/freeradius.sh stop DIR
#
# ACCOUNTING is what FreeRADIUS does with an Accounting-Request before answering it:
#   ok      nothing (the default): answered, nothing recorded;
#   detail  one record appended to DIR/log/detail per packet (buffered writes, no
#           fsync, like FreeRADIUS' stock `detail` module).
# Replies to Access-Requests carry a Message-Authenticator (Blast-RADIUS; FreeRADIUS
# before 3.2.5 adds one only when asked, hence the `update reply` in post-auth).
#
# USERS_FILE is in FreeRADIUS "users" format, e.g.
#   alice Cleartext-Password := "pw"
#          Filter-Id := "port25-block"
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")

if [[ $cmd == stop ]]; then
    [[ -f $dir/run/radiusd.pid ]] && kill "$(cat "$dir/run/radiusd.pid")" 2>/dev/null || true
    exit 0
fi

auth=${3:?AUTH_PORT}; acct=${4:?ACCT_PORT}; secret=${5:?SECRET}; users=$(realpath "${6:?USERS_FILE}")
accounting=${7:-ok}
case $accounting in
    ok|detail) ;;
    *) echo "ACCOUNTING must be ok or detail, not '$accounting'" >&2; exit 2 ;;
esac
mkdir -p "$dir/log" "$dir/run"
cp /etc/freeradius/3.0/dictionary "$dir/dictionary" 2>/dev/null || : > "$dir/dictionary"

cat > "$dir/radiusd.conf" <<CF
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = $dir/log
raddbdir = $dir
radacctdir = $dir/log
name = radiusd
confdir = $dir
modconfdir = /etc/freeradius/3.0/mods-config
run_dir = $dir/run
db_dir = $dir
libdir = /usr/lib/freeradius
pidfile = $dir/run/radiusd.pid
max_request_time = 30
# Replies are kept this long for retransmissions, as portcullis' DEDUP_WINDOW.
cleanup_delay = 5
# Every request within cleanup_delay counts: room for 5 s at 100,000 requests/s.
max_requests = 1048576
hostname_lookups = no
log {
    destination = files
    file = $dir/log/radius.log
    auth = no
}
security {
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}
thread pool {
    start_servers = 8
    max_servers = 32
    min_spare_servers = 4
    max_spare_servers = 16
    max_requests_per_server = 0
    auto_limit_acct = no
}
client bench {
    ipaddr = 127.0.0.1
    secret = $secret
}
modules {
    files {
        filename = $users
    }
    pap {
    }
    always ok {
        rcode = ok
    }
    detail {
        filename = $dir/log/detail
        escape_filenames = no
        permissions = 0600
        header = "%t"
        locking = no
    }
}
server default {
    listen {
        type = auth
        ipaddr = 127.0.0.1
        port = $auth
        # As portcullis' sockets (capped by net.core.rmem_max).
        recv_buff = 4194304
    }
    listen {
        type = acct
        ipaddr = 127.0.0.1
        port = $acct
        # As portcullis' sockets (capped by net.core.rmem_max).
        recv_buff = 4194304
    }
    authorize {
        files
        pap
    }
    authenticate {
        Auth-Type PAP {
            pap
        }
    }
    post-auth {
        update reply {
            Message-Authenticator := 0x00
        }
    }
    preacct {
        ok
    }
    accounting {
        $accounting
    }
}
CF

freeradius -d "$dir" -n radiusd -C >/dev/null 2>"$dir/log/check.err" || { cat "$dir/log/check.err" >&2; exit 1; }
freeradius -d "$dir" -n radiusd
for _ in $(seq 50); do
    [[ -s $dir/run/radiusd.pid ]] && exit 0
    sleep 0.1
done
echo "freeradius did not start; see $dir/log/radius.log" >&2
exit 1
