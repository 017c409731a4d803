"""Runs a stdio program and logs the method of every message sent to it.

    method_log.py LOG -- PROGRAM [ARGS...]

Standard input is passed on to PROGRAM line by line; each line's JSON-RPC `method` (or
`-` for an answer) is appended to LOG first. PROGRAM's standard output and error are its own.
Standard library only.
"""

import json
import subprocess
import sys

log_path = sys.argv[1]
program = sys.argv[sys.argv.index("--") + 1:]
child = subprocess.Popen(program, stdin=subprocess.PIPE)
for line in sys.stdin.buffer:
    try:
        method = json.loads(line).get("method") or "-"
    except ValueError:
        method = "?"
    with open(log_path, "a") as log:
        log.write(method + "\n")
    try:
        child.stdin.write(line)
        child.stdin.flush()
    except BrokenPipeError:
        break
try:
    child.stdin.close()
except BrokenPipeError:
    pass
sys.exit(child.wait())
