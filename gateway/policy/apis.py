"""The OpenAI APIs the gateway serves, and one table of what differs between them.

Every per-API fact lives in `API`, beside the enum: the route a client calls, the path on the
upstream, the name recorded in audit records and metrics, the GenAI operation name of the
token metrics, the request fields that bound the output, and whether a stream can carry usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Api(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"


@dataclass(frozen=True, slots=True)
class ApiFacts:
    api: Api
    upstream_path: str  # appended to a backend's base URL (which ends in /v1)
    operation: str  # the GenAI semantic conventions' `gen_ai.operation.name`
    output_fields: tuple[str, ...]  # request fields that cap the tokens of the answer
    stream_usage: bool  # a stream can be asked for its usage (`stream_options.include_usage`)
    name: str = field(init=False)  # as recorded and labelled: a plain `str` (`.value` is slower)
    route: str = field(init=False)  # the gateway's path: the upstream's, under /v1

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", str(self.api.value))
        object.__setattr__(self, "route", "/v1" + self.upstream_path)


API = MappingProxyType(
    {
        facts.api: facts
        for facts in (
            ApiFacts(
                Api.CHAT,
                upstream_path="/chat/completions",
                operation="chat",
                output_fields=("max_completion_tokens", "max_tokens"),
                stream_usage=True,
            ),
            ApiFacts(
                Api.COMPLETIONS,
                upstream_path="/completions",
                operation="text_completion",
                output_fields=("max_tokens",),
                stream_usage=True,
            ),
            ApiFacts(
                Api.EMBEDDINGS,
                upstream_path="/embeddings",
                operation="embeddings",
                output_fields=(),
                stream_usage=False,
            ),
            ApiFacts(
                Api.RESPONSES,
                upstream_path="/responses",
                operation="generate_content",
                output_fields=("max_output_tokens",),
                stream_usage=False,
            ),
        )
    }
)
# the API each of the gateway's proxied routes serves
ROUTES = MappingProxyType({facts.route: api for api, facts in API.items()})
