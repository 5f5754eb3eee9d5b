"""Streaming ``multipart/form-data`` parser.

The body is read from ``wsgi.input`` in fixed-size chunks and never held
whole: form fields are collected in memory (counted against
``data_upload_max_memory_size``), files are written as they arrive into an
:class:`UploadedFile` that moves from memory to a temporary file once it passes
``file_upload_max_memory_size``. Any framing error (missing boundary, bad part
headers, truncated body) raises :class:`BadRequest`; a limit raises
:class:`RequestDataTooBig`; neither leaves temporary files behind.
"""

from __future__ import annotations

import io
import re
import tempfile
from email.parser import HeaderParser
from typing import IO, Any, BinaryIO

from .exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent

CHUNK = 64 * 1024
MAX_PART_HEADERS = 16 * 1024
_BOUNDARY_RE = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


class UploadedFile:
    """One uploaded file: ``name`` (field), ``filename``, ``content_type``, ``size``.

    ``file`` is a binary file object positioned at 0 once parsing ends;
    ``on_disk`` says whether it spilled to a temporary file.
    """

    def __init__(self, field_name: str, filename: str, content_type: str, threshold: int,
                 temp_dir: str | None) -> None:
        self.field_name, self.filename, self.content_type = field_name, filename, content_type
        self.size = 0
        self.file: IO[bytes] = io.BytesIO()
        self.on_disk = False
        self._threshold, self._temp_dir = threshold, temp_dir

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if not self.on_disk and self.size > self._threshold:
            disk = tempfile.TemporaryFile(dir=self._temp_dir)
            disk.write(self.file.getvalue())  # type: ignore[attr-defined]
            self.file, self.on_disk = disk, True
        self.file.write(data)

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"<UploadedFile {self.filename!r} ({self.content_type}, {self.size} bytes)>"


def boundary_of(params: dict[str, str]) -> bytes:
    boundary = params.get("boundary", "")
    if not _BOUNDARY_RE.match(boundary):
        raise BadRequest("multipart body without a valid boundary")
    return boundary.encode("ascii")


def _safe_filename(name: str) -> str:
    # Browsers on Windows used to send full paths; never let one reach the disk.
    return name.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")


def parse_multipart(stream: BinaryIO, length: int, boundary: bytes, charset: str,
                    settings: Any) -> tuple[list[tuple[str, str]], list[tuple[str, UploadedFile]]]:
    """Parse ``length`` bytes of ``stream``; return (fields, files) in arrival order."""
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, UploadedFile]] = []
    try:
        _parse(stream, length, boundary, charset, settings, fields, files)
    except BaseException:
        for _, f in files:
            f.close()
        raise
    for _, f in files:
        f.file.seek(0)
    return fields, files


def _parse(stream: BinaryIO, length: int, boundary: bytes, charset: str, settings: Any,
           fields: list[tuple[str, str]], files: list[tuple[str, UploadedFile]]) -> None:
    max_fields = settings.data_upload_max_number_fields
    max_files = settings.data_upload_max_number_files
    # Every part costs a header parse and a buffer copy, whatever becomes of
    # it, so every part counts: files against max_files, the rest (nameless
    # parts, which are dropped, included) against max_fields.
    n_fields = n_files = 0
    max_field_bytes = settings.data_upload_max_memory_size
    max_file_bytes = settings.file_upload_max_size
    remaining = length
    buf = b""

    def fill() -> bool:
        nonlocal remaining, buf
        if remaining <= 0:
            return False
        data = stream.read(min(CHUNK, remaining))
        if not data:
            raise BadRequest("multipart body ended before Content-Length")
        remaining -= len(data)
        buf += data
        return True

    delimiter = b"--" + boundary
    # Preamble: everything up to the first delimiter is ignored.
    while (start := buf.find(delimiter)) < 0:
        if len(buf) > len(delimiter):
            buf = buf[-len(delimiter):]
        if not fill():
            raise BadRequest("multipart body has no boundary")
    buf = buf[start + len(delimiter):]
    part_delimiter = b"\r\n" + delimiter
    field_bytes = file_bytes = 0
    while True:
        while len(buf) < 2 and fill():
            pass
        if buf.startswith(b"--"):
            return  # closing delimiter; the epilogue is ignored
        # Transport padding then CRLF, then the part's headers.
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_PART_HEADERS:
                raise BadRequest("multipart part headers too long")
            if not fill():
                raise BadRequest("multipart part headers truncated")
        raw_headers, buf = buf[:end + 4], buf[end + 4:]
        if not raw_headers.startswith(b"\r\n") and not raw_headers.lstrip(b" \t").startswith(b"\r\n"):
            raise BadRequest("multipart delimiter not followed by CRLF")
        try:
            headers = HeaderParser().parsestr(raw_headers.lstrip(b" \t")[2:].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest("multipart part headers are not UTF-8") from None
        if headers.defects:
            raise BadRequest("malformed multipart part headers")
        disposition = headers.get("content-disposition", "")
        if not disposition.lower().startswith("form-data"):
            raise BadRequest("multipart part without Content-Disposition: form-data")
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        sink: UploadedFile | bytearray
        if filename is not None:
            n_files += 1
            if max_files is not None and n_files > max_files:
                raise TooManyFilesSent("too many files in the form")
        else:
            n_fields += 1
            if max_fields is not None and n_fields > max_fields:
                raise TooManyFieldsSent("too many form fields")
        if filename is not None:
            sink = UploadedFile(str(name or ""), _safe_filename(filename),
                                headers.get_content_type(), settings.file_upload_max_memory_size,
                                settings.file_upload_temp_dir)
            if name is not None:
                files.append((str(name), sink))
            else:
                sink.close()
        else:
            sink = bytearray()
        # The body runs to the next CRLF--boundary; keep a tail that may hold its start.
        keep = len(part_delimiter) - 1
        while True:
            found = buf.find(part_delimiter)
            data = buf[:found] if found >= 0 else buf[:max(0, len(buf) - keep)]
            buf = buf[found + len(part_delimiter):] if found >= 0 else buf[len(data):]
            if data:
                if isinstance(sink, UploadedFile):
                    file_bytes += len(data)
                    if max_file_bytes is not None and file_bytes > max_file_bytes:
                        raise RequestDataTooBig("uploaded files exceed file_upload_max_size")
                    sink.write(data)
                else:
                    field_bytes += len(data)
                    if max_field_bytes is not None and field_bytes > max_field_bytes:
                        raise RequestDataTooBig("form fields exceed data_upload_max_memory_size")
                    sink += data
            if found >= 0:
                break
            if not fill():
                raise BadRequest("multipart body ended inside a part")
        if isinstance(sink, bytearray) and name is not None:
            try:
                fields.append((str(name), sink.decode(charset)))
            except (UnicodeDecodeError, LookupError):
                raise BadRequest(f"form field {name!r} is not valid {charset}") from None
