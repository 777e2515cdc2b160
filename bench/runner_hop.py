"""What the runner process hop costs per token: one step's events pickled, written to the socket pair, read and
unpickled in the API process, exactly as runtime/inference/runner.py frames them.

    python bench/runner_hop.py [--messages 20000] [--streams 1]

Prints microseconds of wall and CPU time (both processes) per step message, and that cost as a share of one
token's time at 150 tok/s (llama-server's single-stream speed on the issue's 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

CHILD = """
import sys, time
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
n, streams = conn.recv()
step = [("token", f"chatcmpl-{i:024x}", " word", None) for i in range(streams)]
t0 = time.process_time()
for _ in range(n):
    conn.send(step)
conn.send(("cpu", time.process_time() - t0))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=1, help="token events per step message")
    args = ap.parse_args()
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(theirs.fileno())], pass_fds=(theirs.fileno(),))
    theirs.close()
    conn = Connection(ours.detach())
    conn.send((args.messages, args.streams))
    first = conn.recv()
    start, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(args.messages - 1):
        conn.recv()
    wall = time.perf_counter() - start
    parent_cpu = time.process_time() - cpu0
    _, child_cpu = conn.recv()
    proc.wait()
    assert first[0][0] == "token"
    per = args.messages - 1
    cpu_us = (parent_cpu / per + child_cpu / args.messages) * 1e6
    token_us = 1e6 / 150
    print(f"{args.streams} stream(s) per step, {args.messages} messages; load {os.getloadavg()[0]:.2f}")
    print(f"wall {wall / per * 1e6:.1f} us/message, CPU {cpu_us:.1f} us/message (both processes): "
          f"{cpu_us / token_us * 100:.2f}% of a token at 150 tok/s (goal: the hop keeps single-stream decode >= "
          f"1.0 of llama-server)")


if __name__ == "__main__":
    main()
