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

# haproxy_http_config FILE: HAProxy at its best for HTTP here, on
# 127.0.0.1:9100 in front of both backends: keep-alive both ways, backend
# connections shared between clients (http-reuse always), X-Forwarded-For
# added as Switchyard adds it.
haproxy_http_config() {
  cat > "$1" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:9100
  default_backend b
backend b
  balance roundrobin
  server b1 127.0.0.1:9001
  server b2 127.0.0.1:9002
CONF
}
