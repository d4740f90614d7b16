#!/bin/sh
# Render the proxy configuration for APP_UPSTREAM (host:port of WordPress), then serve.
set -eu
: "${APP_UPSTREAM:?}"
case "$APP_UPSTREAM" in *[!A-Za-z0-9.:_-]*) echo "bad APP_UPSTREAM" >&2; exit 2;; esac
cat > /etc/nginx/conf.d/overcloud.conf <<CONF
server {
    listen 80 default_server;
    client_max_body_size 64m;
    location = /oc-health { access_log off; return 200 "ok\n"; }
    location / {
        proxy_pass http://${APP_UPSTREAM};
        proxy_set_header Host \$http_host;
        proxy_set_header X-Real-IP \$remote_addr;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_read_timeout 60s;
    }
}
CONF
exec nginx -g 'daemon off;'
