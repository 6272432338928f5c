"""The nightly refresh end to end at national scale (10,000,000 people by default), through a real mesh-sandbox.

Ours, in a fresh process: ``mesh.send_request`` (request written piece by piece to a file, recorded
pending, sent from the file in MESH chunks), the wait (header-only looks, as the sensor does), then
``mesh.receive_reply`` (streamed to disk, parsed in blocks, quarantine statistics, imported). The
national service is the stand-in, in its own process (``optout sandbox serve``), as the real service
would be. The peer, in another fresh process in the same run: a plain mesh-client send of the same
request bytes (same chunk size, from the file) and a streamed receive of them, nothing else. The ratio
shows what our steps cost on top of moving the file; the reply is a second file of ~95 % the size, so
about 2x is the floor.

Targets: ours under 2 minutes and under 1 GiB peak memory (the process's maximum resident set).

Run: .venv/bin/python benchmarks/refresh_bench.py [--people 10000000] [--runs 2] [--chunk-mib 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from optout import mesh, mesh_transport, ndop
from optout.sandbox import server

READ_BLOCK = 4 * 1024 * 1024


def cohort_of(people: int) -> np.ndarray:
    """``people`` valid numbers from 9000000000 up (the 9 range is not issued in England), built in blocks."""
    parts, found, start = [], 0, 9_000_000_000
    while found < people:
        candidates = np.arange(start, start + 11_000_000, dtype=np.int64)
        valid = candidates[ndop.is_valid_number(candidates)][: people - found]
        parts.append(valid)
        found += len(valid)
        start += 11_000_000
    return np.concatenate(parts)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(url: str, cohort_path: str, chunk: int, home: str, results: Any) -> None:
    """One refresh, in this (fresh) process: send, wait on headers, receive and import."""
    os.environ["OPTOUT_HOME"] = home
    from optout.store import Store

    cohort = np.load(cohort_path)
    settings = server.Sandbox(url, 0, "").settings()
    settings = type(settings)(**{**settings.__dict__, "chunk_size": chunk})
    store = Store(f"sqlite:///{home}/store.sqlite")
    times = {}
    with mesh_transport.connect(settings) as client:
        start = time.perf_counter()
        sent = mesh.send_request(client, store, cohort, settings=settings)
        times["send"] = time.perf_counter() - start
        del cohort
        waited = time.perf_counter()
        while not (message_id := mesh.find_reply(client, store, sent.local_id)):
            time.sleep(0.2)
        times["wait (stand-in's work)"] = time.perf_counter() - waited
        received = time.perf_counter()
        info = mesh.receive_reply(client, store, sent.local_id, message_id)
        times["receive + import"] = time.perf_counter() - received
    times["ours (excluding the stand-in)"] = times["send"] + times["receive + import"]
    times["total (send -> published)"] = time.perf_counter() - start
    assert info.status == "published", info
    results.put(
        {
            "times": times,
            "peak_mib": peak_mib(),
            "cleared": info.cleared_count,
            "chunks": -(-sent.cohort_count * 12 // chunk),
        }
    )


def peer(url: str, request_path: str, chunk: int, results: Any) -> None:
    """A plain mesh-client send of the request file and a streamed receive of it: moving the bytes only."""
    sandbox = server.Sandbox(url, 0, "")
    with (
        mesh_transport.connect(sandbox.settings()) as client,
        mesh_transport.connect(sandbox.settings(mailbox=server.SERVICE_MAILBOX)) as service,
    ):
        start = time.perf_counter()
        with open(request_path, "rb") as data:
            message_id = client.send_message(server.SERVICE_MAILBOX, data, max_chunk_size=chunk, workflow_id="PEER")
        message = service.retrieve_message(message_id)
        size = 0
        while block := message.read(READ_BLOCK):
            size += len(block)
        message.close()
        service.acknowledge_message(message_id)
        elapsed = time.perf_counter() - start
    assert size == os.path.getsize(request_path)
    results.put({"times": {"peer: send + receive": elapsed}, "peak_mib": peak_mib()})


def run(target: Any, *args: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    result = results.get(timeout=1800)
    process.join()
    return result  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=10_000_000)
    parser.add_argument("--opted-out", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--chunk-mib", type=int, default=20)
    args = parser.parse_args()
    chunk = args.chunk_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="optout-refresh-bench-"))
    os.environ.setdefault("OPTOUT_HOME", str(work / "home"))

    rng = np.random.default_rng(7)
    cohort = cohort_of(args.people)
    np.save(work / "cohort.npy", cohort)
    opt_outs = np.sort(rng.choice(cohort, size=int(len(cohort) * args.opted_out), replace=False))
    (work / "opt-outs.txt").write_text("".join(f"{n:010d}\n" for n in opt_outs))
    ndop.write_request(work / "request.dat", cohort)
    del cohort, opt_outs

    rows: dict[str, list[float]] = {}
    peaks: dict[str, list[float]] = {"ours": [], "peer": []}
    with server.running() as sandbox:
        for number in range(args.runs):
            theirs = run(peer, sandbox.url, str(work / "request.dat"), chunk)
            stand_in = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from optout.cli import main; sys.exit(main())",
                    "sandbox",
                    "serve",
                    "--opt-outs",
                    str(work / "opt-outs.txt"),
                    "--url",
                    sandbox.url,
                    "--count",
                    "1",
                ],
                stdout=subprocess.DEVNULL,
            )
            home = work / f"home-{number}"
            home.mkdir()
            mine = run(ours, sandbox.url, str(work / "cohort.npy"), chunk, str(home))
            stand_in.wait(timeout=600)
            for result, who in ((theirs, "peer"), (mine, "ours")):
                peaks[who].append(result["peak_mib"])
                for step, seconds in result["times"].items():
                    rows.setdefault(step, []).append(seconds)
            print(
                f"run {number + 1}: ours {mine['times']['total (send -> published)']:.1f} s, "
                f"peer {theirs['times']['peer: send + receive']:.1f} s, {mine['chunks']} chunks each way"
            )

    print(
        f"\nrefresh of {args.people:,} people ({args.opted_out:.0%} opted out), {args.chunk_mib} MiB MESH chunks, "
        f"{args.runs} run(s), median (min-max):"
    )
    for step, values in rows.items():
        print(f"  {step:<40} {statistics.median(values):7.2f} s  ({min(values):.2f}-{max(values):.2f})")
    peer_time = statistics.median(rows["peer: send + receive"])
    ours_time = statistics.median(rows["ours (excluding the stand-in)"])
    print(f"  ratio ours (excluding the stand-in) / peer: {ours_time / peer_time:.2f}x")
    print(f"  ratio total / peer: {statistics.median(rows['total (send -> published)']) / peer_time:.2f}x")
    total = max(rows["total (send -> published)"])
    print(f"  slowest total {total:.1f} s, target < 120 s: {'OK' if total < 120 else 'MISSED'}")
    print(f"  machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  peak memory: ours {max(peaks['ours']):.0f} MiB (target < 1024), peer {max(peaks['peer']):.0f} MiB")


if __name__ == "__main__":
    main()
