#!/bin/sh
# Entry point of the sparsearch image.
#
# A Ray driver must run on a node of the Ray cluster (its local raylet holds the objects it
# puts, such as a job's data set). So when SPARSEARCH_RAY_ADDRESS is set (the scheduler), this
# container first joins the cluster as a node without CPUs (it trains nothing), then runs the
# command. Without it (the API, the Ray head and workers) the command runs as given.
#
# Token authentication: `ray start` here and the driver in the command both read Ray's own
# RAY_AUTH_MODE and RAY_AUTH_TOKEN from the environment (docker-compose.yml gives every Ray
# process the same ones); a wrong or missing token makes every join attempt fail.
set -eu

if [ -n "${SPARSEARCH_RAY_ADDRESS:-}" ]; then
    tries=0
    until ray start --address="$SPARSEARCH_RAY_ADDRESS" --num-cpus=0 --disable-usage-stats; do
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            echo "cannot join the Ray cluster at $SPARSEARCH_RAY_ADDRESS: is its head up," \
                "and are RAY_AUTH_MODE=token and RAY_AUTH_TOKEN the ones its nodes have?" >&2
            exit 1
        fi
        sleep 2
    done
fi

exec "$@"
