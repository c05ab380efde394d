"""Start, stop and ``with`` for the gRPC emulators (IAM Admin, resource IAM policies)."""

from __future__ import annotations

from concurrent import futures
from typing import ClassVar, Self

import grpc


class GrpcEmulator:
    """Serves :meth:`_handlers` on 127.0.0.1; ``host`` is ``host:port`` once started. State
    is kept across stop and start."""

    thread_name: ClassVar[str] = "gcp-emulator"
    host: str = ""
    _port: int = 0
    _workers: int = 8
    _server: grpc.Server | None = None
    _channels: list[grpc.Channel]

    def _handlers(self) -> grpc.GenericRpcHandler:
        raise NotImplementedError

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port unless one was given); returns ``host:port``."""
        if self._server is not None:
            return self.host
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._workers,
                                                        thread_name_prefix=self.thread_name))
        server.add_generic_rpc_handlers((self._handlers(),))
        port = server.add_insecure_port(f"127.0.0.1:{self._port}")
        if not port:
            raise OSError(f"cannot listen on 127.0.0.1:{self._port}")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{port}"
        return self.host

    def stop(self) -> None:
        """Stop serving and close the channels the emulator's client helpers opened."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
