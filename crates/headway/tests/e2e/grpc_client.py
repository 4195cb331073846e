"""A headscale.v1 gRPC client generated from crates/api/proto (by
grpc_tools.protoc, into PYTHONPATH): creates a user and a pre-auth key and
lists nodes on the server at argv[1] with the API key argv[2], after
checking that a call without the key is refused. Prints a JSON summary."""

import json
import sys

import grpc
from headscale.v1 import headscale_pb2_grpc, node_pb2, preauthkey_pb2, user_pb2


def main() -> None:
    address, key = sys.argv[1], sys.argv[2]
    stub = headscale_pb2_grpc.HeadscaleServiceStub(grpc.insecure_channel(address))
    try:
        stub.ListNodes(node_pb2.ListNodesRequest(), timeout=10)
        sys.exit("a call without an API key was accepted")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAUTHENTICATED:
            sys.exit(f"a call without an API key: {e.code()} instead of UNAUTHENTICATED")
    auth = [("authorization", f"Bearer {key}")]
    user = stub.CreateUser(user_pb2.CreateUserRequest(name="grpc-user"), metadata=auth, timeout=10).user
    made = stub.CreatePreAuthKey(
        preauthkey_pb2.CreatePreAuthKeyRequest(user=user.id, reusable=True), metadata=auth, timeout=10
    ).pre_auth_key
    nodes = stub.ListNodes(node_pb2.ListNodesRequest(), metadata=auth, timeout=10).nodes
    print(json.dumps({"user": user.name, "userId": user.id, "key": made.key, "nodes": [n.given_name for n in nodes]}))


if __name__ == "__main__":
    main()
