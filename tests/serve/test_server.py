"""The page's server over real HTTP: answers, limits, bad input and path traversal."""

from __future__ import annotations

import base64
import http.client
import json
import threading

import numpy as np
import pytest

from faltung.explain import activations, saliency, to_uint8
from faltung.serve import Engine, make_server

from ..explain.models import colour_net, grey_net


@pytest.fixture(scope="module")
def engine():
    model = grey_net(0)
    images = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)
    labels = np.arange(20) % 10
    return Engine(model, (1, 28, 28), [str(i) for i in range(10)], "test", images, labels)


@pytest.fixture(scope="module")
def server(engine):
    server = make_server(engine, "127.0.0.1", 0)
    server.quiet = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


def pixels(image: np.ndarray) -> str:
    return base64.b64encode(np.rint(image * 255).astype(np.uint8).tobytes()).decode()


def post(server, path, value):
    status, _headers, data = request(server, "POST", path, json.dumps(value).encode())
    return status, json.loads(data)


def test_page_and_static_files_come_from_the_package(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/app.js" in body and b"http" not in body.replace(b"http-equiv", b"")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("app.js", "style.css"):
        status, _, body = request(server, "GET", f"/static/{name}")
        assert status == 200 and len(body) > 1000
        assert b"https://" not in body and b"cdn" not in body.lower()  # works offline


@pytest.mark.parametrize(
    "path",
    [
        "/static/../engine.py",
        "/../../../../etc/passwd",
        "/static/%2e%2e/engine.py",
        "/static/%2e%2e%2fengine.py",
        "/static/..%2f..%2fio.py",
        "/static/%252e%252e/engine.py",
        "/static/..\\engine.py",
        "//etc/passwd",
        "/static//etc/passwd",
        "/static/app.js/../../engine.py",
        "/etc/passwd",
        "/static/",
        "/static/app.js%00.html",
    ],
)
def test_traversal_and_other_paths_are_not_found(server, path):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 404, path
    assert b"import" not in body and b"root:" not in body


def test_info_describes_the_model(server):
    status, _, data = request(server, "GET", "/api/info")
    info = json.loads(data)
    assert status == 200 and info["shape"] == [1, 28, 28] and info["convolutions"] == ["conv1"]
    assert [layer["shape"] for layer in info["layers"]][:2] == [[4, 24, 24], [4, 12, 12]]


def test_update_returns_every_layer_the_probabilities_and_the_saliency(server, engine):
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 6:22, 12:15] = 1.0
    status, result = post(server, "/api/update", {"pixels": pixels(image)})
    assert status == 200
    assert len(result["probabilities"]) == 10
    assert sum(result["probabilities"]) == pytest.approx(1, abs=1e-4)
    expected = activations(engine.model, image)
    assert [layer["name"] for layer in result["layers"]] == list(expected)
    for layer in result["layers"]:
        want = expected[layer["name"]]
        got = np.frombuffer(base64.b64decode(layer["data"]), np.uint8)
        assert got.size == want.size
        assert layer["min"] == pytest.approx(float(want.min()), rel=1e-5, abs=1e-6)
        np.testing.assert_array_equal(got, to_uint8(want, layer["min"], layer["max"]).ravel())
    top = int(np.argmax(result["probabilities"]))
    heat = np.abs(saliency(engine.model, image, top)).max(axis=0)
    got = np.frombuffer(base64.b64decode(result["saliency"]), np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(got, to_uint8(heat, 0.0, float(heat.max())))


def test_convolution_sum_of_a_clicked_value(server, engine):
    image = np.random.default_rng(2).random((1, 28, 28), dtype=np.float32)
    request_ = {"pixels": pixels(image), "layer": "conv1", "channel": 2, "row": 5, "col": 7}
    status, result = post(server, "/api/convolution", request_)
    assert status == 200
    quantised = np.rint(image * 255) / 255
    expected = activations(engine.model, quantised.astype(np.float32))["conv1"][2, 5, 7]
    assert result["value"] == pytest.approx(float(expected), abs=1e-3)
    assert np.asarray(result["patch"]).shape == (1, 5, 5) and (result["top"], result["left"]) == (
        5,
        7,
    )
    bad = dict(request_, channel=9)
    assert post(server, "/api/convolution", bad)[0] == 400
    assert post(server, "/api/convolution", dict(request_, layer="fc1"))[0] == 400


def test_samples_random_and_mistakes(server):
    for kind in ("random", "mistake"):
        status, _, data = request(server, "GET", f"/api/sample?kind={kind}")
        result = json.loads(data)
        assert status == 200 and len(base64.b64decode(result["pixels"])) == 784
    assert request(server, "GET", "/api/sample?kind=../../etc")[0] == 400


@pytest.mark.parametrize(
    "body,message",
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[1, 2]", "pixels"),
        (b'{"pixels": 5}', "pixels"),
        (b'{"pixels": "###"}', "base64"),
        (json.dumps({"pixels": base64.b64encode(b"abc").decode()}).encode(), "expected 784"),
        (json.dumps({"pixels": base64.b64encode(bytes(785)).decode()}).encode(), "expected 784"),
    ],
)
def test_malformed_requests_get_400_and_the_server_keeps_serving(server, body, message):
    status, _, data = request(server, "POST", "/api/update", body)
    assert status == 400 and message in json.loads(data)["error"]
    assert request(server, "GET", "/api/info")[0] == 200


def test_too_large_bodies_get_413(server):
    body = b"x" * (server.max_body + 1)
    status, _headers, data = request(server, "POST", "/api/update", body)
    assert status == 413 and "exceeds" in json.loads(data)["error"]
    assert request(server, "GET", "/api/info")[0] == 200


def test_a_missing_length_method_and_host(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.putrequest("POST", "/api/update")
    connection.endheaders()
    assert connection.getresponse().status == 411
    connection.close()
    assert request(server, "GET", "/api/update")[0] == 405
    assert request(server, "DELETE", "/")[0] == 405
    assert request(server, "GET", "/", headers={"Host": "attacker.example:80"})[0] == 403


def test_binds_to_loopback_by_default(engine):
    server = make_server(engine, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_a_colour_model_of_another_size():
    model = colour_net()
    engine = Engine(model, (3, 32, 32), ["a", "b", "c", "d"])
    image = np.random.default_rng(1).random((3, 32, 32))
    result = engine.update({"pixels": pixels(image)})
    assert len(result["probabilities"]) == 4 and len(result["layers"]) == len(model.layers)
    assert len(base64.b64decode(result["saliency"])) == 32 * 32
    with pytest.raises(ValueError, match="no test images"):
        engine.sample("random")


def test_single_thread_blas_holds_numpys_openblas_at_one_thread_without_the_extra():
    """`faltung serve` keeps BLAS on one thread through NumPy's own OpenBLAS, not threadpoolctl."""
    from faltung._threads import openblas_threads
    from faltung.serve import single_thread_blas

    blas = openblas_threads()
    if blas is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS here")
    before = blas.get()
    try:
        blas.set(2)
        assert single_thread_blas() is True
        assert blas.get() == 1
    finally:
        blas.set(before)
