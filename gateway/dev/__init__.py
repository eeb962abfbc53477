"""For development and demonstration, never for production: the simulated vLLM backends and the
scripted tour. They need the `demo` extra (aiohttp, the OpenAI SDK); `extra.py` says so when it is
missing."""
