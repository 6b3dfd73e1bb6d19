"""The Telaten web client's API: an adapter at the edge (WEB-CLIENT-CONTRACT.md).

The web client (TELATEN/telaten-client) speaks the original backend's paths and shapes.
This package serves them under `CLIENT_API_PREFIX` with routes and mapping schemas only:
every rule stays in the services, called exactly as the native routes call them.
"""
