#!/usr/bin/env python3
"""Red-team scenario of issue 12 item 4: N connections each pipeline 300,000 pings in one write
(4.2 MB) while another client pings every 20 ms for 8 s; prints that client's latency.
   python3 Benchmarks/pipeline.py PORT [CONNECTIONS]   (against a running `sandgate serve`)"""
import socket, sys, threading, time

host, port = "127.0.0.1", int(sys.argv[1])
connections = int(sys.argv[2]) if len(sys.argv) > 2 else 3
stop = time.time() + 8

def flood():
    s = socket.create_connection((host, port))
    def drain():
        try:
            while s.recv(1 << 16):
                pass
        except OSError:
            pass
    threading.Thread(target=drain, daemon=True).start()
    try:
        s.sendall(b'{"op":"ping"}\n' * 300000)
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
    time.sleep(0.02)
latencies.sort()
print(f"ping while {connections} connections pipeline 300,000 pings each: n={len(latencies)} "
      f"p50 {latencies[len(latencies)//2]:.1f} ms  p99 {latencies[len(latencies)*99//100]:.1f} ms  max {latencies[-1]:.1f} ms")
