# shellcheck shell=sh disable=SC2034 # the variables set here are read by the scripts that source this file
# Sourced by run-hook.sh and run-server.sh (not run on its own): finds the
# mem0-queue binary, the same way for the hooks and for the MCP server.
#
# Claude Code started from a desktop launcher often has a PATH without
# ~/.cargo/bin, where `cargo install` puts the binary; so after
# $MEM0_QUEUE_BIN and PATH, cargo's own bin dir is tried.

# The one-line install advice the scripts print when the binary is missing.
# OWNER is the GitHub owner the repository is published under (see README).
MEM0_QUEUE_INSTALL='cargo install --locked --git https://github.com/OWNER/mem0-queue mem0-queue (or, in a clone, cargo install --locked --path host), then restart Claude Code'

# Sets MEM0_QUEUE to the binary and returns 0; or sets MEM0_QUEUE_MISSING
# to one line saying why there is none and returns 1. Prints nothing.
find_mem0_queue() {
  MEM0_QUEUE=
  MEM0_QUEUE_MISSING=
  if [ -n "${MEM0_QUEUE_BIN-}" ]; then
    if [ -f "$MEM0_QUEUE_BIN" ] && [ -x "$MEM0_QUEUE_BIN" ]; then
      MEM0_QUEUE=$MEM0_QUEUE_BIN
      return 0
    fi
    MEM0_QUEUE_MISSING="MEM0_QUEUE_BIN=$MEM0_QUEUE_BIN is not an executable file; fix or unset it"
    return 1
  fi
  if MEM0_QUEUE=$(command -v mem0-queue 2>/dev/null) && [ -n "$MEM0_QUEUE" ]; then
    return 0
  fi
  MEM0_QUEUE=${CARGO_HOME:-${HOME-}/.cargo}/bin/mem0-queue
  if [ -f "$MEM0_QUEUE" ] && [ -x "$MEM0_QUEUE" ]; then
    return 0
  fi
  MEM0_QUEUE=
  MEM0_QUEUE_MISSING="mem0-queue is not installed (not on PATH nor in ~/.cargo/bin); install it: $MEM0_QUEUE_INSTALL"
  return 1
}
