"""Real TCP listeners on loopback that health tests open, close and slow down."""

import socket
import threading
import time


class Listener:
    """Accepts and closes connections on 127.0.0.1:port until stopped; can be started again."""

    def __init__(self, port=0):
        self.port = port
        self._socket = None
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        self.port = server.getsockname()[1]
        self._socket = server
        self._thread = threading.Thread(target=self._serve, args=(server,), daemon=True)
        self._thread.start()
        return self

    def _serve(self, server):
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    def stop(self):
        if self._socket is not None:
            self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
            self._thread.join(timeout=5)
            self._socket = None


def listen_drops():
    """The kernel's count of SYNs dropped because a listener's accept queue was full."""
    with open("/proc/net/netstat", encoding="ascii") as source:
        lines = source.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:]))["ListenDrops"])
    raise RuntimeError("no TcpExt ListenDrops in /proc/net/netstat")


class SlowListener:
    """A listener whose connects take just over a second, as a real overloaded server's do.

    Its accept queue (backlog 0: room for one) is kept full by a connection of its own, so the
    kernel drops a client's first SYN. When that drop shows in ListenDrops the filler is taken
    off the queue, and the client's retransmitted SYN, one second later, gets in.
    """

    def __init__(self):
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(0)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def _fill(self):
        filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return filler

    def _run(self):
        filler = self._fill()
        self._server.settimeout(0.05)
        while not self._stop.is_set():
            seen = listen_drops()
            while listen_drops() == seen and not self._stop.is_set():
                time.sleep(0.01)
            if self._stop.is_set():
                break
            queued, _ = self._server.accept()  # the filler: room for the dropped client's retry
            queued.close()
            filler.close()
            deadline = time.monotonic() + 5
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    client, _ = self._server.accept()
                    client.close()
                    break
                except socket.timeout:
                    continue
            filler = self._fill()
        filler.close()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)
        self._server.close()
