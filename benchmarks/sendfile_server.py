"""A minimal HTTP server that answers every GET with one file via sendfile(2).

The retrieve benchmark uses it as the machine's loopback ceiling: kernel-to-kernel
copies, no user-space work in the server, the same curl client. Whatever a real
server reaches can be read against it.

    python benchmarks/sendfile_server.py FILE   # prints the port, serves until killed
"""

from __future__ import annotations

import os
import socket
import sys


def serve(path: str) -> None:
    size = os.path.getsize(path)
    header = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
              f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                request += chunk
            if not request:
                continue
            conn.sendall(header)
            with open(path, "rb") as fh:
                conn.sendfile(fh)


if __name__ == "__main__":
    serve(sys.argv[1])
