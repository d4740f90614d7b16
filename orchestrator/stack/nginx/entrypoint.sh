#!/bin/sh
# The web tier: nginx in front of the app tier's WordPress replicas.
#
#   oc-nginx                 render the proxy for $APP_UPSTREAM, then serve (the container's start)
#   oc-nginx reload LIST     render it for LIST, reload gracefully, and return only once every
#                            worker of the old configuration has exited: the requests it was
#                            serving are finished, so a replica just left out can be stopped
#   oc-nginx drain           the same reload with the configuration unchanged: once this node
#                            is out of the edge's route, its requests in flight finish and its
#                            idle keep-alive connections close, so the node can be stopped
#
# APP_UPSTREAM / LIST: comma-separated host:port of WordPress replicas (`wordpress:80` is the
# one on this node). A failed or timed-out replica is skipped for the next one
# (proxy_next_upstream), so one going away never fails a page request.
#
# The first replica of the list is the primary: it keeps WordPress's files (the uploads
# volume; the one backed up). What writes or serves them goes to it alone — wp-admin, the
# REST API (also as ?rest_route=), XML-RPC, the login and /wp-content/uploads/, matched on
# the decoded, normalised path — so an image uploaded through one
# replica is never missing on another; the public pages are spread over every replica. The
# list's order is the same on every web node (orchestrator/provision.py `upstreams`).
#
# No `keepalive` to the upstream: Apache runs a few prefork PHP workers (mpm_prefork.conf) and
# a kept-alive connection holds one of them; with nginx caching idle connections, a burst's
# new connections waited in Apache's listen queue behind them for over a minute (504s).
set -eu
CONF=/etc/nginx/conf.d/overcloud.conf

render() {
    list=$1
    case "$list" in ""|*[!A-Za-z0-9.:_,-]*|*,|,*|*,,*) echo "bad upstream list: $list" >&2; exit 2;; esac
    servers=""
    for s in $(echo "$list" | tr ',' ' '); do
        servers="$servers    server $s max_fails=1 fail_timeout=5s;
"
    done
    primary=${list%%,*}
    cat > "$CONF.new" <<CONF
upstream app {
$servers}
upstream primary {
    server $primary;
}
map \$uri \$oc_by_path {
    default app;
    "~^/(wp-admin|wp-json|wp-content/uploads)(/|\$)" primary;
    "~^/(wp-login|xmlrpc)\\.php\$" primary;
}
map \$args \$oc_pool {
    default \$oc_by_path;
    "~(^|&)rest_route=" primary;
}
server {
    listen 80 default_server;
    client_max_body_size 64m;
    location = /oc-health { access_log off; return 200 "ok\n"; }
    location / {
        proxy_pass http://\$oc_pool;
        proxy_http_version 1.1;
        proxy_set_header Host \$http_host;
        proxy_set_header X-Real-IP \$remote_addr;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_read_timeout 60s;
        proxy_next_upstream error timeout http_502 http_503;
    }
}
CONF
    mv "$CONF.new" "$CONF"
}

workers() {  # pids of the serving workers (their title is in /proc/PID/cmdline)
    for d in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)" in
            "nginx: worker process"*) echo "${d#/proc/}";;
        esac
    done
}

if [ "${1:-}" = reload ] || [ "${1:-}" = drain ]; then
    if [ "$1" = drain ]; then
        [ $# -eq 1 ] || { echo "usage: oc-nginx drain" >&2; exit 2; }
    else
        [ $# -eq 2 ] || { echo "usage: oc-nginx reload HOST:PORT[,HOST:PORT...]" >&2; exit 2; }
    fi
    old=$(workers)
    if [ "$1" = reload ]; then
        cp "$CONF" "$CONF.last"
        render "$2"
        if ! nginx -t -q; then
            mv "$CONF.last" "$CONF"
            echo "the new upstream list does not load; kept the old one" >&2
            exit 1
        fi
    fi
    nginx -s reload
    i=0
    for pid in $old; do  # drain: the old workers finish their requests, then exit
        while [ -e "/proc/$pid" ]; do
            i=$((i + 1))
            [ $i -le 600 ] || { echo "old workers still serving after 60 s" >&2; exit 1; }
            sleep 0.1
        done
    done
    [ "$1" = drain ] && echo "drained" || echo "upstream: $2"
    exit 0
fi

: "${APP_UPSTREAM:?}"
render "$APP_UPSTREAM"
exec nginx -g 'daemon off;'
