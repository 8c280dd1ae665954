"""An HTTP server on 127.0.0.1 serving bytes a test made, with a log of every request."""

from __future__ import annotations

import http.server
import re
import socket
import threading


class FileServer:
    """Serves bytes the test made on 127.0.0.1; can drop a response mid-way once and can ignore Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before the connection is dropped (first request)
        self.ignore_range = False
        self.log: list[dict] = []  # one entry per request: name, range header, status, body bytes sent
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        name = handler.path.lstrip("/")
        requested = handler.headers.get("Range")
        entry = {"name": name, "range": requested, "status": 404, "sent": 0}
        self.log.append(entry)
        if name not in self.files:
            handler.send_error(404)
            return
        data = self.files[name]
        start = 0
        if requested and not self.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
        body = data[start:]
        entry["status"] = 206 if requested and not self.ignore_range else 200
        handler.send_response(entry["status"])
        handler.send_header("Content-Length", str(len(body)))
        if entry["status"] == 206:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        cut = self.cut_after.pop(name, None)
        if cut is not None:  # promise the whole body, deliver part of it, hang up
            body = body[:cut]
            handler.close_connection = True
        entry["sent"] = len(body)  # before the write: the client may finish reading before this thread resumes
        handler.wfile.write(body)
        if cut is not None:
            handler.connection.shutdown(socket.SHUT_RDWR)
