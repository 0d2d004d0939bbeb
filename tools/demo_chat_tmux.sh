#!/usr/bin/env bash
# A tools/chat.py session driven through tmux (send-keys, capture-pane): one question
# answered with per-token figures streamed, then a second one stopped with Ctrl-C in the
# middle of its answer. Checks that the chat exited 130 and that no simulator process
# is left. Writes the pane after each stage to OUT (default results/loop/tmux-chat.txt).
#
#   bash tools/demo_chat_tmux.sh [ENGINE] [POLICY] [OUT]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${1:-rtl}"
POLICY="${2:-spatten-value-heads}"
OUT="${3:-$ROOT/results/loop/tmux-chat.txt}"
S="spatten-chat-$$"
mkdir -p "$(dirname "$OUT")"
command -v tmux >/dev/null || { echo "tmux is not installed: apt-get install tmux" >&2; exit 2; }

wait_for() {  # wait_for PATTERN SECONDS [COUNT]: until PATTERN is on COUNT (default 1) lines
  local end=$((SECONDS + $2)) n
  while [ $SECONDS -lt $end ]; do
    n=$(tmux capture-pane -p -t "$S" -S -200 | grep -c -- "$1" || true)
    if [ "$n" -ge "${3:-1}" ]; then return 0; fi
    sleep 2
  done
  echo "timed out waiting for '$1'" >&2
  tmux capture-pane -p -t "$S" -S -200 >&2
  return 1
}

tmux new-session -d -s "$S" -x 160 -y 60
tmux set-option -t "$S" remain-on-exit on
tmux send-keys -t "$S" "cd $ROOT && HF_HUB_OFFLINE=1 .venv/bin/python tools/chat.py --engine $ENGINE --policy $POLICY --per-token --max-new-tokens 16 --workdir results/loop/tmux-sim; echo EXIT=\$?" Enter
wait_for "^you>" 900
tmux send-keys -t "$S" "Name three colors of the sea." Enter
wait_for "\[$ENGINE\] .* tokens after" 1800
{ echo "=== after the first answer ==="; tmux capture-pane -p -t "$S" -S -200; } > "$OUT"
tmux send-keys -t "$S" "Write a long poem about a lighthouse." Enter
wait_for "\[  3\]" 1800 2   # the third token of the second answer
SIM_BEFORE=$(pgrep -f "VSpAttenTop --stream.*tmux-sim" | tr '\n' ' ' || true)
tmux send-keys -t "$S" C-c
wait_for "^EXIT=[0-9]" 120
sleep 1
SIM_AFTER=$(pgrep -f "VSpAttenTop --stream.*tmux-sim" | tr '\n' ' ' || true)
{ echo; echo "=== after Ctrl-C ==="; tmux capture-pane -p -t "$S" -S -200
  echo; echo "simulator processes before Ctrl-C: ${SIM_BEFORE:-none}"
  echo "simulator processes of this session after Ctrl-C: ${SIM_AFTER:-none}"; } >> "$OUT"
tmux kill-session -t "$S"
cat "$OUT"
[ -z "$SIM_AFTER" ]
