#!/usr/bin/env bash
# Launch an r1lab command on one node of a multi-node job: run the same line on every node.
#
#   MASTER_ADDR=10.0.0.1 NODE_RANK=<0..N-1> NNODES=2 recipes/accelerate/launch_multi_node.sh \
#       -m r1lab run --config recipes/seed.yaml --name big-run
#
# Reads (SLURM's variables are used when the generic ones are unset):
#   NNODES         number of machines            (SLURM_NNODES; else 2)
#   NODE_RANK      this machine's rank           (MACHINE_RANK, SLURM_NODEID; else 0)
#   MASTER_ADDR    host of the rank-0 machine    (required; under SLURM the first host of the job)
#   MASTER_PORT    TCP port on it                (29500)
#   GPUS_PER_NODE  processes per machine         (GPUs nvidia-smi lists; else 8)
#   ACCELERATE_CONFIG  accelerate config file    (recipes/accelerate/multi_node.yaml next to this script)
# R1LAB_DRY_RUN=1 prints the accelerate command instead of running it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="${ACCELERATE_CONFIG:-$here/multi_node.yaml}"
nnodes="${NNODES:-${SLURM_NNODES:-2}}"
node_rank="${NODE_RANK:-${MACHINE_RANK:-${SLURM_NODEID:-0}}}"
master_port="${MASTER_PORT:-29500}"
master_addr="${MASTER_ADDR:-}"
if [[ -z "$master_addr" && -n "${SLURM_JOB_NODELIST:-}" ]] && command -v scontrol >/dev/null; then
  master_addr="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
fi
if [[ -z "$master_addr" ]]; then
  echo "launch_multi_node.sh: error: MASTER_ADDR is not set (the IP or host name of the rank-0 node)" >&2
  exit 2
fi
if [[ -z "${GPUS_PER_NODE:-}" ]]; then
  GPUS_PER_NODE="$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)"
  [[ "$GPUS_PER_NODE" -gt 0 ]] || GPUS_PER_NODE=8
fi
for pair in "NNODES:$nnodes" "NODE_RANK:$node_rank" "MASTER_PORT:$master_port" "GPUS_PER_NODE:$GPUS_PER_NODE"; do
  if ! [[ "${pair#*:}" =~ ^[0-9]+$ ]]; then
    echo "launch_multi_node.sh: error: ${pair%%:*} must be a whole number, got '${pair#*:}'" >&2
    exit 2
  fi
done
if (( node_rank >= nnodes )); then
  echo "launch_multi_node.sh: error: NODE_RANK=$node_rank but NNODES=$nnodes (ranks are 0..NNODES-1)" >&2
  exit 2
fi

cmd=(accelerate launch --config_file "$config"
     --num_machines "$nnodes" --num_processes "$((nnodes * GPUS_PER_NODE))"
     --machine_rank "$node_rank" --main_process_ip "$master_addr" --main_process_port "$master_port"
     "$@")
if [[ "${R1LAB_DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
