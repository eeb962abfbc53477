"""A small server speaking Google Vertex AI's wire format for Gemini, and Google's OAuth token
endpoint, for litellm tests.

`POST /token` is the service account's `token_uri`: it takes the JWT-bearer grant, checks the
assertion's RS256 signature against the service account's key and its claims (issuer, audience,
scope), and hands out an access token. `POST /v1/projects/{p}/locations/{l}/publishers/google/
models/{model}:generateContent` answers a GenerateContentResponse (candidates with content parts,
finishReason, usageMetadata); `:streamGenerateContent?alt=sse` answers the same as SSE chunks.
Both require the access token. Errors use Google's envelope (`{"error": {"code", "message",
"status"}}`). `POST /_control` sets failures; `GET /_control` returns received requests.

Usage: `python -m tests.providers.vertex_server PORT SERVICE_ACCOUNT_JSON`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.providers.control import Recorder

WORDS = ["Bonjour", "from", "a", "simulated", "Gemini", "in", "the", "Netherlands", "region", "now"]
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth signs for
STATUS = {
    400: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    403: "PERMISSION_DENIED",
}


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Vertex(Recorder):
    def __init__(self, service_account: dict[str, Any]) -> None:
        super().__init__()
        self.account = service_account
        key = serialization.load_pem_private_key(
            service_account["private_key"].encode(), password=None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        self.public_key = key.public_key()
        self.tokens: set[str] = set()
        self.token_requests = 0

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests += 1
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        head, claims_part, signature = str(form.get("assertion", "")).split(".")
        try:
            self.public_key.verify(
                _b64decode(signature),
                f"{head}.{claims_part}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return web.json_response({"error": "invalid_grant"}, status=400)
        claims = json.loads(_b64decode(claims_part))
        if (
            claims.get("iss") != self.account["client_email"]
            or claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.account["token_uri"])
            or "cloud-platform" not in claims.get("scope", "")
        ):
            return web.json_response({"error": "invalid_grant", "claims": claims}, status=400)
        token = "ya29.sim-" + secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        )

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response(
            {
                "error": {
                    "code": status,
                    "message": message,
                    "status": STATUS.get(status, "UNKNOWN"),
                }
            },
            status=status,
        )

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model, _, method = request.match_info["action"].partition(":")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.received.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "project": request.match_info["project"],
                "location": request.match_info["location"],
                "model": model,
                "method": method,
                "body": body,
                "authorised": bearer in self.tokens,
            }
        )
        if bearer not in self.tokens:
            return self._error(401, "Request had invalid authentication credentials.")
        failure = self.next_failure()
        if failure is not None:
            return self._error(*failure)
        prompt_tokens = sum(
            len(part.get("text", "").split())
            for content in body.get("contents", [])
            for part in content.get("parts", [])
        )
        limit = int(body.get("generationConfig", {}).get("maxOutputTokens", 8192))
        words = WORDS[: min(len(WORDS), limit)]
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": len(words),
            "totalTokenCount": prompt_tokens + len(words),
        }

        def reply(text: str, finish: str | None, with_usage: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
            if finish:
                candidate["finishReason"] = finish
            out: dict[str, Any] = {
                "candidates": [candidate],
                "modelVersion": f"{model}-001",
                "responseId": "sim-response-1",
            }
            if with_usage:
                out["usageMetadata"] = usage
            return out

        if method == "generateContent":
            return web.json_response(reply(" ".join(words), "STOP", True))
        if method != "streamGenerateContent" or request.query.get("alt") != "sse":
            return self._error(400, f"unsupported method {method}")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = reply(word if i == 0 else " " + word, "STOP" if last else None, last)
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    def state(self) -> dict[str, Any]:
        return {**super().state(), "token_requests": self.token_requests}


def make_app(service_account: dict[str, Any]) -> web.Application:
    sim = Vertex(service_account)
    app = web.Application()
    app.router.add_post("/token", sim.token)
    app.router.add_post(
        "/v1/projects/{project}/locations/{location}/publishers/google/models/{action}",
        sim.generate,
    )
    app.router.add_route("*", "/_control", sim.control)
    return app


if __name__ == "__main__":
    account = json.loads(Path(sys.argv[2]).read_text())
    web.run_app(make_app(account), host="127.0.0.1", port=int(sys.argv[1]), print=None)
