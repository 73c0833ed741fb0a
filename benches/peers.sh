# Sourced by the bench scripts (e2e.sh, h3.sh, http_cpu_split.sh): the
# backends and HAProxy's HTTP configuration they share, so that their
# figures are measured against the same peers.

# start_backends WORK: the response bodies (100 B at /, 4.9 KB at /big, 256
# KB at /huge) and two one-worker nginx backends on 127.0.0.1:9001 and
# :9002, pinned to core 1. Their pids are appended to PIDS and BACKENDS.
start_backends() {
  local work=$1 port
  head -c 100 /dev/zero | tr '\0' 'x' > "$work/index"
  head -c 4900 /dev/zero | tr '\0' 'y' > "$work/big"
  head -c 262144 /dev/zero | tr '\0' 'z' > "$work/huge"
  for port in 9001 9002; do
    mkdir -p "$work/n$port"
    cat > "$work/n$port/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/n$port/error.log;
pid $work/n$port/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  open_file_cache max=100;
  client_body_temp_path $work/n$port; proxy_temp_path $work/n$port;
  fastcgi_temp_path $work/n$port; uwsgi_temp_path $work/n$port; scgi_temp_path $work/n$port;
  server {
    listen 127.0.0.1:$port reuseport;
    location = / { root $work; try_files /index =404; }
    location = /big { root $work; }
    location = /huge { root $work; }
  }
}
CONF
    taskset -c 1 nginx -c "$work/n$port/nginx.conf" -p "$work/n$port" >/dev/null 2>&1 &
    PIDS+=($!); BACKENDS+=($!)
  done
}

# haproxy_config FILE LINE...: HAProxy on one thread, on 127.0.0.1:9100 in
# front of both backends, round-robin, each LINE added to its defaults (the
# mode and what suits it). `defer-accept` (TCP_DEFER_ACCEPT), as Switchyard
# and the nginx peer (`deferred`) listen: a connection is accepted once its
# first bytes are in. e2e.sh's TCP and HTTP runs and http_cpu_split.sh
# differ only in those lines.
haproxy_config() {
  local file=$1; shift
  {
    printf 'global\n  nbthread 1\n  maxconn 4000\ndefaults\n'
    printf '  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n'
    printf '  %s\n' "$@"
    cat <<CONF
frontend f
  bind 127.0.0.1:9100 defer-accept
  default_backend b
backend b
  balance roundrobin
  server b1 127.0.0.1:9001
  server b2 127.0.0.1:9002
CONF
  } > "$file"
}

# haproxy_http_config FILE: HAProxy at its best for HTTP here: keep-alive
# both ways, backend connections shared between clients (http-reuse always),
# X-Forwarded-For added as Switchyard adds it.
haproxy_http_config() {
  haproxy_config "$1" "mode http" "option http-keep-alive" "option forwardfor" "http-reuse always"
}
