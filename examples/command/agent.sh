#!/bin/sh
# A bindu `command` agent in POSIX shell (needs jq):
#
#   BINDU_HANDLER=command BINDU_HANDLER_COMMAND="sh examples/command/agent.sh" bindu serve
#
# Reads one JSON task per line on stdin, answers with one JSON line on stdout: the user's
# text upper-cased, or a request for input when the message has no text.
set -u
while IFS= read -r line; do
  [ "$(printf '%s' "$line" | jq -r '.type')" = task ] || continue
  text=$(printf '%s' "$line" | jq -r '.text')
  if [ -z "$text" ]; then
    jq -cn '{type: "input-required", prompt: "Say something and I will shout it back."}'
  else
    printf '%s' "$text" | jq -cR '{type: "status", text: "shouting"}'
    printf '%s' "$text" | tr '[:lower:]' '[:upper:]' | jq -csR '{type: "result", text: .}'
  fi
done
