"""The example alert receiver of infra/docker/compose.yaml: logs each notification's body."""
import http.server
import json


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            print(json.dumps(json.loads(body)), flush=True)
        except ValueError:
            print(body.decode("utf-8", "replace"), flush=True)
        self.send_response(204)
        self.end_headers()


http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Receiver).serve_forever()
