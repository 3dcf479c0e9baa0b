#!/usr/bin/env python3
"""A TCP stream with verifiable content, for tests through fwd.

server ADDR PORT            accept one connection, read to EOF, print {"bytes", "sha256", "peer"}
client ADDR PORT NBYTES SEED  send NBYTES of seeded pseudo-random data, print the same
Every socket operation times out after 30 s.
"""
import hashlib, json, random, socket, sys

def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET

def server(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(30)
    print("listening", flush=True)
    c, peer = s.accept()
    c.settimeout(30)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "peer": peer[0]}), flush=True)

def client(addr, port, nbytes, seed):
    rng = random.Random(seed)
    c = socket.create_connection((addr, port), timeout=30)
    h, n = hashlib.sha256(), 0
    while n < nbytes:
        b = rng.randbytes(min(1 << 16, nbytes - n))
        c.sendall(b)
        h.update(b)
        n += len(b)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    print(json.dumps({"bytes": n, "sha256": h.hexdigest()}), flush=True)

if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
