# A minimal OTLP/HTTP sink for benchmarks: accepts POST /v1/traces, answers 200 with an empty
# ExportTraceServiceResponse, counts requests and bytes.
import sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
count = {"requests": 0, "bytes": 0}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        with lock:
            count["requests"] += 1; count["bytes"] += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = ("%d %d\n" % (count["requests"], count["bytes"])).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
