"""A real gRPC server and client (grpcio, Debian's python3-grpcio) for the
HTTP-mode test: no generated stubs, raw bytes in and out.

    peer.py server PORT NAME   serve /demo.Echo/Unary and /demo.Echo/Stream
    peer.py client PORT        call both through the balancer, print results
    peer.py client PORT CERT NAME   the same over TLS, trusting CERT for NAME
"""
import sys
from concurrent import futures

import grpc

UNARY = "/demo.Echo/Unary"
STREAM = "/demo.Echo/Stream"


def serve(port, name):
    def unary(request, context):
        context.set_trailing_metadata((("x-served-by", name),))
        return name.encode() + b":" + request

    def stream(request, context):
        context.set_trailing_metadata((("x-served-by", name),))
        for i in range(int(request)):
            yield f"{name}:{i}".encode()

    handler = grpc.method_handlers_generic_handler(
        "demo.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination(timeout=120)


def channel_to(port, cert=None, name=None):
    if cert is None:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    with open(cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    # The certificate names NAME; the balancer listens on loopback.
    return grpc.secure_channel(
        f"127.0.0.1:{port}", creds, options=(("grpc.ssl_target_name_override", name),)
    )


def client(port, cert=None, name=None):
    with channel_to(port, cert, name) as channel:
        unary = channel.unary_unary(UNARY)
        for i in range(4):
            reply, call = unary.with_call(f"ping{i}".encode(), timeout=10)
            trailers = dict(call.trailing_metadata())
            print("unary", reply.decode(), trailers.get("x-served-by"), call.code().name)
        stream = channel.unary_stream(STREAM)
        call = stream(b"3", timeout=10)
        replies = [r.decode() for r in call]
        trailers = dict(call.trailing_metadata())
        print("stream", ",".join(replies), trailers.get("x-served-by"), call.code().name)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        client(int(sys.argv[2]), *sys.argv[3:5])
