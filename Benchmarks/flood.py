#!/usr/bin/env python3
"""Issue 12 item 4: another client's ping latency while connections flood the JSON-lines server.
   flood.py HOST PORT SECONDS lines [CONNECTIONS=8]   each streams 1 MiB lines of nested JSON
   flood.py HOST PORT SECONDS pings [CONNECTIONS=3]   each pipelines 300,000 pings in one write
Prints p50/p99/max of a ninth client's pings; run by Benchmarks/flood.sh."""
import socket, sys, threading, time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "lines"
connections = int(sys.argv[5]) if len(sys.argv) > 5 else (8 if mode == "lines" else 3)
depth = 400
line = ('{"op":"ping","x":' + '{"a":' * depth + '"' + 'x' * (1024 * 1024 - 40 - 6 * depth) + '"' + '}' * depth + '}\n').encode()
stop = time.time() + seconds
sent = [0]

def drain(s):
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass

def flood():
    s = socket.create_connection((host, port))
    threading.Thread(target=drain, args=(s,), daemon=True).start()
    try:
        if mode == "pings":
            s.sendall(b'{"op":"ping"}\n' * 300000)
            sent[0] += 300000
        else:
            while time.time() < stop:
                s.sendall(line)
                sent[0] += 1
    except OSError:
        pass

for _ in range(connections):
    threading.Thread(target=flood, daemon=True).start()
time.sleep(0.5)
p = socket.create_connection((host, port))
f = p.makefile('rb')
latencies = []
while time.time() < stop:
    start = time.perf_counter()
    p.sendall(b'{"op":"ping"}\n')
    f.readline()
    latencies.append((time.perf_counter() - start) * 1000)
    time.sleep(0.005 if mode == "lines" else 0.02)
latencies.sort()
what = "1 MiB nested-JSON lines" if mode == "lines" else "pipelined pings"
print(f"ping during {connections} connections of {what} ({sent[0]} sent): n={len(latencies)} "
      f"p50 {latencies[len(latencies)//2]:.2f} ms  p99 {latencies[len(latencies)*99//100]:.2f} ms  max {latencies[-1]:.2f} ms")
