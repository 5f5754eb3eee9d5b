"""Request parsing: every malformed input is a 4xx, never a 500; multipart streaming and limits."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from prefork.web import JsonResponse, Request, Settings, WSGIHandler, path
from prefork.web.exceptions import BadRequest
from tests.web.helpers import build_environ, call

B = "XyZbound"


def echo(request: Request) -> JsonResponse:
    files = {k: [f.filename, f.size, f.content_type, f.read().decode("latin-1"), f.on_disk]
             for k, f in request.FILES.items()}
    return JsonResponse({"GET": dict(request.GET.lists()), "POST": dict(request.POST.lists()),
                         "FILES": files, "COOKIES": request.COOKIES})


def body_view(request: Request) -> JsonResponse:
    return JsonResponse({"json": request.json()})


def need_field(request: Request) -> JsonResponse:
    return JsonResponse({"name": request.POST["name"]})


def app(**settings: Any) -> WSGIHandler:
    return WSGIHandler(Settings(urlconf=[path("echo/", echo), path("json/", body_view),
                                         path("need/", need_field)], **settings))


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = B) -> bytes:
    out = b"preamble\r\n"
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        ctype = "Content-Type: text/plain\r\n" if filename else ""
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n{ctype}\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\nepilogue".encode()


def post_mp(a: WSGIHandler, body: bytes, boundary: str = B, **kw: Any) -> Any:
    return call(a, "/echo/", method="POST", body=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, **kw)


def test_query_string_multi_values() -> None:
    r = call(app(), "/echo/", query="a=1&a=2&b=%C3%A9&c")
    assert json.loads(r.body)["GET"] == {"a": ["1", "2"], "b": ["é"], "c": [""]}


@pytest.mark.parametrize("qs", ["%zz=1", "a=%ff%fe", "&&&==", "a=1;b=2", "%", "=x", "a=\xff"])
def test_malformed_query_strings_do_not_500(qs: str) -> None:
    assert call(app(), "/echo/", query=qs).code == 200


def test_too_many_query_fields_is_400() -> None:
    r = call(app(data_upload_max_number_fields=5), "/echo/", query="&".join(f"k{i}=v" for i in range(6)))
    assert r.code == 400


def test_urlencoded_post() -> None:
    r = call(app(), "/echo/", method="POST", body=b"x=1&x=2&y=h%C3%A9",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(r.body)["POST"] == {"x": ["1", "2"], "y": ["hé"]}


def test_urlencoded_body_with_unknown_charset_is_400() -> None:
    r = call(app(), "/echo/", method="POST", body=b"x=1",
             headers={"Content-Type": "application/x-www-form-urlencoded; charset=klingon"})
    assert r.code == 400


def test_body_over_limit_is_413() -> None:
    r = call(app(data_upload_max_memory_size=10), "/echo/", method="POST", body=b"x=" + b"1" * 20,
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.code == 413


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " 5", "\u00b2", "9" * 19, "1" * 5000])
def test_bad_content_length_is_400(length: str) -> None:
    env = build_environ("/json/", method="POST", body=b"{}", headers={"Content-Type": "application/json"})
    env["CONTENT_LENGTH"] = length
    # wsgiref.validate itself refuses such an environ; a lenient server might not.
    assert call(app(), environ=env, validate=False).code == 400


def test_content_length_with_thousands_of_leading_zeros_is_its_value() -> None:
    # A server other than prefork may pass the client's spelling through.
    env = build_environ("/json/", method="POST", body=b"{}", headers={"Content-Type": "application/json"})
    env["CONTENT_LENGTH"] = "0" * 5000 + "2"
    assert call(app(), environ=env, validate=False).code == 200


def test_body_shorter_than_content_length_is_400() -> None:
    env = build_environ("/json/", method="POST", body=b"{}")
    env["CONTENT_LENGTH"] = "10"
    assert call(app(), environ=env).code == 400


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"", b"nul"])
def test_invalid_json_is_400(body: bytes) -> None:
    assert call(app(), "/json/", method="POST", body=body).code == 400


def test_json_body() -> None:
    r = call(app(), "/json/", method="POST", body=b'{"a": [1, 2]}')
    assert json.loads(r.body) == {"json": {"a": [1, 2]}}


def test_missing_form_field_is_400_not_500() -> None:
    assert call(app(), "/need/", method="POST", body=b"",
                headers={"Content-Type": "application/x-www-form-urlencoded"}).code == 400


@pytest.mark.parametrize("cookie", ['a=1; b="2"; =x; junk; c=%ff; d=\xff\xfe', ";;;", "a=b=c", '"'])
def test_malformed_cookies_are_skipped_not_500(cookie: str) -> None:
    r = call(app(), "/echo/", headers={"Cookie": cookie})
    assert r.code == 200


def test_cookies_parsed() -> None:
    r = call(app(), "/echo/", headers={"Cookie": 'a=1; b="two"; junk'})
    assert json.loads(r.body)["COOKIES"] == {"a": "1", "b": "two"}


def test_multipart_fields_and_files() -> None:
    body = multipart(("title", None, "héllo".encode()), ("doc", "C:\\Users\\me\\a.txt", b"file\r\n--data"),
                     ("title", None, b"second"))
    r = post_mp(app(), body)
    data = json.loads(r.body)
    assert r.code == 200
    assert data["POST"] == {"title": ["héllo", "second"]}
    assert data["FILES"] == {"doc": ["a.txt", 12, "text/plain", "file\r\n--data", False]}


def test_multipart_is_streamed_in_small_reads_and_spooled_to_disk(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB with every byte value, including CR/LF and '-'
    reads: list[int] = []

    class Stream(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(size or -1)
            return super().read(size)

    body = multipart(("f", "big.bin", payload))
    env = build_environ("/echo/", method="POST", body=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={B}"})
    env["wsgi.input"] = Stream(body)
    seen: dict[str, Any] = {}

    def view(request: Request) -> JsonResponse:
        f = request.FILES["f"]
        seen["data"], seen["on_disk"] = f.read(), f.on_disk
        return JsonResponse({})

    a = WSGIHandler(Settings(urlconf=[path("echo/", view)], file_upload_max_memory_size=64 * 1024,
                             file_upload_temp_dir=str(tmp_path)))
    assert call(a, environ=env).code == 200
    assert seen["data"] == payload and seen["on_disk"] is True
    assert max(reads) <= 64 * 1024 and len(reads) > 10
    assert list(tmp_path.iterdir()) == []  # temp files are anonymous and gone


def test_small_upload_stays_in_memory() -> None:
    data = json.loads(post_mp(app(), multipart(("f", "s.txt", b"tiny"))).body)
    assert data["FILES"]["f"][4] is False


@pytest.mark.parametrize("body,boundary", [
    (b"no boundary anywhere", B),
    (f"--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated".encode(), B),
    (f"--{B}\r\nContent-Disposition: form-data; name=\"a\"".encode(), B),
    (f"--{B}\r\nX-Nothing: here\r\n\r\nv\r\n--{B}--".encode(), B),
    (f"--{B}garbage\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--{B}--".encode(), B),
    (b"--x\r\n\r\n", ""),
    (b"--x\r\n\r\n", "bad\x01boundary"),
    (b"--x\r\n\r\n", "a" * 71),
    (f"--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\n".encode() + b"X: " + b"h" * 20000, B),
    (f"--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\xfe\r\n--{B}--".encode("latin-1"), B),
])
def test_malformed_multipart_is_400(body: bytes, boundary: str) -> None:
    assert post_mp(app(), body, boundary=boundary).code == 400


def test_multipart_file_size_limit_is_413() -> None:
    r = post_mp(app(file_upload_max_size=1000), multipart(("f", "x.bin", b"x" * 5000)))
    assert r.code == 413


def test_multipart_field_size_limit_is_413() -> None:
    r = post_mp(app(data_upload_max_memory_size=100), multipart(("a", None, b"x" * 500)))
    assert r.code == 413


def test_multipart_too_many_fields_is_400() -> None:
    parts = [(f"f{i}", None, b"v") for i in range(6)]
    assert post_mp(app(data_upload_max_number_fields=5), multipart(*parts)).code == 400


def test_multipart_too_many_files_is_400() -> None:
    parts = [(f"f{i}", f"{i}.txt", b"v") for i in range(4)]
    assert post_mp(app(data_upload_max_number_files=3), multipart(*parts)).code == 400
    assert post_mp(app(data_upload_max_number_files=4), multipart(*parts)).code == 200


def test_multipart_nameless_parts_count_as_fields() -> None:
    # They are dropped, but each one was parsed: a body of millions of tiny
    # nameless parts must not be free.
    part = (f"--{B}\r\nContent-Disposition: form-data\r\n\r\nv\r\n").encode()
    body = part * 6 + f"--{B}--\r\n".encode()
    assert post_mp(app(data_upload_max_number_fields=5), body).code == 400
    assert post_mp(app(data_upload_max_number_fields=6), body).code == 200


def test_multipart_truncated_by_content_length_is_400() -> None:
    body = multipart(("a", None, b"value"), ("b", "f.txt", b"x" * 100))
    env = build_environ("/echo/", method="POST", body=body[:-60],
                        headers={"Content-Type": f"multipart/form-data; boundary={B}"})
    env["CONTENT_LENGTH"] = str(len(body))
    assert call(app(), environ=env).code == 400


def test_headers_case_insensitive_and_path_decoding() -> None:
    env = build_environ("/caf\xc3\xa9/\xff/", headers={"X-Thing": "1", "Content-Type": "text/plain"})
    req = Request(env)
    assert req.headers["x-thing"] == "1" and req.headers["CONTENT-TYPE"] == "text/plain"
    assert req.path == "/café/%FF/"


def test_is_secure_honours_only_the_configured_proxy_header() -> None:
    env = build_environ("/", headers={"X-Forwarded-Proto": "https"})
    assert not Request(env).is_secure()
    trusted = Settings(secure_proxy_ssl_header=("HTTP_X_FORWARDED_PROTO", "https"))
    assert Request(env, trusted).is_secure()
    assert not Request(build_environ("/", headers={"X-Forwarded-Proto": "http"}), trusted).is_secure()


def test_build_absolute_uri_and_forwarded_host() -> None:
    env = build_environ("/a b/", query="x=1", headers={"Host": "example.com",
                                                       "X-Forwarded-Host": "evil.com"})
    assert Request(env).build_absolute_uri() == "http://example.com/a%20b/?x=1"
    assert Request(env).build_absolute_uri("/other/") == "http://example.com/other/"
    s = Settings(use_x_forwarded_host=True)
    assert Request(env, s).build_absolute_uri("/o/") == "http://evil.com/o/"


def test_disallowed_host_is_400() -> None:
    s = Settings(allowed_hosts=[".example.com"])
    assert Request(build_environ("/", headers={"Host": "a.example.com:8000"}), s).get_host()
    with pytest.raises(BadRequest):
        Request(build_environ("/", headers={"Host": "evil.com"}), s).get_host()
    with pytest.raises(BadRequest):
        Request(build_environ("/", headers={"Host": "bad host/"}), s).get_host()
