#!/bin/bash
# Stop the daemons started by start.sh <dir> (by pid file) and make sure none is left.
#   usage: stop.sh <dir>
set -u
if [ $# -ne 1 ]; then echo "usage: $0 <dir>" >&2; exit 2; fi
DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "[stop.sh] no such dir $1" >&2; exit 0; }
export SLURM_CONF="$DIR/slurm.conf"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# cancel remaining jobs so their processes go away with the daemons
if alive "$DIR/run/slurmctld.pid"; then
    ids=$(squeue -h -o %i 2>/dev/null)
    if [ -n "$ids" ]; then
        scancel --quiet $ids 2>/dev/null
        # let slurmd finish the jobs and report back before it is stopped (up to 10 s)
        for _ in $(seq 50); do
            [ -z "$(squeue -h -t R,CG,S -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

stop_pids() {  # pidfile...: SIGTERM all, wait up to 10 s, then SIGKILL
    local f pids=()
    for f in "$@"; do alive "$f" && pids+=("$(cat "$f")"); done
    [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 100); do
        local any=0 p
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && any=1; done
        [ $any = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            echo "[stop.sh] pid $p did not exit on TERM, sending KILL" >&2
            kill -KILL "$p" 2>/dev/null
        fi
    done
    rm -f "$@"
}

stop_pids "$DIR/run/slurmd.pid"        # first, while slurmctld can still answer it

# leftover slurmstepd processes of this cluster (their environment names this slurm.conf)
for p in $(pgrep -x slurmstepd 2>/dev/null); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF"; then
        echo "[stop.sh] killing leftover slurmstepd $p" >&2
        kill -KILL "$p" 2>/dev/null
    fi
done

stop_pids "$DIR/run/slurmctld.pid" "$DIR/run/munged.pid"
rm -f "$DIR/munge/munge.socket.2" "$DIR/munge/munge.socket.2.lock"
echo "[stop.sh] stopped" >&2
