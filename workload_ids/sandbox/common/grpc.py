"""The gRPC server base of the emulators: a server on 127.0.0.1 on a pool of threads.

:class:`GrpcServer` serves whatever handlers it is given (Secret Manager serves gRPC
beside REST through it); :class:`GrpcEmulator` is the base of an emulator that serves
one gRPC service and nothing else (IAM Admin, resource IAM policies).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import ClassVar

import grpc

from .served import Served


class GrpcServer:
    """Serves ``handlers()`` on 127.0.0.1; ``host`` is ``host:port`` once started."""

    def __init__(self, handlers: Callable[[], grpc.GenericRpcHandler], *, workers: int,
                 thread_name: str) -> None:
        self.handlers = handlers
        self.workers = workers
        self.thread_name = thread_name
        self.host = ""
        self._server: grpc.Server | None = None

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:``port`` (0: a free one); returns ``host:port``."""
        if self._server is not None:
            return self.host
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers,
                                                        thread_name_prefix=self.thread_name))
        server.add_generic_rpc_handlers((self.handlers(),))
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        if not bound:
            raise OSError(f"cannot listen on 127.0.0.1:{port}")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{bound}"
        return self.host

    def stop(self, wait: float | None = None) -> None:
        """Stop serving at once (in-flight calls are cancelled); with ``wait``, wait up to
        that many seconds for the server to wind down. Idempotent."""
        if self._server is not None:
            stopped = self._server.stop(grace=None)
            if wait is not None:
                stopped.wait(wait)
            self._server = None


class GrpcEmulator(Served):
    """Serves :meth:`_handlers` on 127.0.0.1; ``host`` is ``host:port`` once started. State
    is kept across stop and start."""

    thread_name: ClassVar[str] = "gcp-emulator"
    host: str = ""
    _port: int = 0
    _workers: int = 8
    _server: GrpcServer | None = None
    _channels: list[grpc.Channel]

    def _handlers(self) -> grpc.GenericRpcHandler:
        raise NotImplementedError

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port unless one was given); returns ``host:port``."""
        if self._server is None:
            self._server = GrpcServer(self._handlers, workers=self._workers, thread_name=self.thread_name)
        self.host = self._server.start(self._port)
        return self.host

    def stop(self) -> None:
        """Stop serving and close the channels the emulator's client helpers opened."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
