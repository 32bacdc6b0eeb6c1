"""Serving workspace models over an OpenAI-compatible HTTP API (`tunelab serve`).

`protocol` maps OpenAI request bodies to the rendered prompt and settings tunelab generates
with, and builds the response bodies; `server` is the HTTP server (the stdlib's
ThreadingHTTPServer) with bearer-token auth and SSE streaming.

May import: `tunelab.store`, `engine.errors`, `engine.models`, `engine.prompts`,
`engine.generation`.
"""
