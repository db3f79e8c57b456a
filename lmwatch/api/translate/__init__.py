"""The APIs agents speak (OpenAI Responses, Anthropic Messages) on top of chat completions.

Backends that serve an API themselves get the request as it came (lmwatch/backends says which
flavour and version does); for the others each module here turns the request into a chat-completions
body, and the answer (whole or streamed) back into the client's API. Pure functions and small
stateful stream translators: no I/O, so every mapping is easy to read and to test.
"""
