"""Server-side latency of one live-page update, for the article network.

    python -m bench.serve_latency [--model runs/article/model.npz] [--updates 200] [--http]
                                  [--blas-threads N]

One update is what ``faltung serve`` does per drawing: decode the pixels, a forward pass
that keeps every layer's output, each output scaled to bytes and base64, the saliency of
the top class through ``model.backward``, and the JSON answer. Each of ``--updates``
updates gets a different drawing (a growing stroke, as when drawing). Reports the median
and the 95th percentile; ``--http`` adds the round trip through the real server.
Like ``faltung serve``, it runs BLAS on one thread where
``faltung.serve.single_thread_blas`` can; ``--blas-threads 2`` measures the default of
NumPy on two cores instead.
"""

from __future__ import annotations

import os

# "2 cores": pin BLAS before NumPy loads, unless the caller chose.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

import argparse  # noqa: E402
import base64  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from faltung.presets import article_network  # noqa: E402
from faltung.serve import Engine, make_server, single_thread_blas  # noqa: E402


def drawings(count: int, seed: int = 0) -> list[str]:
    """Base64 pixels of a stroke drawn point by point, restarting every 40 updates."""
    rng = np.random.default_rng(seed)
    payloads, image = [], np.zeros((28, 28), np.uint8)
    y, x = 14.0, 14.0
    for i in range(count):
        if i % 40 == 0:
            image[:] = 0
            y, x = rng.uniform(6, 22, 2)
        y, x = np.clip([y + rng.normal(0, 1.5), x + rng.normal(0, 1.5)], 3, 24)
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
        payloads.append(base64.b64encode(image.tobytes()).decode())
    return payloads


def percentiles(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1e3 for t in times)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(np.ceil(0.95 * len(ms))) - 1)], 3),
        "max_ms": round(ms[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model file (default: the article network, seed 0)")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--http", action="store_true", help="also time the HTTP round trip")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument(
        "--blas-threads", type=int, choices=(1, 2), default=1, help="1 as faltung serve (default)"
    )
    args = parser.parse_args()
    blas_threads = "2" if args.blas_threads == 2 or not single_thread_blas() else "1"
    if args.model:
        from faltung.cli._model import load_with_metadata

        model, _ = load_with_metadata(args.model)
    else:
        model = article_network(0)
    engine = Engine(model, (1, 28, 28), [str(i) for i in range(10)])
    payloads = drawings(args.updates + 10)
    for payload in payloads[:10]:  # warm-up
        json.dumps(engine.update({"pixels": payload}))
    times = []
    for payload in payloads[10:]:
        started = time.perf_counter()
        json.dumps(engine.update({"pixels": payload}), separators=(",", ":"))
        times.append(time.perf_counter() - started)
    result = {"updates": len(times), "server": percentiles(times),
              "blas_threads": blas_threads, "cpus": os.cpu_count()}  # fmt: skip
    print(f"BLAS threads: {blas_threads} of {os.cpu_count()} cores")
    print(f"one update, on the server: median {result['server']['median_ms']:.2f} ms, "
          f"p95 {result['server']['p95_ms']:.2f} ms, max {result['server']['max_ms']:.2f} ms "
          f"over {len(times)} updates")  # fmt: skip
    if args.http:
        server = make_server(engine, "127.0.0.1", 0)
        server.quiet = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
        times = []
        for payload in payloads:
            body = json.dumps({"pixels": payload}).encode()
            started = time.perf_counter()
            connection.request("POST", "/api/update", body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            times.append(time.perf_counter() - started)
        server.shutdown()
        result["http_round_trip"] = percentiles(times[10:])
        print(f"HTTP round trip (same machine): median "
              f"{result['http_round_trip']['median_ms']:.2f} ms, p95 "
              f"{result['http_round_trip']['p95_ms']:.2f} ms")  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
