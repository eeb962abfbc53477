"""A simulated vLLM server for tests, demos and benchmarks. Not a model: it makes up text.

It speaks vLLM's OpenAI-compatible wire format (JSON bodies, SSE framing, the usage chunk, error
bodies in both the current and the older flat shape) and exposes vLLM's load metrics.
"""
