#!/usr/bin/env python3
"""Issue 12 item 4: another client's ping latency while 8 connections stream 1 MiB lines of
nested JSON at the JSON-lines server. Prints p50/p99/max over SECONDS; run by Benchmarks/flood.sh."""
import socket, sys, threading, time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
depth = 400
line = ('{"op":"ping","x":' + '{"a":' * depth + '"' + 'x' * (1024 * 1024 - 40 - 6 * depth) + '"' + '}' * depth + '}\n').encode()
stop = time.time() + seconds
sent = [0]

def flood():
    s = socket.create_connection((host, port))
    s.settimeout(5)
    reader = threading.Thread(target=lambda: drain(s), daemon=True)
    reader.start()
    try:
        while time.time() < stop:
            s.sendall(line)
            sent[0] += 1
    except OSError:
        pass

def drain(s):
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass

threads = [threading.Thread(target=flood, daemon=True) for _ in range(8)]
for t in threads: t.start()
time.sleep(0.5)
p = socket.create_connection((host, port))
f = p.makefile('rb')
latencies = []
while time.time() < stop:
    start = time.perf_counter()
    p.sendall(b'{"op":"ping"}\n')
    f.readline()
    latencies.append((time.perf_counter() - start) * 1000)
    time.sleep(0.005)
latencies.sort()
print(f"ping during a flood of 8 x 1 MiB nested-JSON lines ({sent[0]} lines sent): n={len(latencies)} "
      f"p50 {latencies[len(latencies)//2]:.2f} ms  p99 {latencies[len(latencies)*99//100]:.2f} ms  max {latencies[-1]:.2f} ms")
