"""The nightly refresh end to end for a 1,000,000-person cohort, through a real mesh-sandbox.

Steps timed: cohort build, request file build (+ record pending in the store), send over MESH, the
stand-in's reply (job created + list), sensor-style wait, download, parse + import with sanity gates.
Targets: < 2 minutes in all, peak memory (this process) < 1 GiB. The simplest peer for the MESH legs is
a bare mesh-client send and receive of the same bytes in the same run: the ratio shows what our
steps add on top of moving the file.

Run: .venv/bin/python benchmarks/refresh_bench.py [--people 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from optout import mesh, ndop
from optout.sandbox import server
from optout.sandbox.standin import StandIn
from optout.store import Store

TIMES: dict[str, float] = {}


@contextmanager
def timed(step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    TIMES[step] = TIMES.get(step, 0.0) + time.perf_counter() - start


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--opted-out", type=float, default=0.05)
    args = parser.parse_args()
    os.environ.setdefault("OPTOUT_HOME", tempfile.mkdtemp(prefix="optout-refresh-bench-"))

    rng = np.random.default_rng(7)
    with timed("cohort: generate valid numbers"):
        candidates = np.arange(9_000_000_000, 9_000_000_000 + args.people * 13, dtype=np.int64)
        valid = candidates[ndop.is_valid_number(candidates)]
        cohort = np.sort(rng.choice(valid, size=args.people, replace=False))
        opt_outs = rng.choice(cohort, size=int(len(cohort) * args.opted_out), replace=False)

    with server.running() as sandbox:
        ours = sandbox.settings()
        store = Store()
        stand_in = StandIn(sandbox.settings(mailbox=server.SERVICE_MAILBOX), np.sort(opt_outs), poll=0.05)
        with mesh.connect(ours) as client:
            # Peer: a bare mesh-client send and receive of the same bytes (what moving the file costs).
            data = ndop.build_request(cohort)
            service_settings = sandbox.settings(mailbox=server.SERVICE_MAILBOX)
            with timed("peer: bare mesh-client send + receive"), mesh.connect(service_settings) as service:
                peer_id = client.send_message(server.SERVICE_MAILBOX, data, workflow_id="PEER")
                message = service.retrieve_message(peer_id)
                assert len(message.read()) == len(data)
                message.close()
                service.acknowledge_message(peer_id)
            del data
            start_all = time.perf_counter()
            with timed("send_request: build + record pending + send"):
                sent = mesh.send_request(client, store, cohort, settings=ours)
            thread = stand_in.start_thread()
            with timed("stand-in reply + wait (sensor pokes)"):
                while not (message_id := mesh.find_reply(client, store, sent.local_id)):
                    time.sleep(0.05)
            with timed("receive_reply: download + parse + gates + import"):
                info = mesh.receive_reply(client, store, sent.local_id, message_id)
            total = time.perf_counter() - start_all
        stand_in.stop()
        thread.join()

    expected = len(cohort) - len(opt_outs)
    assert info.status == "published" and info.cleared_count == expected, info
    print(f"refresh of {len(cohort):,} people ({len(opt_outs):,} opted out) through mesh-sandbox")
    for step, seconds in TIMES.items():
        print(f"  {step:<55} {seconds:7.2f} s")
    peer = TIMES["peer: bare mesh-client send + receive"]
    print(f"  {'total (send -> published)':<55} {total:7.2f} s   target < 120 s  {'OK' if total < 120 else 'MISSED'}")
    print(f"  ratio to the bare mesh-client round trip: {total / peer:.1f}x")
    print(f"  peak memory (this process, stand-in thread included): {peak_mib():.0f} MiB   target < 1024 MiB")


if __name__ == "__main__":
    main()
