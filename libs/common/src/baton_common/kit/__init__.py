"""The service kit: what every service needs and none should copy.

- ``rpc``: one request/reply server (queue group, typed call and reply, a span and metrics per
  call, drain on SIGTERM) and the commit-before-answering loop its handlers share;
- ``toolrunner``: the worker loop that takes dispatched steps, holds them like leases and
  reports each outcome once;
- ``httpserver``: uvicorn's server without its ten wake-ups a second (an HTTP port at idle).

A service declares its handlers (verb → typed handler) and hands them to these.
"""
