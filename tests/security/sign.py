#!/usr/bin/env python3
"""Independent CloudFront signer for the security e2e tests.

Uses botocore's CloudFrontSigner to build URLs and policies, the `cryptography` package to sign
with RSA (SHA-1 or SHA-256), and the `openssl` CLI to sign with ECDSA P-256. Reads one JSON
request on stdin, writes one JSON answer on stdout:

  in:  {"url": "http://127.0.0.1:8080/private/a.txt", "key_file": "k.pem", "key_id": "K1",
        "alg": "rsa-sha1|rsa-sha256|ecdsa-sha1|ecdsa-sha256",
        "expires": 1800000000,                      # epoch seconds (DateLessThan)
        "custom": false,                            # canned unless custom (or any field below)
        "resource": "http://127.0.0.1:8080/private/*", "start": 1700000000, "ip": "127.0.0.1/32"}
  out: {"url": "<signed url>", "cookies": {"CloudFront-...": "..."}}
"""
import datetime
import json
import subprocess
import sys

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def make_signer(key_file, alg):
    kind, _, digest = alg.partition("-")
    if kind == "rsa":
        with open(key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        algo = hashes.SHA256() if digest == "sha256" else hashes.SHA1()
        return lambda message: key.sign(message, padding.PKCS1v15(), algo)
    if kind == "ecdsa":
        def openssl_sign(message):
            return subprocess.run(
                ["openssl", "dgst", f"-{digest}", "-sign", key_file],
                input=message, capture_output=True, check=True,
            ).stdout
        return openssl_sign
    raise SystemExit(f"unknown alg {alg}")


def when(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)


def main():
    req = json.load(sys.stdin)
    alg = req.get("alg", "rsa-sha1")
    rsa_signer = make_signer(req["key_file"], alg)
    signer = CloudFrontSigner(req["key_id"], rsa_signer)
    custom = req.get("custom") or any(k in req for k in ("resource", "start", "ip"))
    sha256 = alg.endswith("sha256")
    b64 = lambda data: signer._url_b64encode(data).decode()  # CloudFront's URL-safe alphabet

    if custom:
        policy = signer.build_policy(
            req.get("resource", req["url"]),
            when(req["expires"]),
            date_greater_than=when(req["start"]) if "start" in req else None,
            ip_address=req.get("ip"),
        )
        url = signer.generate_presigned_url(req["url"], policy=policy)
        policy_bytes = policy.encode()
        cookies = {"CloudFront-Policy": b64(policy_bytes)}
    else:
        url = signer.generate_presigned_url(req["url"], date_less_than=when(req["expires"]))
        policy_bytes = signer.build_policy(req["url"], when(req["expires"])).encode()
        cookies = {"CloudFront-Expires": str(int(req["expires"]))}
    cookies["CloudFront-Signature"] = b64(rsa_signer(policy_bytes))
    cookies["CloudFront-Key-Pair-Id"] = req["key_id"]
    if sha256:
        url += "&Hash-Algorithm=SHA256"
        cookies["CloudFront-Hash-Algorithm"] = "SHA256"
    json.dump({"url": url, "cookies": cookies}, sys.stdout)


if __name__ == "__main__":
    main()
