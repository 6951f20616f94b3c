"""Benchmark: what two concurrent heatmaps at grid 16 cost the server, and a detection sent meanwhile.

Starts `mimicry serve` from the checkout given (so two commits can be compared on the same machine, in the
same hour), warms it up, then sends two `/v1/explain?grid=16` (257 forward passes each) at once and, 0.3 s
later, ten normal detections one after the other; samples the server's RSS every 0.1 s. Prints the
explains' statuses and seconds, RSS before, peak and 3 s after, and the detections' latency.

``python bench/explain_load_benchmark.py .``
"""
import asyncio, os, subprocess, sys, tempfile, time, socket
from pathlib import Path
import httpx
ROOT = Path(sys.argv[1]); EX = sorted((ROOT / "examples").glob("*.png"))[0].read_bytes()
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1]) / 1024
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
tmp = tempfile.mkdtemp()
env = {**os.environ, "MIMICRY_HOME": tmp, "MIMICRY_INTRA_OP_THREADS": "2", "MIMICRY_REQUEST_TIMEOUT_S": "120"}
p = subprocess.Popen([sys.executable, "-m", "mimicry", "serve", "--model", str(ROOT / "models/default"), "--port", str(port), "--log-level", "warning"], env=env, cwd=tmp)
url = f"http://127.0.0.1:{port}"
while True:
    try:
        if httpx.get(url + "/readyz").status_code == 200: break
    except httpx.TransportError: time.sleep(0.3)
for _ in range(10): httpx.post(url + "/v1/detect", content=EX, headers={"Content-Type": "image/png"})
r0 = rss(p.pid); peak = [r0]; lat = []
async def main():
    async with httpx.AsyncClient(timeout=300) as c:
        async def ex():
            t = time.perf_counter(); r = await c.post(url + "/v1/explain?grid=16", content=EX, headers={"Content-Type": "image/png"}); return r.status_code, time.perf_counter() - t
        async def det():
            await asyncio.sleep(0.3)
            for _ in range(10):
                t = time.perf_counter(); await c.post(url + "/v1/detect", content=EX, headers={"Content-Type": "image/png"}); lat.append(time.perf_counter() - t)
        async def watch(stop):
            while not stop.is_set():
                peak.append(rss(p.pid)); await asyncio.sleep(0.1)
        stop = asyncio.Event(); w = asyncio.create_task(watch(stop))
        res = await asyncio.gather(ex(), ex(), det()); stop.set(); await w
        return res
res = asyncio.run(main())
time.sleep(3)
print({"explains": res[:2], "rss_before": round(r0), "rss_peak": round(max(peak)), "rss_3s_after": round(rss(p.pid)), "detect_latency_max_s": round(max(lat), 3), "detect_latency_mean_s": round(sum(lat)/len(lat), 3)})
p.terminate(); p.wait()
