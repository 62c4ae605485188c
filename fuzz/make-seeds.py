#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/: well-formed inputs for each
target, so that fuzzing starts from requests that get past the first checks
(the fuzzer mutates from there). Run again after changing a target's input
layout; the files it writes are committed.

tpm_response is not written here: its seed is a real swtpm session,
recorded by `PADDOCK_TPM_SEED=fuzz/corpus/tpm_response/swtpm-session cargo
test -p paddock-tpm --test swtpm the_fuzzers`."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
QSIZE = 16
DATA = 0x10_0000  # common::DATA_BASE
F_NEXT, F_WRITE = 1, 2


def queue(descs, heads, data):
    """desc table (16 entries) + avail ring + data, as common::queue_from reads it."""
    table = b"".join(struct.pack("<QIHH", *d) for d in descs)
    table += bytes(16 * QSIZE - len(table))
    ring = [0] * QSIZE
    for i, h in enumerate(heads):
        ring[i] = h
    avail = struct.pack("<HH", 0, len(heads)) + struct.pack("<%dH" % QSIZE, *ring)
    return table + avail + data


def write(target, name, blob):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


# virtqueue: a limit byte, then a three-descriptor chain and a lone one.
chain = [
    (DATA, 16, F_NEXT, 1),
    (DATA + 0x100, 512, F_NEXT | F_WRITE, 2),
    (DATA + 0x400, 1, F_WRITE, 0),
    (DATA + 0x800, 64, 0, 0),
]
write("virtqueue", "chain-and-single", bytes([0x17]) + queue(chain, [0, 3], bytes(range(256)) * 4))
write("virtqueue", "loop", bytes([0x1f]) + queue([(DATA, 8, F_NEXT, 1), (DATA, 8, F_NEXT, 0)], [0], b""))

# virtio_block: a flags byte (bit 0: read-only disk), then requests.
def blk(kind, sector, data_flags, data_len=512):
    hdr = struct.pack("<IIQ", kind, 0, sector)
    descs = [
        (DATA, 16, F_NEXT, 1),
        (DATA + 0x1000, data_len, F_NEXT | data_flags, 2),
        (DATA + 0x2000, 1, F_WRITE, 0),
    ]
    return queue(descs, [0], hdr + bytes(0x1000 - len(hdr)) + b"\x5a" * data_len)

write("virtio_block", "read", bytes([0]) + blk(0, 3, F_WRITE))
write("virtio_block", "write", bytes([0]) + blk(1, 7, 0))
write("virtio_block", "write-read-only", bytes([1]) + blk(1, 7, 0))
write("virtio_block", "flush", bytes([0]) + blk(4, 0, F_WRITE, 0))
write("virtio_block", "get-id", bytes([0]) + blk(8, 0, F_WRITE, 20))
write("virtio_block", "past-end", bytes([0]) + blk(0, 127, F_WRITE, 1024))

# virtio_vsock: tx packets from guest CID 3 to the host (CID 2).
def vsock_hdr(op, length=0, src_port=5000, dst_port=1024, flags=0):
    return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, length, 1, op, flags, 65536, 0)

def vsock(packets):
    descs, data, heads = [], b"", []
    for i, p in enumerate(packets):
        descs.append((DATA + len(data), len(p), 0, 0))
        heads.append(i)
        data += p + bytes((-len(p)) % 64)
    return queue(descs, heads, data)

write("virtio_vsock", "connect", vsock([vsock_hdr(1)]))
write("virtio_vsock", "connect-send-shutdown", vsock([
    vsock_hdr(1),
    vsock_hdr(5, 11) + b"hello, host",
    vsock_hdr(4, flags=3),
]))
write("virtio_vsock", "connect-nowhere-then-rst", vsock([vsock_hdr(1, dst_port=9), vsock_hdr(3, dst_port=9)]))
write("virtio_vsock", "credit-update", vsock([vsock_hdr(1), vsock_hdr(6), vsock_hdr(7)]))

# api_request: requests as clients send them.
def http(method, path, body=None):
    head = "%s %s HTTP/1.1\r\nHost: paddock\r\nAuthorization: Bearer pdk_x\r\n" % (method, path)
    if body is None:
        return (head + "\r\n").encode()
    b = json.dumps(body).encode()
    return (head + "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(b)).encode() + b

write("api_request", "create", http("POST", "/v1/workspaces", {
    "template": "default", "vcpus": 2, "memory_mib": 512, "disk_mib": 1024, "ttl_s": 3600,
    "env": {"API_KEY": "x"}, "labels": {"team": "a"}}))
write("api_request", "token", http("POST", "/v1/tokens", {
    "name": "ci", "scopes": ["exec", "read"], "ttl_s": 600, "workspace_ids": ["ws_1"]}))
write("api_request", "list", http("GET", "/v1/workspaces?label=team%3Da&limit=10"))
write("api_request", "chunked", b"POST /v1/workspaces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n")

# http_requests: a split byte, then a client's request stream.
write("http_requests", "pipelined", b"\x80GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
      b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
write("http_requests", "chunked_then_cl", b"\x40POST / HTTP/1.1\r\nHost: allowed.test\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: v\r\n\r\n"
      b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\n\r\nabc")

# broker_rules: a flags byte (bit 0: host b.test, bit 1: plain HTTP, the
# rest: the answer's chunk size), then a target and header lines.
write("broker_rules", "own_host", b"\x10/v1?k=paddock_secret_A\nBearer paddock_secret_A\nx")
write("broker_rules", "other_host", b"\x05/\nBearer paddock_secret_A\npaddock_secret_B")
