#!/usr/bin/env python3
"""N simultaneous cold GETs: opens N keep-alive connections first, then sends every request at
once and times each until its whole body arrived. Prints: ok=<n> p50_ms=<x> p99_ms=<y> max_ms=<z>.
Usage: cold_burst.py HOST PORT PATH [N]"""
import asyncio, sys, time

async def one(host, port, path, start_evt, results):
    r, w = await asyncio.open_connection(host, port)
    await start_evt.wait()
    t0 = time.perf_counter()
    w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await r.readexactly(length)
    results.append((status, (time.perf_counter() - t0) * 1000))
    w.close()

async def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    start_evt, results = asyncio.Event(), []
    tasks = [asyncio.create_task(one(host, port, path, start_evt, results)) for _ in range(n)]
    await asyncio.sleep(0.5)  # let every connection open
    start_evt.set()
    await asyncio.gather(*tasks)
    lat = sorted(ms for _, ms in results)
    ok = sum(1 for s, _ in results if s == 200)
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
    print(f"ok={ok} p50_ms={pct(0.5):.1f} p99_ms={pct(0.99):.1f} max_ms={lat[-1]:.1f}")

asyncio.run(main())
