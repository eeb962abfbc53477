"""wrk as the load generator: a Lua script posts the same body; `done` prints the summary as JSON.

wrk is far faster than a Python client (one C thread with an epoll loop), so at these rates the
proxies under test, not the generator, are what is measured. Run `make .tools/wrk` first.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK = ROOT / ".tools" / "wrk"
WRK_CORE = "0"  # wrk shares this core with the upstream; proxies run on the other

SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
{errors}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "status_errors": %d, "socket_errors": %d, "duration_us": %d,'
    .. ' "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
  io.write(string.format('SOCKET connect %d, read %d, write %d, timeout %d\\n',
    e.connect, e.read, e.write, e.timeout))
  for _, thread in ipairs(threads) do
    local first = thread:get("first_error")
    if first then io.write("FIRST " .. first .. "\\n") break end
  end
end
"""

# The first answer with an error status, kept by the thread that saw it (`done` reads it). Only
# where asked: wrk then hands every response body to Lua, which the fastest target would feel.
KEEP_FIRST_ERROR = """
threads = {}
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status > 399 and first_error == nil then
    first_error = status .. " " .. string.gsub(string.sub(body, 1, 160), "%s+", " ")
  end
end
"""


@dataclass
class WrkResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    first_error: str = ""  # the first error status and body, or the socket errors by kind

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return {50: self.p50_ms, 99: self.p99_ms}[int(p)]


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    cpu: str = WRK_CORE,
    keep_first_error: bool = False,
) -> WrkResult:
    lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
    )
    errors = KEEP_FIRST_ERROR if keep_first_error else "threads = {}"
    script = SCRIPT.format(body=_lua_string(body.decode()), headers=lines, errors=errors)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                "taskset",
                "-c",
                cpu,
                str(WRK),
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        Path(f.name).unlink()
    printed = out.splitlines()
    r = json.loads(next(x for x in printed if x.startswith("RESULT ")).removeprefix("RESULT "))
    first = next((x.removeprefix("FIRST ") for x in printed if x.startswith("FIRST ")), "")
    if not first and r["socket_errors"]:
        first = "socket errors: " + next(x for x in printed if x.startswith("SOCKET "))[7:]
    elif not first and r["status_errors"]:
        first = "error statuses (bodies not kept)"
    return WrkResult(
        requests=r["requests"],
        errors=r["status_errors"] + r["socket_errors"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        first_error=first,
    )
