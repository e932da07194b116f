#!/usr/bin/env python
"""Load test of the HTTP service (scripts/serve.py) over loopback: latency and throughput vs. concurrency.

    HF_HUB_OFFLINE=1 python benchmarks/serve_load.py --model runs/ablations/convergence/base

Starts the service as a subprocess (uvicorn on a free loopback port, as `scripts/serve.py` runs it),
then drives it with 1, 8 and 32 concurrent clients for a fixed time each. Every request is a real
MovieLens-100K user: the user's whole history but the last item, in time order, ``top_k=10`` (the
leave-one-out test input). Records p50/p90/p99 latency, throughput, responses by status, and how
many histories the service scored per forward pass (from its own /metrics).

Targets: no 5xx at any concurrency, and p50 at 8 clients <= 3x the single-client p50 (micro-batching
is what keeps latency from growing with the clients). Writes benchmarks/results/serve-cpu.{json,md}
with the command, the machine and the versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmark_utils import DEFAULT_MODEL, REPO, RESULTS, load_average, percentile, run_header, write_results

TARGET_RATIO = 3.0
TOP_K = 10


def user_histories(limit: int | None = None) -> list[list[str]]:
    """Each MovieLens-100K user's items in time order, without the last (the test-time input)."""
    from hf_seqrec.data.builtin import load_builtin

    interactions, _ = load_builtin("movielens-100k")
    ordered = interactions.sort_values(["user_id", "timestamp", "row"], kind="stable")
    histories = [group["item_id"].astype(str).tolist()[:-1] for _, group in ordered.groupby("user_id", sort=True)]
    return histories[:limit] if limit else histories


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "scripts" / "serve.py"), "--model", str(args.model), "--host", "127.0.0.1",
        "--port", str(port), "--batch_wait_ms", str(args.batch_wait_ms), "--max_batch_size", str(args.max_batch_size),
        "--no_access_log", "--log_level", "warning", "--api_key_env", "SEQREC_BENCH_KEY",
    ]
    if args.precision:
        command += ["--precision", args.precision]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SEQREC_BENCH_KEY": args.key}
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(server: subprocess.Popen, url: str, timeout: float, log_path: Path) -> float:
    import httpx

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def batch_counters(text: str) -> dict[str, float]:
    """Histories scored, forward passes and worker seconds so far, from the service's /metrics."""
    values = {}
    for name in ("seqrec_batch_size_sum", "seqrec_batch_size_count", "seqrec_batch_duration_seconds_sum"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return values


async def drive(url: str, key: str, histories: list[list[str]], clients: int, seconds: float, offset: int) -> dict:
    """``clients`` coroutines, each sending one request after another for ``seconds``."""
    import httpx

    latencies: list[float] = []
    statuses: Counter = Counter()
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    counter = {"next": offset}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        metrics_before = (await client.get("/metrics")).text
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                history = histories[counter["next"] % len(histories)]
                counter["next"] += 1
                start = time.perf_counter()
                try:
                    response = await client.post("/recommend", json={"history": history, "top_k": TOP_K})
                    status = str(response.status_code)
                    if response.status_code == 200 and len(response.json()["recommendations"]) != TOP_K:
                        status = "200-wrong-length"
                except httpx.HTTPError as error:
                    status = type(error).__name__
                latencies.append(time.perf_counter() - start)
                statuses[status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        metrics_after = (await client.get("/metrics")).text
    before, after = batch_counters(metrics_before), batch_counters(metrics_after)
    delta = {name: after[name] - before[name] for name in after}
    forward_passes = delta["seqrec_batch_size_count"]
    ms = lambda seconds: round(1000 * seconds, 1)  # noqa: E731
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "p50_ms": ms(statistics.median(latencies)),
        "p90_ms": ms(percentile(latencies, 0.90)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "mean_ms": ms(statistics.fmean(latencies)),
        "statuses": dict(sorted(statuses.items())),
        "forward_passes": int(forward_passes),
        "histories_per_forward_pass": round(delta["seqrec_batch_size_sum"] / forward_passes, 2) if forward_passes else None,
        # The share of the level's time the worker thread spent scoring batches (100%: the model never waited).
        "worker_busy_percent": round(100 * delta["seqrec_batch_duration_seconds_sum"] / elapsed, 1),
        "worker_ms_per_batch": round(1000 * delta["seqrec_batch_duration_seconds_sum"] / forward_passes, 1) if forward_passes else None,
    }


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("fastapi", "uvicorn", "httpx", "prometheus_client", "pydantic")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint directory (default: the trained LM run)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=45.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup_seconds", type=float, default=8.0, help="unmeasured load before the first level")
    parser.add_argument("--batch_wait_ms", type=float, default=5.0)
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default=None)
    parser.add_argument("--users", type=int, default=None, help="use only the first N users (default: all 943)")
    parser.add_argument("--startup_timeout", type=float, default=300.0)
    parser.add_argument("--output", default=str(RESULTS / "serve-cpu"), help="path without extension")
    args = parser.parse_args(argv)
    args.key = os.urandom(16).hex()  # the service runs with a key, as deployed; it is never written out
    levels = [int(c) for c in args.clients.split(",")]
    load_before = load_average()
    histories = user_histories(args.users)
    lengths = sorted(len(h) for h in histories)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="serve-load-", suffix=".log")[1])
    with open(log_path, "w") as log:
        server = start_server(args, port, log)
        try:
            startup = wait_ready(server, url, args.startup_timeout, log_path)
            if args.warmup_seconds:
                asyncio.run(drive(url, args.key, histories, max(levels), args.warmup_seconds, offset=0))
            runs = []
            for index, clients in enumerate(levels):
                runs.append(asyncio.run(drive(url, args.key, histories, clients, args.seconds, offset=7919 * (index + 1))))
                print(json.dumps(runs[-1]), flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    server_log = log_path.read_text()
    log_path.unlink()

    by_clients = {run["clients"]: run for run in runs}
    server_errors = sum(n for run in runs for status, n in run["statuses"].items() if not status.startswith(("2", "4")))
    other_errors = sum(n for run in runs for status, n in run["statuses"].items() if status != "200")
    target = {"no_5xx": {"server_errors": server_errors, "met": server_errors == 0}}
    if 1 in by_clients and 8 in by_clients:
        ratio = by_clients[8]["p50_ms"] / by_clients[1]["p50_ms"]
        target["p50_8_clients_vs_1"] = {
            "limit_ratio": TARGET_RATIO, "ratio": round(ratio, 2), "met": ratio <= TARGET_RATIO,
            "margin_ms": round(TARGET_RATIO * by_clients[1]["p50_ms"] - by_clients[8]["p50_ms"], 1),
        }
    config = json.loads((Path(args.model) / "config.json").read_text())
    result = {
        **run_header("serve_load.py", argv, load_before),
        "versions": versions(),
        "setup": {
            "model": str(args.model),
            "backbone": config.get("backbone_name_or_path"),
            "backbone_layers": config.get("backbone_config", {}).get("num_hidden_layers"),
            "max_len": config.get("max_len"),
            "catalogue_items": config.get("num_items"),
            "precision": args.precision or "pipeline default (float32)",
            "users": len(histories),
            "history_items_min_median_max": [lengths[0], lengths[len(lengths) // 2], lengths[-1]],
            "top_k": TOP_K,
            "batch_wait_ms": args.batch_wait_ms,
            "max_batch_size": args.max_batch_size,
            "seconds_per_level": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "server_startup_seconds": round(startup, 1),
            "client": "httpx.AsyncClient in this process, one keep-alive connection per client, over 127.0.0.1",
        },
        "runs": runs,
        "non_200_responses": other_errors,
        "target": target,
        "server_log_tail": server_log[-2000:] if server_errors else "",
    }
    write_results(Path(args.output), result, render_markdown(result))
    print(json.dumps(result["target"], indent=2))
    return 0


def render_markdown(result: dict) -> str:
    m, setup, target, v = result["machine"], result["setup"], result["target"], result["versions"]
    rows = "\n".join(
        f"| {r['clients']} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
        f"{r['histories_per_forward_pass']} | {r.get('worker_ms_per_batch')} | {r.get('worker_busy_percent')}% | "
        f"{', '.join(f'{s}: {n}' for s, n in r['statuses'].items())} |"
        for r in result["runs"]
    )
    lines = [f"- No 5xx responses: **{'met' if target['no_5xx']['met'] else 'missed'}** ({target['no_5xx']['server_errors']} server errors)."]
    ratio = target.get("p50_8_clients_vs_1")
    if ratio:
        by = result["runs"]
        p1 = next(r["p50_ms"] for r in by if r["clients"] == 1)
        p8 = next(r["p50_ms"] for r in by if r["clients"] == 8)
        verdict = "met" if ratio["met"] else "missed"
        how = (f"{-ratio['margin_ms']} ms over the {ratio['limit_ratio'] * p1:.1f} ms limit" if not ratio["met"]
               else f"{ratio['margin_ms']} ms under the {ratio['limit_ratio'] * p1:.1f} ms limit")
        lines.append(
            f"- p50 at 8 clients <= {ratio['limit_ratio']:g}x the single-client p50: **{verdict}**: {p8} ms vs {p1} ms, "
            f"{ratio['ratio']}x ({how})."
        )
    analysis = ""
    runs = {r["clients"]: r for r in result["runs"]}
    if 1 in runs and 8 in runs:
        # Closed-loop clients: mean latency = clients / throughput (Little's law), so the latency ratio
        # at 8 vs 1 client is 8 divided by how much more the service scores per second at 8 clients.
        gain = runs[8]["throughput_rps"] / runs[1]["throughput_rps"]
        busy = runs[8]["worker_busy_percent"]
        bound = (
            "With the worker busy nearly all the time, only a cheaper forward pass per history raises throughput: "
            "a longer wait window cannot, while `--precision bf16`, shorter histories or more cores can."
            if busy >= 90
            else f"The worker waited {100 - busy:.0f}% of the time: the rest went to HTTP handling, JSON and the load "
            "generator, which share the CPU with the model here."
        )
        analysis = f"""
## What bounds it

Each client sends its next request as soon as the last is answered, so mean latency is clients /
throughput (Little's law): p50 at 8 clients <= {TARGET_RATIO:g}x the single-client p50 needs the service to answer
8/{TARGET_RATIO:g} = {8 / TARGET_RATIO:.2f}x as many requests per second at 8 clients as at 1. It answered {gain:.2f}x as many
({runs[8]["throughput_rps"]} vs {runs[1]["throughput_rps"]} req/s), with {runs[8]["histories_per_forward_pass"]} histories per forward pass at
{runs[8]["worker_ms_per_batch"]} ms each against {runs[1]["worker_ms_per_batch"]} ms for one history alone, the worker busy
{runs[8]["worker_busy_percent"]}% of the time (vs {runs[1]["worker_busy_percent"]}% at one client). {bound}
"""
    return f"""# HTTP service under load (`scripts/serve.py`, CPU)

Command: `{result["command"].strip()}`  ({result["date"]})

Machine: {m["cpu"]}, {m["cpu_count"]} CPU cores (server and load generator share them), torch {m["torch"]} with
{m["torch_threads"]} threads, transformers {m["transformers"]}, Python {m["python"]}; fastapi {v["fastapi"]},
uvicorn {v["uvicorn"]}, httpx {v["httpx"]}, prometheus_client {v["prometheus_client"]}, pydantic {v["pydantic"]}.
Load average when the run started: {m["load_average_at_start"]} (other jobs on the machine inflate these numbers).

Setup: `{setup["model"]}` ({setup["backbone"]}, {setup["backbone_layers"]} decoder layers, max_len {setup["max_len"]},
{setup["catalogue_items"]} items), {setup["precision"]}. Each request is one of {setup["users"]} real MovieLens-100K users: the whole
history but its last item ({setup["history_items_min_median_max"][0]} / {setup["history_items_min_median_max"][1]} / {setup["history_items_min_median_max"][2]}
items min / median / max; the model reads the last {setup["max_len"]}), `top_k={setup["top_k"]}`, with the API key.
Micro-batching: `--batch_wait_ms {setup["batch_wait_ms"]} --max_batch_size {setup["max_batch_size"]}`. {setup["seconds_per_level"]:g} s per level
after {setup["warmup_seconds"]:g} s of warm-up; server ready {setup["server_startup_seconds"]} s after start. Client: {setup["client"]}.

| Clients | Requests | Throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | Histories per forward pass | Worker ms per batch | Worker busy | Responses |
|---|---|---|---|---|---|---|---|---|---|
{rows}

Targets:

{chr(10).join(lines)}

Latency is the client's: from sending the request to reading the whole response, over loopback.
"Histories per forward pass" is the mean of the service's own `seqrec_batch_size` histogram over the
level: how many concurrent requests the micro-batcher merged into one model call. "Worker" is the
thread that scores batches (`seqrec_batch_duration_seconds`): its time per batch, and the share of the
level's wall time it was busy.
{analysis}"""


if __name__ == "__main__":
    sys.exit(main())
