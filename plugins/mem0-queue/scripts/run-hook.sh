#!/bin/sh
# The plugin's hooks: Claude Code runs `run-hook.sh EVENT` (session-start,
# session-end, pre-compact) with the hook's JSON on stdin, and this runs
# `mem0-queue hook EVENT` on that same stdin and stdout.
#
# A hook must never break a session. When mem0-queue is missing, or is a
# version without this hook, this prints one line on stderr (Claude Code
# keeps it in its debug log) and exits 0, with nothing on stdout: the plain
# stdout of a SessionStart hook is added to the model's context, and an
# exit 2 from PreCompact would block the compaction.
set -u

event=${1-}
case $0 in
  */*) here=${0%/*} ;;
  *) here=. ;;
esac
# shellcheck source=find-mem0-queue.sh
. "$here/find-mem0-queue.sh"

if ! find_mem0_queue; then
  printf 'mem0-queue plugin (%s hook skipped): %s\n' "$event" "$MEM0_QUEUE_MISSING" >&2
  exit 0
fi
# A binary older than the plugin may not know this event: clap would exit 2.
if ! "$MEM0_QUEUE" hook "$event" --help </dev/null >/dev/null 2>&1; then
  printf 'mem0-queue plugin (%s hook skipped): %s has no "hook %s"; update it: %s\n' \
    "$event" "$MEM0_QUEUE" "$event" "$MEM0_QUEUE_INSTALL" >&2
  exit 0
fi
exec "$MEM0_QUEUE" hook "$event"
