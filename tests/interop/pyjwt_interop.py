"""The Python side of tests/interop_pyjwt.rs: an implementation of JWT and of
DataHub's token id that nobody on this project wrote (PyJWT, hashlib).

Reads a JSON list of requests on stdin and writes a JSON list of answers,
one per request: {"ok": value} or {"error": "ExceptionName: message"}.

Requests:
  {"op": "decode", "token", "key", "issuer"?, "require"?: [claims]}
      -> {"header": {...}, "claims": {...}}, verifying HS256 and exp
  {"op": "mint", "key", "claims", "typ": bool, "alg"?: "HS256", "salt"?}
      -> {"token", "id"}: without typ the header is exactly {"alg":"HS256"},
         as DataHub's Java (jjwt) writes it; "id" is the token's id under
         "salt" (null without one)
  {"op": "hash", "token", "salt"}
      -> base64(sha256(token bytes + salt bytes)), DataHub's token id
  {"op": "id_bytes", "id"} -> length of the base64-decoded id
"""

import base64
import hashlib
import json
import sys

import jwt


def decode(req):
    options = {"require": req.get("require", [])}
    claims = jwt.decode(
        req["token"],
        req["key"].encode("utf-8"),
        algorithms=["HS256"],
        issuer=req.get("issuer"),
        options=options,
    )
    return {"header": jwt.get_unverified_header(req["token"]), "claims": claims}


def mint(req):
    # DataHub signs with the UTF-8 bytes of the configured key string.
    key = req["key"].encode("utf-8") if req["key"] is not None else None
    headers = None if req.get("typ", False) else {"typ": None}
    token = jwt.encode(req["claims"], key, algorithm=req.get("alg", "HS256"), headers=headers)
    salt = req.get("salt")
    return {"token": token, "id": None if salt is None else hash_id(token, salt)}


def hash_id(token, salt):
    digest = hashlib.sha256(token.encode() + salt.encode()).digest()
    return base64.b64encode(digest).decode("ascii")


OPS = {
    "decode": decode,
    "mint": mint,
    "hash": lambda req: hash_id(req["token"], req["salt"]),
    "id_bytes": lambda req: len(base64.b64decode(req["id"], validate=True)),
}


def answer(req):
    try:
        return {"ok": OPS[req["op"]](req)}
    except Exception as e:  # the Rust side asserts on the exception's name
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    requests = json.load(sys.stdin)
    json.dump([answer(r) for r in requests], sys.stdout)


if __name__ == "__main__":
    main()
