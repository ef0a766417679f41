#!/usr/bin/env python3
"""A bindu `command` agent in plain Python (standard library only).

    BINDU_HANDLER=command BINDU_HANDLER_COMMAND="python3 examples/command/agent.py" bindu serve

The engine starts this script once and keeps it running: it reads one JSON task per line
on stdin and answers on stdout with JSON lines (see "The command handler" in the README).
Logs go to stderr; the engine quotes their tail when a task fails.

What it does: asks for a name when the message is empty (input-required), then streams a
greeting word by word as artifact chunks, with a status line first. It mentions how many
tasks were referenced (referenceTaskIds) and stops early when the engine sends a cancel line.
"""
import json
import queue
import sys
import threading
import time

# A reader thread turns stdin into a queue, so a cancel line can be noticed while a task runs.
lines = queue.Queue()
pending = []  # lines read while checking for a cancel (a next task), kept for later


def read_stdin():
    for line in sys.stdin:
        if line.strip():
            lines.put(json.loads(line))
    lines.put(None)  # end of input: the engine is gone


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def canceled():
    """True when the engine has sent a cancel line (checked between chunks)."""
    while True:
        try:
            msg = lines.get_nowait()
        except queue.Empty:
            return False
        if msg is not None and msg.get("type") == "cancel":
            return True
        pending.append(msg)


def handle(task):
    text = task["text"].strip()
    if not text:
        send({"type": "input-required", "prompt": "Whom should I greet?"})
        return
    send({"type": "status", "text": "Composing a greeting..."})
    words = f"Hello, {text}! Nice to meet you.".split(" ")
    if task["references"]:
        words += ["(I", "also", "read", f"{len(task['references'])}", "earlier", "task(s).)"]
    for i, word in enumerate(words):
        if canceled():
            send({"type": "error", "message": "canceled"})
            return
        send({"type": "chunk", "text": word if i == 0 else " " + word})
        time.sleep(0.05)
    send({"type": "result"})


def main():
    print("greeter agent ready", file=sys.stderr, flush=True)
    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        msg = pending.pop(0) if pending else lines.get()
        if msg is None:
            return
        if msg.get("type") != "task":
            continue  # a late cancel for a task that already ended
        try:
            handle(msg)
        except Exception as e:  # report, and stay alive for the next task
            send({"type": "error", "message": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
