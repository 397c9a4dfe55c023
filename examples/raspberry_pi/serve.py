"""Serve an exported folder over HTTP on a Raspberry Pi (or any machine), torch-free.

    python serve.py FOLDER [--port 8000] [--threads 4]

    curl -s localhost:8000 -d '{"texts": ["I loved it"]}'                     # encoders
    curl -s localhost:8000 -d '{"prompt": "Once upon a time", "max_new_tokens": 32}'

Standard library HTTP server, one Pipeline shared by the request threads (it is
thread-safe; decoding state belongs to each call). Errors come back as 400 with
the one-line message.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import edgelm


def handler_for(pipe: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            try:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if isinstance(pipe, edgelm.TextGenerationPipeline):
                    prompt = request.pop("prompt")
                    result = pipe(prompt, return_full_text=False, **request)
                else:
                    result = pipe(request["texts"])
                    result = result.tolist() if hasattr(result, "tolist") else result
                self._send(200, {"result": result})
            except (edgelm.EdgeLMError, KeyError, ValueError, TypeError) as e:
                self._send(400, {"error": str(e)})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=4, help="Pi 4 and 5 have 4 cores")
    args = parser.parse_args()
    pipe = edgelm.Pipeline(args.folder, threads=args.threads, device="cpu")
    print(f"serving {pipe!r} on :{args.port}")
    ThreadingHTTPServer(("0.0.0.0", args.port), handler_for(pipe)).serve_forever()


if __name__ == "__main__":
    main()
