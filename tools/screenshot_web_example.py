"""Screenshot the browser example (examples/web) in headless Chromium into docs/images/web_example.png.

    apt-get install chromium   # or CHROMIUM=/path/to/chrome
    python tools/screenshot_web_example.py

Builds examples/web/digits.lrp.onnx, installs the example's npm packages when missing, serves the folder on a free
local port and runs examples/web/screenshot.mjs, which waits until the page has computed the relevance.
"""
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from typing import ClassVar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(ROOT, "examples", "web")
OUT = os.path.join(ROOT, "docs", "images", "web_example.png")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


def main():
    chromium = os.environ.get("CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        sys.exit("no Chromium found: apt-get install chromium, or set CHROMIUM=/path/to/chrome")
    if not os.path.isdir(os.path.join(WEB, "node_modules", "onnxruntime-web")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([sys.executable, os.path.join(WEB, "build.py")], check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=WEB))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        done = subprocess.run(["node", "screenshot.mjs", url, OUT], cwd=WEB, check=True, capture_output=True,
                              text=True, env={**os.environ, "CHROMIUM": chromium})
    finally:
        server.shutdown()
        server.server_close()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in result:
        sys.exit(f"the page failed: {result['error']}")
    print(f"wrote {os.path.relpath(OUT)} (relevance {result['shape']}, Chromium {result['browser']})")


if __name__ == "__main__":
    main()
