#!/bin/sh
# The plugin's MCP server: Claude Code starts this, and it becomes
# `mem0-queue serve` (exec, so stdin and stdout are the MCP stream and no
# shell stays behind).
#
# When mem0-queue is missing it prints one line on stderr saying how to
# install it, which Claude Code keeps in the server's log, and exits 1:
# `claude mcp list` then shows the server as failed.
set -u

case $0 in
  */*) here=${0%/*} ;;
  *) here=. ;;
esac
# shellcheck source=find-mem0-queue.sh
. "$here/find-mem0-queue.sh"

if ! find_mem0_queue; then
  printf 'mem0-queue plugin (MCP server not started): %s\n' "$MEM0_QUEUE_MISSING" >&2
  exit 1
fi
exec "$MEM0_QUEUE" serve "$@"
