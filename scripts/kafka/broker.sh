#!/usr/bin/env bash
# Provision, start and stop a single-node Apache Kafka broker in KRaft mode
# without Docker. The broker's jars come from Maven Central through Maven
# (pinned in pom.xml beside this script) and are cached once per version.
#
#   broker.sh provision            fetch the jars into the cache folder
#   broker.sh start DATA_DIR       format DATA_DIR if new, start the broker on
#                                  free 127.0.0.1 ports, wait until it accepts
#                                  requests, print the bootstrap address
#   broker.sh stop DATA_DIR        stop the broker started in DATA_DIR by PID
#
# Environment: HEVLAYER_KAFKA_CACHE (default ~/.cache/hevlayer/kafka),
# HEVLAYER_KAFKA_HEAP (default 512m), HEVLAYER_KAFKA_START_TIMEOUT_S
# (default 90).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
cache=${HEVLAYER_KAFKA_CACHE:-$HOME/.cache/hevlayer/kafka}
libs="$cache/$kafka_version/libs"
heap=${HEVLAYER_KAFKA_HEAP:-512m}
start_timeout_s=${HEVLAYER_KAFKA_START_TIMEOUT_S:-90}

log() { echo "broker.sh: $*" >&2; }

provision() {
  if [ -f "$libs/.complete" ]; then
    return 0
  fi
  command -v java >/dev/null || { log "java not found; install a JDK 17 or newer"; exit 1; }
  command -v mvn >/dev/null || { log "mvn not found; install Apache Maven"; exit 1; }
  log "fetching Apache Kafka $kafka_version jars into $libs"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime
  touch "$libs/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

java_cmd() {
  local data_dir=$1
  shift
  java -Xms128m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$data_dir/log4j2.properties" \
    -cp "$libs/*" "$@"
}

write_configs() {
  local data_dir=$1 port=$2 controller_port=$3
  cat >"$data_dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data_dir/logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.backoff.ms=1000
EOF
  cat >"$data_dir/log4j2.properties" <<EOF
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$data_dir/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
EOF
}

start() {
  local data_dir
  data_dir=$(mkdir -p "$1" && cd "$1" && pwd)
  provision

  if [ -f "$data_dir/broker.pid" ] && kill -0 "$(cat "$data_dir/broker.pid")" 2>/dev/null; then
    cat "$data_dir/bootstrap"
    return 0
  fi

  # A data directory keeps its ports across restarts, so clients and the
  # controller quorum find the broker where it was.
  if [ ! -f "$data_dir/ports" ]; then
    echo "$(free_port) $(free_port)" >"$data_dir/ports"
  fi
  local port controller_port
  read -r port controller_port <"$data_dir/ports"
  write_configs "$data_dir" "$port" "$controller_port"

  if [ ! -f "$data_dir/logs/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java_cmd "$data_dir" kafka.tools.StorageTool random-uuid)
    java_cmd "$data_dir" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$data_dir/server.properties" >"$data_dir/format.log" 2>&1 \
      || { log "formatting $data_dir failed:"; cat "$data_dir/format.log" >&2; exit 1; }
  fi

  # A restart must not find the previous run's "started" line.
  if [ -f "$data_dir/broker.log" ]; then
    mv "$data_dir/broker.log" "$data_dir/broker.log.1"
  fi
  nohup java -Xms128m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$data_dir/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$data_dir/server.properties" \
    >"$data_dir/broker.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$data_dir/broker.pid"
  echo "127.0.0.1:$port" >"$data_dir/bootstrap"

  local waited=0
  until grep -q "Kafka Server started" "$data_dir/broker.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker exited during start-up; last lines of its log:"
      tail -n 40 "$data_dir/broker.log" "$data_dir/broker.out" >&2 || true
      exit 1
    fi
    if [ "$waited" -ge "$((start_timeout_s * 5))" ]; then
      log "broker did not start within ${start_timeout_s}s; stopping PID $pid"
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
  log "broker PID $pid listening on 127.0.0.1:$port (data in $data_dir)"
  echo "127.0.0.1:$port"
}

stop() {
  local data_dir=$1
  local pid_file="$data_dir/broker.pid"
  [ -f "$pid_file" ] || { log "no broker.pid in $data_dir; nothing to stop"; return 0; }
  local pid
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "broker PID $pid still running after 30s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pid_file"
  log "broker PID $pid stopped"
}

case "${1:-}" in
  provision) provision ;;
  start) [ $# -eq 2 ] || { log "usage: broker.sh start DATA_DIR"; exit 2; }; start "$2" ;;
  stop) [ $# -eq 2 ] || { log "usage: broker.sh stop DATA_DIR"; exit 2; }; stop "$2" ;;
  *) log "usage: broker.sh provision | start DATA_DIR | stop DATA_DIR"; exit 2 ;;
esac
