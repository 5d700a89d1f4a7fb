"""Serve the site's WSGI application on a threaded wsgiref server."""

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pubsite.settings")

from pubsite.wsgi import application


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = make_server(
        "127.0.0.1", int(sys.argv[1]), application, ThreadingWSGIServer, QuietHandler
    )
    print("serving", flush=True)
    server.serve_forever()
